package testkit

import (
	"os"
	"testing"
)

// Main is a TestMain that runs the tests, or child instead when the
// variable env is "1" and exits with child's status: a test that needs the
// program under test as a child process starts its own binary with env=1.
func Main(m *testing.M, env string, child func() int) {
	if os.Getenv(env) == "1" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}
