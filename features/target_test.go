package features

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pingServerEnv makes the test binary act as a minimal target: it serves
// GET /ping on BALENA_SUPERVISOR_PORT and says how it ends.
const pingServerEnv = "FEATURES_TEST_PING_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(pingServerEnv) == "1" {
		os.Exit(pingServer())
	}
	os.Exit(m.Run())
}

func pingServer() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("BALENA_SUPERVISOR_PORT"))
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	fmt.Printf("started with DATA_DIR=%s\n", os.Getenv("DATA_DIR"))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ping" {
			fmt.Fprint(w, "OK")
			return
		}
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	})}
	go srv.Serve(ln)
	<-ctx.Done()
	srv.Close()
	fmt.Println("stopped gracefully")
	return 0
}

func testEnv(t *testing.T) map[string]string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{"BALENA_SUPERVISOR_PORT": strconv.Itoa(port), "DATA_DIR": "/tmp/x-data", pingServerEnv: "1"}
}

func selfCommand(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return "exec '" + self + "'"
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCommandTargetStartsStopsAndRestartsOnTheSameEnvironment(t *testing.T) {
	out := &syncBuffer{}
	tg := NewCommandTarget(CommandOptions{Command: selfCommand(t), Ready: 10 * time.Second}, out)
	env := testEnv(t)
	ctx := testCtx(t)
	if err := tg.Start(ctx, env); err != nil {
		t.Fatalf("start: %v\noutput: %s", err, out)
	}
	t.Cleanup(func() { _ = tg.Kill() })
	if !tg.Running() {
		t.Fatal("got not running after Start, want running")
	}
	if err := tg.Start(ctx, env); err == nil {
		t.Error("second Start while running: got no error, want one")
	}
	if err := tg.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if tg.Running() {
		t.Error("got running after Stop, want stopped")
	}
	if got := out.String(); !strings.Contains(got, "started with DATA_DIR=/tmp/x-data") || !strings.Contains(got, "stopped gracefully") {
		t.Errorf("got output %q, want the harness DATA_DIR and a graceful stop after SIGTERM", got)
	}
	if err := Restart(ctx, tg, env, false); err != nil {
		t.Fatalf("start again: %v", err)
	}
	if err := tg.Kill(); err != nil {
		t.Fatal(err)
	}
	if tg.Running() {
		t.Error("got running after Kill, want gone")
	}
	if n := strings.Count(out.String(), "stopped gracefully"); n != 1 {
		t.Errorf("got %d graceful stops, want 1 (SIGKILL allows none)", n)
	}
	c := &http.Client{Timeout: time.Second}
	if _, err := c.Get("http://127.0.0.1:" + env["BALENA_SUPERVISOR_PORT"] + "/ping"); err == nil {
		t.Error("the killed target still answers /ping")
	}
}

func TestCommandTargetStartFailsWhenTheCommandExits(t *testing.T) {
	tg := NewCommandTarget(CommandOptions{Command: "echo broken; exit 3", Ready: 10 * time.Second}, nil)
	start := time.Now()
	err := tg.Start(testCtx(t), testEnv(t))
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("got %v, want an error saying the target exited", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to notice the exit, want well under the readiness deadline", d)
	}
}

func TestCommandTargetStartFailsWhenNotReadyInTime(t *testing.T) {
	tg := NewCommandTarget(CommandOptions{Command: "exec sleep 30", Ready: 300 * time.Millisecond}, nil)
	err := tg.Start(testCtx(t), testEnv(t))
	if err == nil || !strings.Contains(err.Error(), "did not answer 200") {
		t.Fatalf("got %v, want a readiness error", err)
	}
	if tg.Running() {
		t.Error("a target that never became ready is still running, want it killed")
	}
}

func TestMergeEnvLetsTheHarnessWin(t *testing.T) {
	got := mergeEnv([]string{"A=1", "DATA_DIR=/old", "B=2"}, map[string]string{"DATA_DIR": "/new", "C": "3"})
	want := []string{"A=1", "B=2", "C=3", "DATA_DIR=/new"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
