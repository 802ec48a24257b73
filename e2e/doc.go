// Package e2e holds the Docker end-to-end tests of depharness: the whole
// world (fake cloud, fake registry, reference proxy, reference gateway with its
// fleet) runs as containers of the FROM-scratch image on a fresh user-defined
// network per test, and the tests drive it from the host through published
// loopback ports only. They cover what the in-process tests cannot: a real
// Docker daemon pulling from the fake registry, the compliance suite against
// the containerised proxy, faults done to real processes (stop, SIGKILL,
// network disconnect) and a real Prometheus scraping every component.
//
// The tests skip, saying so, when no Docker engine is reachable. They use
// the image named by DEPHARNESS_IMAGE (`make test-docker` builds it), or
// build one from the working tree. Every container, network and volume a test
// creates is removed by the test itself (TESTCONTAINERS_RYUK_DISABLED=true).
//
// Nothing in the module imports this package. It imports the leaf wire
// packages (api, api/cloud) and the fakes' Go types only to speak
// their HTTP APIs; the programs under test run as containers, never
// in-process.
package e2e
