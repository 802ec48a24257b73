// Package depcheck holds only a test: it enforces the direction of
// dependencies between the module's packages. The wire types (api/,
// api/cloud/) and the leaf helpers import only the standard library; the
// proxy, the fakes and the simulator stand side by side on them and never
// import each other; nothing outside proxy/ imports it except the
// composition points (world/, cmd/, the suite's reference target
// features/refproxy); the test-only helpers (internal/testkit,
// internal/promreg/promtest, internal/browsertest) are imported by test
// files only. It has no code of its own and nothing may import it.
package depcheck
