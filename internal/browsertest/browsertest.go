// Package browsertest drives a headless Chromium (Debian's chromium
// package) from Go tests, through chromedp. A test that needs the browser
// calls New: without a Chromium it is skipped with a message saying how to
// install one, unless DEPHARNESS_REQUIRE_BROWSER=1 (as in CI), which makes
// the absence a failure.
//
// It is for tests only; no command imports it.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ExecPath finds the browser: $DEPHARNESS_CHROMIUM, else chromium,
// chromium-browser, google-chrome or google-chrome-stable on PATH.
func ExecPath() (string, bool) {
	if p := os.Getenv("DEPHARNESS_CHROMIUM"); p != "" {
		return p, true
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	return "", false
}

// New starts a headless browser with a window of width × height and
// returns a chromedp context for one tab; it is stopped when the test
// ends. The whole session is bounded by timeout.
func New(t testing.TB, width, height int, timeout time.Duration) context.Context {
	t.Helper()
	path, ok := ExecPath()
	if !ok {
		msg := "no Chromium found (chromium, chromium-browser, google-chrome or $DEPHARNESS_CHROMIUM): " +
			"install it with `apt-get install -y chromium` (make deps-browser) to run this browser test"
		if os.Getenv("DEPHARNESS_REQUIRE_BROWSER") == "1" {
			t.Fatal(msg + " (DEPHARNESS_REQUIRE_BROWSER=1 requires it)")
		}
		t.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // needed as root, harmless otherwise
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(width, height),
	)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(func(string, ...any) {}))
	t.Cleanup(func() {
		bcancel()
		acancel()
		cancel()
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return bctx
}

// Screenshot saves a PNG of the whole page to path, creating its folder.
func Screenshot(t testing.TB, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// RepoPath is rel under the module's root (the folder holding go.mod),
// found upwards from the test's working directory.
func RepoPath(t testing.TB, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, rel)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}
