package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/depharness/depharness/features"
)

// containerTargets makes features.Targets that run the reference proxy as
// a container of the image: host networking, so that it reaches the
// suite's fakes and hook server on 127.0.0.1 and listens on
// 127.0.0.1:BALENA_SUPERVISOR_PORT as the harness interface says; DATA_DIR
// is a named volume per scenario data directory, so a restart (SIGTERM or
// SIGKILL, then start) finds the same state, owned by the image's
// unprivileged user.
type containerTargets struct {
	t     testing.TB
	mu    sync.Mutex
	vols  map[string]bool // volumes created, removed at the end of t
	ids   map[string]bool // containers created, removed at the end of t
	image string
}

func newContainerTargets(t testing.TB) *containerTargets {
	ct := &containerTargets{t: t, vols: map[string]bool{}, ids: map[string]bool{}, image: imageName}
	t.Cleanup(ct.cleanup)
	return ct
}

// Factory is the features.TargetFactory.
func (ct *containerTargets) Factory(out io.Writer) features.Target {
	return &containerTarget{set: ct, out: out}
}

func (ct *containerTargets) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ct.mu.Lock()
	defer ct.mu.Unlock()
	for id := range ct.ids {
		if _, err := docker.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			ct.t.Errorf("remove container %.12s: %v", id, err)
		}
	}
	for v := range ct.vols {
		if _, err := docker.VolumeRemove(ctx, v, client.VolumeRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			ct.t.Errorf("remove volume %s: %v", v, err)
		}
	}
}

func isNotFound(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "no such") || strings.Contains(s, "not found")
}

// volumeFor names the volume standing for a scenario's DATA_DIR.
func (ct *containerTargets) volumeFor(dataDir string) string {
	sum := sha256.Sum256([]byte(dataDir))
	v := "depharness-e2e-suite-" + hex.EncodeToString(sum[:6])
	ct.mu.Lock()
	ct.vols[v] = true
	ct.mu.Unlock()
	return v
}

// containerTarget is one scenario's supervisor: at most one container at a
// time.
type containerTarget struct {
	set *containerTargets
	out io.Writer

	mu     sync.Mutex
	id     string
	exited chan struct{} // closed when the log stream ends (the container stopped)
}

var _ features.Target = (*containerTarget)(nil)

