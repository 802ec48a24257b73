package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// childEnv makes this test binary the child of TestMainRunsTheChildWhenItsVariableIsSet.
const childEnv = "TESTKIT_TEST_CHILD"

func TestMain(m *testing.M) {
	Main(m, childEnv, func() int {
		fmt.Print("child ran")
		return 3
	})
}

func TestMainRunsTheChildWhenItsVariableIsSet(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 3 || string(out) != "child ran" {
		t.Errorf("child run: got %q, %v; want %q and exit status 3", out, err, "child ran")
	}
	cmd = exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=0")
	if out, err := cmd.CombinedOutput(); err != nil || string(out) == "child ran" {
		t.Errorf("run without the variable: got %q, %v; want the tests run (none selected), exit status 0", out, err)
	}
}
