package features

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chromium returns Debian's chromium, or skips the test without it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (make deps-browser): the report is not looked at in a browser")
	return ""
}

// headless runs chromium headless on a file with args, and returns its
// standard output.
func headless(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	home := t.TempDir()
	all := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--no-first-run", "--user-data-dir=" + filepath.Join(home, "profile")}, args...)
	cmd := exec.CommandContext(ctx, bin, all...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.Bytes()
}

// TestTheReportInABrowser runs a small suite with one failing scenario,
// then has headless Chromium render report.html: the DOM it builds holds
// the verdict, the run's header and the failure, and a screenshot is taken
// (kept in DEPHARNESS_SCREENSHOT_DIR when set, e.g. for docs/).
func TestTheReportInABrowser(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	_, err := Run(testCtx(t), Config{
		Target: pingTarget(t), Features: twoScenarios, ReportDir: dir, Output: &bytes.Buffer{}, NoColors: true,
		Seed: 11, Tags: "@AUTH-1", Command: "BALENA_SUPERVISOR_API_KEY=hidden exec ./my-supervisor", Concurrency: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	page := "file://" + filepath.Join(dir, "report.html")
	dom := string(headless(t, bin, "--dump-dom", page))
	for _, want := range []string{
		"Not compliant: 1 of", "depharness verify --target-cmd", "--seed 11", "Then the answer is 200",
		"the step checks", "AUTH-1", "expected value", "logs/", "clauses not run in this run",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page the browser built lacks %q", want)
		}
	}
	if strings.Contains(dom, "hidden") {
		t.Error("the page shows the key of the target command")
	}
	shot := filepath.Join(dir, "report.png")
	if keep := os.Getenv("DEPHARNESS_SCREENSHOT_DIR"); keep != "" {
		shot = filepath.Join(keep, "report.png")
	}
	headless(t, bin, "--screenshot="+shot, "--window-size=1280,1400", page)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	b := img.Bounds()
	if b.Dx() != 1280 || b.Dy() != 1400 {
		t.Errorf("screenshot is %dx%d, want 1280x1400", b.Dx(), b.Dy())
	}
	// A rendered page is not blank: count distinct colours of a sample.
	colours := map[[3]uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 7 {
		for x := b.Min.X; x < b.Max.X; x += 7 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
		}
	}
	if len(colours) < 20 {
		t.Errorf("the screenshot has %d colours, want a rendered page", len(colours))
	}
	t.Logf("screenshot: %s", shot)
}