// Start implements features.Target.
func (c *containerTarget) Start(ctx context.Context, env map[string]string) error {
	c.mu.Lock()
	if c.id != "" {
		c.mu.Unlock()
		return errors.New("container target: already started")
	}
	c.mu.Unlock()
	vol := c.set.volumeFor(env["DATA_DIR"])
	vars := []string{
		"DATA_DIR=/data",
		// Host networking: listen on loopback only, and no fixed metrics
		// port that concurrent scenarios would fight over.
		"DEPHARNESS_LISTEN_HOST=127.0.0.1",
		"METRICS_ADDRESS=off",
	}
	for k, v := range env {
		if k != "DATA_DIR" {
			vars = append(vars, k+"="+v)
		}
	}
	created, err := docker.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			Image:  c.set.image,
			Cmd:    []string{"proxy"},
			Env:    vars,
			Labels: map[string]string{"depharness.e2e": c.set.t.Name(), "depharness.service": "suite-target"},
		},
		HostConfig: &container.HostConfig{
			NetworkMode: "host",
			Mounts:      []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: "/data"}},
		},
	})
	if err != nil {
		return fmt.Errorf("container target: create: %w", err)
	}
	c.set.mu.Lock()
	c.set.ids[created.ID] = true
	c.set.mu.Unlock()
	if _, err := docker.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("container target: start: %w", err)
	}
	logs, err := docker.ContainerLogs(context.WithoutCancel(ctx), created.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	if err != nil {
		return fmt.Errorf("container target: logs: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		defer logs.Close()
		_, _ = stdcopy.StdCopy(c.out, c.out, logs)
	}()
	c.mu.Lock()
	c.id, c.exited = created.ID, exited
	c.mu.Unlock()

	url := "http://127.0.0.1:" + env["BALENA_SUPERVISOR_PORT"] + "/ping"
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		if resp, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			_ = c.remove()
			return errors.New("container target: the proxy exited before GET /ping answered 200")
		case <-rctx.Done():
			_ = c.Kill()
			return fmt.Errorf("container target: GET %s did not answer 200 in time", url)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// Stop implements features.Target: SIGTERM, then SIGKILL when ctx ends.
func (c *containerTarget) Stop(ctx context.Context) error {
	c.mu.Lock()
	id := c.id
	c.mu.Unlock()
	if id == "" {
		return nil
	}
	grace := 10
	if dl, ok := ctx.Deadline(); ok {
		grace = max(int(time.Until(dl).Seconds()), 1)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(grace+30)*time.Second)
	defer cancel()
	if _, err := docker.ContainerStop(sctx, id, client.ContainerStopOptions{Timeout: &grace}); err != nil {
		return fmt.Errorf("container target: stop: %w", err)
	}
	return c.remove()
}

// Kill implements features.Target: SIGKILL at once, as in a crash.
func (c *containerTarget) Kill() error {
	c.mu.Lock()
	id := c.id
	c.mu.Unlock()
	if id == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := docker.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"}); err != nil && !strings.Contains(err.Error(), "is not running") {
		return fmt.Errorf("container target: kill: %w", err)
	}
	return c.remove()
}

// remove waits for the log stream to end and removes the container (its
// volume stays for the next Start).
func (c *containerTarget) remove() error {
	c.mu.Lock()
	id, exited := c.id, c.exited
	c.id, c.exited = "", nil
	c.mu.Unlock()
	if id == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wait := docker.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case <-wait.Result:
	case err := <-wait.Error:
		if !isNotFound(err) {
			return fmt.Errorf("container target: wait: %w", err)
		}
	}
	if exited != nil {
		select {
		case <-exited:
		case <-ctx.Done():
		}
	}
	if _, err := docker.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
		return fmt.Errorf("container target: remove: %w", err)
	}
	c.set.mu.Lock()
	delete(c.set.ids, id)
	c.set.mu.Unlock()
	return nil
}

// Running implements features.Target.
func (c *containerTarget) Running() bool {
	c.mu.Lock()
	exited := c.exited
	c.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// TestComplianceSuiteAgainstTheContainerisedProxy runs the whole
// compliance suite (contract and reference tiers) against the reference
// proxy running as a container of the FROM-scratch image, started, stopped
// and SIGKILLed by the suite through the Docker engine. Reports go to
// reports/e2e-verify/.
func TestComplianceSuiteAgainstTheContainerisedProxy(t *testing.T) {
	requireDocker(t)
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	reportDir := filepath.Join(root, "reports", "e2e-verify")
	if err := os.MkdirAll(reportDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var console strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	started := time.Now()
	res, err := features.Run(ctx, features.Config{
		Target:      newContainerTargets(t).Factory,
		Concurrency: 2,
		ReportDir:   reportDir,
		Output:      &console,
		NoColors:    true,
		Timing:      features.Timing{Ready: 30 * time.Second},
	})
	if err != nil {
		t.Fatalf("suite: %v\n%s", err, console.String())
	}
	passed := 0
	for _, s := range res.Scenarios {
		if s.Passed {
			passed++
		}
	}
	t.Logf("measured: %d of %d scenarios passed against the container in %s (seed %d); reports in %s",
		passed, len(res.Scenarios), time.Since(started).Round(time.Second), res.Seed, reportDir)
	if failed := res.Failed(); len(failed) > 0 || res.Status != 0 {
		var b strings.Builder
		for _, s := range failed {
			fmt.Fprintf(&b, "\n  %s: %s: %s", s.URI, s.Name, s.Err)
		}
		t.Errorf("scenarios failed against the containerised proxy (status %d, seed %d):%s", res.Status, res.Seed, b.String())
	}
	if len(res.Scenarios) == 0 {
		t.Errorf("the suite ran no scenario")
	}
}
