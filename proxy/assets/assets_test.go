package assets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/depharness/depharness/internal/promreg/promtest"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy/violation"
)

const commit = "0123456789abcdef0123456789abcdef"

// newCache returns a cache in a fresh folder with fast retries and its own
// metrics registry.
func newCache(t testing.TB, opts Options) (*Cache, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "assets")
	}
	if opts.Retry == (Retry{}) {
		opts.Retry = Retry{Attempts: 4, Min: time.Millisecond, Max: 4 * time.Millisecond}
	}
	opts.Registerer = reg
	opts.Logger = testkit.Logger(t, slog.LevelInfo)
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, reg
}

// sampleImage has two layers: an overwrite, a whiteout, a hidden file and
// files outside /assets.
func sampleImage(t testing.TB) v1.Image {
	return imageOf(t,
		layerOf(t, dir("assets/"), file("assets/firmware.bin", "v1"), file("assets/gone", "g"), file("etc/x", "x")),
		layerOf(t, file("assets/firmware.bin", "v2"), file("assets/.wh.gone", ""), file("assets/.config", "c"),
			dir("assets/sub/"), file("assets/sub/x.hex", "hex")),
	)
}

var sampleMembers = []string{`.config "c"`, `firmware.bin "v2"`, "sub/ dir", `sub/x.hex "hex"`}

// dirFiles lists the names of the files in dir (none if it does not exist).
func dirFiles(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, e := range es {
		ns = append(ns, e.Name())
	}
	return ns
}

func TestEnsureBuildsTheTarOnceAndThenHitsTheCache(t *testing.T) {
	r, ref := registryWithSample(t, "app/one")
	c, reg := newCache(t, Options{})

	if c.Has(7, commit) {
		t.Fatalf("Has before Ensure: got true, want false")
	}
	if err := c.Ensure(context.Background(), 7, commit, ref); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if !c.Has(7, commit) {
		t.Fatalf("Has after Ensure: got false, want true")
	}
	path := c.TarPath(7, commit)
	if want := filepath.Join(c.opts.Dir, "7", commit+".tar"); path != want {
		t.Errorf("tar path: got %s, want %s", path, want)
	}
	if got := readTarFile(t, path); !slices.Equal(got, sampleMembers) {
		t.Errorf("members: got %q, want %q", got, sampleMembers)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	side, err := os.ReadFile(path + ".sha256")
	if err != nil {
		t.Fatalf("checksum file: %v", err)
	}
	if got, want := strings.TrimSpace(string(side)), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("checksum file: got %s, want %s", got, want)
	}

	if err := c.Ensure(context.Background(), 7, commit, ref); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	if got := r.manifestGets.Load(); got != 1 {
		t.Errorf("manifest fetches: got %d, want 1", got)
	}
	promtest.WantValue(t, "cache hits", c.metrics.hits, 1)
	promtest.WantValue(t, "cache misses", c.metrics.misses, 1)
	promtest.WantValue(t, "successful builds", c.metrics.builds.WithLabelValues("success"), 1)
	if got := testutil.ToFloat64(c.metrics.pullBytes); got <= 0 {
		t.Errorf("image pull bytes: got %v, want > 0", got)
	}
	promtest.CheckHygiene(t, reg)
	if got := dirFiles(t, filepath.Join(c.opts.Dir, "7")); !slices.Equal(got, []string{commit + ".tar", commit + ".tar.sha256"}) {
		t.Errorf("files in the app folder: got %q, want the tar and its checksum", got)
	}
}

func TestEnsureImageWithoutAssetsGivesEmptyValidTar(t *testing.T) {
	r := newTestRegistry(t)
	ref := r.push(t, "app/none", imageOf(t, layerOf(t, file("etc/x", "x"))))
	c, _ := newCache(t, Options{})
	if err := c.Ensure(context.Background(), 1, commit, ref); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if got := readTarFile(t, c.TarPath(1, commit)); len(got) != 0 {
		t.Errorf("members: got %q, want none", got)
	}
}

func TestEnsureFailsOnCorruptTransfersAndLeavesNoTar(t *testing.T) {
	body := strings.Repeat("payload ", 1000)
	uncompressed := static.NewLayer(tarOf(t, file("assets/a", body)), types.OCIUncompressedLayer)
	tests := []struct {
		name    string
		layer   v1.Layer
		corrupt func(r *testRegistry, l v1.Layer)
		fetches func(r *testRegistry) int64
	}{
		{
			name:  "a corrupt gzip layer fails the build",
			layer: layerOf(t, file("assets/a", body)),
			corrupt: func(r *testRegistry, l v1.Layer) {
				d, _ := l.Digest()
				r.corruptBlob(d)
			},
			fetches: func(r *testRegistry) int64 { return r.blobGets.Load() },
		},
		{
			name:  "a layer whose bytes still read as a tar fails on its digest",
			layer: uncompressed,
			corrupt: func(r *testRegistry, l v1.Layer) {
				d, _ := l.Digest()
				r.corruptBlob(d)
			},
			fetches: func(r *testRegistry) int64 { return r.blobGets.Load() },
		},
		{
			name:    "a manifest that does not match the reference's digest fails the build",
			layer:   layerOf(t, file("assets/a", body)),
			corrupt: func(r *testRegistry, _ v1.Layer) { r.corruptManifests.Store(true) },
			fetches: func(r *testRegistry) int64 { return r.manifestGets.Load() },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRegistry(t)
			ref := r.push(t, "app/corrupt", imageOf(t, tt.layer))
			tt.corrupt(r, tt.layer)
			c, _ := newCache(t, Options{Retry: Retry{Attempts: 3, Min: time.Millisecond}})

			err := c.Ensure(context.Background(), 2, commit, ref)
			if err == nil {
				t.Fatalf("Ensure: got nil error, want one")
			}
			t.Logf("error: %v", err)
			if c.Has(2, commit) {
				t.Errorf("Has after a failed build: got true, want false")
			}
			if got := dirFiles(t, filepath.Join(c.opts.Dir, "2")); len(got) != 0 {
				t.Errorf("files left behind: got %q, want none", got)
			}
			if got := tt.fetches(r); got != 3 {
				t.Errorf("fetches: got %d, want 3 (a corrupt transfer is retried)", got)
			}
			promtest.WantValue(t, "failed builds", c.metrics.builds.WithLabelValues("failure"), 1)
		})
	}
}

func TestEnsureRetriesRegistryFaults(t *testing.T) {
	r, ref := registryWithSample(t, "app/flaky")
	r.failNext.Store(2)
	c, _ := newCache(t, Options{Retry: Retry{Attempts: 3, Min: time.Millisecond}})

	if err := c.Ensure(context.Background(), 3, commit, ref); err != nil {
		t.Fatalf("Ensure after two 500s: %v", err)
	}
	if got := r.manifestGets.Load(); got != 3 {
		t.Errorf("manifest fetches: got %d, want 3", got)
	}
	promtest.WantValue(t, "retries", c.metrics.buildRetries, 2)
	if got := readTarFile(t, c.TarPath(3, commit)); !slices.Equal(got, sampleMembers) {
		t.Errorf("members: got %q, want %q", got, sampleMembers)
	}
}

func TestEnsureGivesUpAfterTheLastAttempt(t *testing.T) {
	r, ref := registryWithSample(t, "app/down")
	r.failNext.Store(100)
	c, _ := newCache(t, Options{Retry: Retry{Attempts: 3, Min: time.Millisecond}})

	if err := c.Ensure(context.Background(), 3, commit, ref); err == nil {
		t.Fatalf("Ensure against a failing registry: got nil error, want one")
	}
	if got := r.manifestGets.Load(); got != 3 {
		t.Errorf("manifest fetches: got %d, want 3", got)
	}
}

func TestEnsureAbandonsAStalledTransferAndRetries(t *testing.T) {
	r, ref := registryWithSample(t, "app/stall")
	release := r.hold() // the registry accepts the manifest request and says nothing
	t.Cleanup(release)
	c, _ := newCache(t, Options{StallTimeout: 50 * time.Millisecond, Retry: Retry{Attempts: 2, Min: time.Millisecond}})

	err := c.Ensure(context.Background(), 13, commit, ref)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("Ensure against a silent registry: got %v, want ErrStalled", err)
	}
	if got := r.manifestGets.Load(); got != 2 {
		t.Errorf("manifest fetches: got %d, want 2 (a stall is retried)", got)
	}
	if got := dirFiles(t, filepath.Join(c.opts.Dir, "13")); len(got) != 0 {
		t.Errorf("files left behind: got %q, want none", got)
	}
}

func TestEnsureKeepsASlowTransferThatMakesProgress(t *testing.T) {
	r := newTestRegistry(t)
	body := strings.Repeat("0123456789abcdef", 8*1024) // 128 KiB: 128 pieces
	ref := r.push(t, "app/slow", imageOf(t, static.NewLayer(tarOf(t, file("assets/a", body)), types.OCIUncompressedLayer)))
	r.trickle.Store(int64(5 * time.Millisecond)) // at least 640 ms in all
	c, _ := newCache(t, Options{StallTimeout: 400 * time.Millisecond, Retry: Retry{Attempts: 1}})

	if err := c.Ensure(context.Background(), 14, commit, ref); err != nil {
		t.Fatalf("Ensure of a slow but steady transfer: %v", err)
	}
	want := []string{`a "` + body + `"`}
	if got := readTarFile(t, c.TarPath(14, commit)); !slices.Equal(got, want) {
		t.Errorf("members: got %d members, want the 128 KiB file", len(got))
	}
}

func TestEnsureDoesNotRetryAMissingImage(t *testing.T) {
	r, ref := registryWithSample(t, "app/exists")
	missing := ref[:strings.LastIndex(ref, ":")+1] + strings.Repeat("0", 64)
	c, _ := newCache(t, Options{})

	if err := c.Ensure(context.Background(), 4, commit, missing); err == nil {
		t.Fatalf("Ensure of a missing manifest: got nil error, want one")
	}
	if got := r.manifestGets.Load(); got != 1 {
		t.Errorf("manifest fetches: got %d, want 1 (404 is not retried)", got)
	}
}

func TestEnsureEnforcesMaxBytes(t *testing.T) {
	r := newTestRegistry(t)
	ref := r.push(t, "app/big", imageOf(t, layerOf(t, file("assets/big", strings.Repeat("x", 10000)))))
	c, _ := newCache(t, Options{MaxBytes: 4096})

	err := c.Ensure(context.Background(), 5, commit, ref)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Ensure of a too large tar: got %v, want ErrTooLarge", err)
	}
	if got := dirFiles(t, filepath.Join(c.opts.Dir, "5")); len(got) != 0 {
		t.Errorf("files left behind: got %q, want none", got)
	}
	if got := r.manifestGets.Load(); got != 1 {
		t.Errorf("manifest fetches: got %d, want 1 (the size limit is not retried)", got)
	}
	// Asked again (the target sync does), the same release is not pulled
	// again: the failure is returned at once, marked permanent, and
	// counted once.
	for range 3 {
		err = c.Ensure(context.Background(), 5, commit, ref)
		var p interface{ Permanent() bool }
		if !errors.Is(err, ErrTooLarge) || !errors.As(err, &p) || !p.Permanent() {
			t.Fatalf("Ensure again: got %v, want a permanent ErrTooLarge", err)
		}
	}
	if got := r.manifestGets.Load(); got != 1 {
		t.Errorf("manifest fetches after asking again: got %d, want 1", got)
	}
	promtest.WantValue(t, "too-large count", c.metrics.tooLarge, 1)
	// Another commit of the app (a new target) is pulled.
	if err := c.Ensure(context.Background(), 5, "other", ref); !errors.Is(err, ErrTooLarge) || r.manifestGets.Load() != 2 {
		t.Errorf("Ensure of another commit: got %v after %d manifest fetches, want ErrTooLarge after 2", err, r.manifestGets.Load())
	}
}

func TestEnsureConcurrentCallsBuildOnce(t *testing.T) {
	r, ref := registryWithSample(t, "app/popular")
	c, _ := newCache(t, Options{})
	release := r.hold()
	t.Cleanup(release)

	const n = 16
	errs := make(chan error, n)
	for range n {
		go func() { errs <- c.Ensure(context.Background(), 6, commit, ref) }()
	}
	testkit.Eventually(t, "every caller to miss the cache", func() bool { return testutil.ToFloat64(c.metrics.misses) == n })
	testkit.Eventually(t, "the build to ask for the manifest", func() bool { return r.manifestGets.Load() == 1 })
	release()
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Ensure: %v", err)
		}
	}
	if got := r.manifestGets.Load(); got != 1 {
		t.Errorf("manifest fetches: got %d, want 1", got)
	}
	promtest.WantValue(t, "builds", c.metrics.builds.WithLabelValues("success"), 1)
}

func TestEnsureReturnsWhenTheCallerGivesUpAndTheBuildGoesOn(t *testing.T) {
	r, ref := registryWithSample(t, "app/slow")
	c, _ := newCache(t, Options{})
	release := r.hold()
	t.Cleanup(release)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Ensure(ctx, 8, commit, ref) }()
	testkit.Eventually(t, "the build to ask for the manifest", func() bool { return r.manifestGets.Load() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Ensure after cancel: got %v, want context.Canceled", err)
	}
	release()
	testkit.Eventually(t, "the build to finish", func() bool { return c.Has(8, commit) })
}

func TestCloseAbortsBuildsAndRefusesNewOnes(t *testing.T) {
	r, ref := registryWithSample(t, "app/closing")
	c, _ := newCache(t, Options{})
	release := r.hold()
	t.Cleanup(release)

	done := make(chan error, 1)
	go func() { done <- c.Ensure(context.Background(), 12, commit, ref) }()
	testkit.Eventually(t, "the build to ask for the manifest", func() bool { return r.manifestGets.Load() == 1 })
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; err == nil {
		t.Errorf("Ensure during Close: got nil error, want one")
	}
	if got := dirFiles(t, filepath.Join(c.opts.Dir, "12")); len(got) != 0 {
		t.Errorf("files left after Close: got %q, want none", got)
	}
	if err := c.Ensure(context.Background(), 12, commit, ref); !errors.Is(err, ErrClosed) {
		t.Errorf("Ensure after Close: got %v, want ErrClosed", err)
	}
}

func TestEnsureRejectsUnsafeKeys(t *testing.T) {
	c, _ := newCache(t, Options{})
	for _, k := range []struct {
		app    int64
		commit string
	}{{0, commit}, {-1, commit}, {1, ""}, {1, "../x"}, {1, ".hidden"}, {1, "a/b"}, {1, strings.Repeat("a", 129)}} {
		if err := c.Ensure(context.Background(), k.app, k.commit, "127.0.0.1:1/x@sha256:"+strings.Repeat("0", 64)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Ensure(%d, %q): got %v, want ErrInvalidKey", k.app, k.commit, err)
		}
	}
}

func TestNewRemovesLeftoverTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "9")
	if err := os.MkdirAll(app, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{tmpPrefix + commit + "-123.tar", commit + ".tar", commit + ".tar.sha256"} {
		if err := os.WriteFile(filepath.Join(app, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := New(Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if got, want := dirFiles(t, app), []string{commit + ".tar", commit + ".tar.sha256"}; !slices.Equal(got, want) {
		t.Errorf("files after New: got %q, want %q", got, want)
	}
}

func TestPrune(t *testing.T) {
	c, _ := newCache(t, Options{})
	app := filepath.Join(c.opts.Dir, "10")
	if err := os.MkdirAll(app, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a.tar", "a.tar.sha256", "b.tar", "b.tar.sha256", "c.tar"} {
		if err := os.WriteFile(filepath.Join(app, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Prune(10, "b"); err != nil {
		t.Fatalf("Prune keeping b: %v", err)
	}
	if got, want := dirFiles(t, app), []string{"b.tar", "b.tar.sha256"}; !slices.Equal(got, want) {
		t.Errorf("after Prune keeping b: got %q, want %q", got, want)
	}
	if !c.Has(10, "b") || c.Has(10, "a") {
		t.Errorf("Has after Prune: got b=%v a=%v, want b=true a=false", c.Has(10, "b"), c.Has(10, "a"))
	}
	if err := c.Prune(10, ""); err != nil {
		t.Fatalf("Prune keeping none: %v", err)
	}
	if _, err := os.Stat(app); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("app folder after Prune keeping none: got %v, want it gone", err)
	}
	if err := c.Prune(11, ""); err != nil {
		t.Errorf("Prune of an app without tars: got %v, want nil", err)
	}
}

// serveHandler serves the assets of app 1 at commit from image.
func serveHandler(t testing.TB, c *Cache, image string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := c.Serve(w, r, 1, commit, image); err != nil {
			t.Logf("serve: %v", err)
			http.Error(w, "Service unavailable", http.StatusServiceUnavailable)
		}
	})
}

func TestServe(t *testing.T) {
	r, ref := registryWithSample(t, "app/serve")
	c, _ := newCache(t, Options{})
	srv := testkit.Server(t, serveHandler(t, c, ref))

	get := func(t *testing.T, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req := testkit.NewRequest(t, http.MethodGet, srv.URL, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return testkit.Do(t, srv.Client(), req)
	}

	resp, whole := get(t, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: got %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != ContentType {
		t.Errorf("Content-Type: got %q, want %q", got, ContentType)
	}
	sum := sha256.Sum256(whole)
	etag := `"sha256:` + hex.EncodeToString(sum[:]) + `"`
	if got := resp.Header.Get("ETag"); got != etag {
		t.Errorf("ETag: got %s, want %s", got, etag)
	}
	if got := readTar(t, strings.NewReader(string(whole))); !slices.Equal(got, sampleMembers) {
		t.Errorf("members: got %q, want %q", got, sampleMembers)
	}

	t.Run("a range request gets 206 and the bytes asked for", func(t *testing.T) {
		resp, b := get(t, map[string]string{"Range": "bytes=100-611"})
		if resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("status: got %d, want 206", resp.StatusCode)
		}
		if string(b) != string(whole[100:612]) {
			t.Errorf("range body: got %d bytes differing from the tar's bytes 100-611", len(b))
		}
		if got, want := resp.Header.Get("Content-Range"), "bytes 100-611/"+itoa(len(whole)); got != want {
			t.Errorf("Content-Range: got %q, want %q", got, want)
		}
	})
	t.Run("If-None-Match with the ETag gets 304", func(t *testing.T) {
		resp, b := get(t, map[string]string{"If-None-Match": etag})
		if resp.StatusCode != http.StatusNotModified || len(b) != 0 {
			t.Errorf("got %d with %d bytes, want 304 without a body", resp.StatusCode, len(b))
		}
	})
	t.Run("If-None-Match with another ETag gets the tar", func(t *testing.T) {
		resp, b := get(t, map[string]string{"If-None-Match": `"other"`})
		if resp.StatusCode != http.StatusOK || len(b) != len(whole) {
			t.Errorf("got %d with %d bytes, want 200 with %d", resp.StatusCode, len(b), len(whole))
		}
	})
	var body416 int
	t.Run("a range past the end gets 416", func(t *testing.T) {
		resp, b := get(t, map[string]string{"Range": "bytes=999999-"})
		body416 = len(b)
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("status: got %d, want 416", resp.StatusCode)
		}
	})
	if got, want := testutil.ToFloat64(c.metrics.bytesServed), 2*len(whole)+512+body416; got != float64(want) {
		t.Errorf("bytes served: got %v, want %d", got, want)
	}
	if got := r.manifestGets.Load(); got != 1 {
		t.Errorf("manifest fetches: got %d, want 1", got)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestServeRebuildsAMissingTar(t *testing.T) {
	r, ref := registryWithSample(t, "app/rebuild")
	c, _ := newCache(t, Options{})
	if err := c.Ensure(context.Background(), 1, commit, ref); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(c.TarPath(1, commit)); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	if err := c.Serve(rec, httptest.NewRequest(http.MethodGet, "/", nil), 1, commit, ref); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if rec.Code != http.StatusOK {
		t.Fatalf("status: got %d, want 200", rec.Code)
	}
	if got := readTar(t, rec.Body); !slices.Equal(got, sampleMembers) {
		t.Errorf("members: got %q, want %q", got, sampleMembers)
	}
	if !c.Has(1, commit) {
		t.Errorf("Has after the rebuild: got false, want true")
	}
	if got := r.manifestGets.Load(); got != 2 {
		t.Errorf("manifest fetches: got %d, want 2", got)
	}
}

func TestServeRecomputesAMissingChecksum(t *testing.T) {
	r, ref := registryWithSample(t, "app/sum")
	c, _ := newCache(t, Options{})
	serve := func() string {
		rec := httptest.NewRecorder()
		if err := c.Serve(rec, httptest.NewRequest(http.MethodGet, "/", nil), 1, commit, ref); err != nil {
			t.Fatalf("Serve: %v", err)
		}
		return rec.Header().Get("ETag")
	}
	want := serve()
	if err := os.Remove(c.sumPath(1, commit)); err != nil {
		t.Fatal(err)
	}
	if got := serve(); got != want {
		t.Errorf("ETag without the checksum file: got %s, want %s", got, want)
	}
	if _, err := os.Stat(c.sumPath(1, commit)); err != nil {
		t.Errorf("checksum file after Serve: got %v, want it written again", err)
	}
	if got := r.manifestGets.Load(); got != 1 {
		t.Errorf("manifest fetches: got %d, want 1", got)
	}
}

func TestServeConcurrentFirstRequestsBuildOnce(t *testing.T) {
	r, ref := registryWithSample(t, "app/first")
	c, _ := newCache(t, Options{})
	srv := testkit.Server(t, serveHandler(t, c, ref))

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			if got := readTar(t, resp.Body); resp.StatusCode != http.StatusOK || !slices.Equal(got, sampleMembers) {
				t.Errorf("got %d %q, want 200 %q", resp.StatusCode, got, sampleMembers)
			}
		})
	}
	wg.Wait()
	if got := r.manifestGets.Load(); got != 1 {
		t.Errorf("manifest fetches: got %d, want 1", got)
	}
}

func TestServeWritesNothingWhenTheTarCannotBeBuilt(t *testing.T) {
	r := newTestRegistry(t)
	c, _ := newCache(t, Options{})
	rec := httptest.NewRecorder()
	missing := r.host + "/app/nothing@sha256:" + strings.Repeat("0", 64)
	if err := c.Serve(rec, httptest.NewRequest(http.MethodGet, "/", nil), 1, commit, missing); err == nil {
		t.Fatalf("Serve of a missing image: got nil error, want one")
	}
	if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
		t.Errorf("response: got %d body bytes and headers %v, want nothing written", rec.Body.Len(), rec.Header())
	}
}

func TestViolations(t *testing.T) {
	_, ref := registryWithSample(t, "app/violations")
	tests := []struct {
		violation string
		check     func(t *testing.T, rec *httptest.ResponseRecorder)
	}{
		{"assets-keep-prefix", func(t *testing.T, rec *httptest.ResponseRecorder) {
			want := []string{`assets/.config "c"`, `assets/firmware.bin "v2"`, "assets/sub/ dir", `assets/sub/x.hex "hex"`}
			if got := readTar(t, rec.Body); !slices.Equal(got, want) {
				t.Errorf("members: got %q, want %q", got, want)
			}
		}},
		{"assets-wrong-content-type", func(t *testing.T, rec *httptest.ResponseRecorder) {
			if got := rec.Header().Get("Content-Type"); got == ContentType {
				t.Errorf("Content-Type: got %q, want something else", got)
			}
		}},
		{"assets-ignore-whiteouts", func(t *testing.T, rec *httptest.ResponseRecorder) {
			if got := readTar(t, rec.Body); !slices.Contains(got, `gone "g"`) {
				t.Errorf("members: got %q, want the deleted file gone", got)
			}
		}},
		{"assets-lower-layer-wins", func(t *testing.T, rec *httptest.ResponseRecorder) {
			if got := readTar(t, rec.Body); !slices.Contains(got, `firmware.bin "v1"`) {
				t.Errorf("members: got %q, want firmware.bin at v1", got)
			}
		}},
		{"assets-drop-dotfiles", func(t *testing.T, rec *httptest.ResponseRecorder) {
			want := []string{`firmware.bin "v2"`, "sub/ dir", `sub/x.hex "hex"`}
			if got := readTar(t, rec.Body); !slices.Equal(got, want) {
				t.Errorf("members: got %q, want %q", got, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.violation, func(t *testing.T) {
			if _, ok := violation.Known[tt.violation]; !ok {
				t.Fatalf("violation %q is not registered", tt.violation)
			}
			c, _ := newCache(t, Options{Violations: violation.Set{tt.violation: true}})
			rec := httptest.NewRecorder()
			if err := c.Serve(rec, httptest.NewRequest(http.MethodGet, "/", nil), 1, commit, ref); err != nil {
				t.Fatalf("Serve: %v", err)
			}
			tt.check(t, rec)
		})
	}
}

func TestPlainHTTPRegistries(t *testing.T) {
	some, err := New(Options{Dir: t.TempDir(), InsecureRegistries: []string{"reg.lan", "build.lan:5000", "[fd00::2]"}})
	if err != nil {
		t.Fatal(err)
	}
	all, err := New(Options{Dir: t.TempDir(), Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	none, err := New(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		image           string
		some, all, none string // the scheme each cache uses
	}{
		{"127.0.0.1:5000/app@sha256:" + strings.Repeat("a", 64), "http", "http", "http"},
		{"registry.localhost:48481/app:1", "http", "http", "http"},
		{"reg.lan/app:1", "http", "http", "https"},
		{"REG.lan:8443/app:1", "http", "http", "https"},
		{"build.lan:5000/app:1", "http", "http", "https"},
		{"build.lan:5001/app:1", "https", "http", "https"},
		{"registry.example.com/app:1", "https", "http", "https"},
		{"[fd00::2]:5000/app:1", "http", "http", "https"},
		{"[fd00::3]:5000/app:1", "https", "http", "https"},
	} {
		for _, c := range []struct {
			name  string
			cache *Cache
			want  string
		}{{"listed", some, tc.some}, {"all", all, tc.all}, {"none", none, tc.none}} {
			ref, err := c.cache.parseRef(tc.image)
			if err != nil {
				t.Fatalf("%s: %v", tc.image, err)
			}
			if got := ref.Context().Scheme(); got != c.want {
				t.Errorf("%s with %s insecure registries: got %s, want %s", tc.image, c.name, got, c.want)
			}
		}
	}
}

func TestServeAnEmptySuffixRangeIsUnsatisfiable(t *testing.T) {
	_, ref := registryWithSample(t, "app/suffix")
	c, _ := newCache(t, Options{})
	srv := testkit.Server(t, serveHandler(t, c, ref))
	get := func(t *testing.T, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		return testkit.Do(t, srv.Client(), testkit.NewRequest(t, http.MethodGet, srv.URL, nil, hdr...))
	}
	_, whole := get(t)
	size := itoa(len(whole))

	for _, rg := range []string{"bytes=-0", "bytes=-000", "bytes= -0 , -0"} {
		resp, _ := get(t, "Range", rg)
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("Content-Range") != "bytes */"+size {
			t.Errorf("Range %q: got %d Content-Range %q, want 416 bytes */%s", rg, resp.StatusCode, resp.Header.Get("Content-Range"), size)
		}
	}
	resp, b := get(t, "Range", "bytes=-0,0-9")
	if resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != "bytes 0-9/"+size || string(b) != string(whole[:10]) {
		t.Errorf("Range -0,0-9: got %d Content-Range %q, want 206 of bytes 0-9 only", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
	if resp, _ := get(t, "Range", "bytes=-1"); resp.StatusCode != http.StatusPartialContent || resp.Header.Get("Content-Range") != "bytes "+itoa(len(whole)-1)+"-"+itoa(len(whole)-1)+"/"+size {
		t.Errorf("Range -1: got %d Content-Range %q, want the last byte", resp.StatusCode, resp.Header.Get("Content-Range"))
	}
	// A failing If-Range still makes the Range ignored: the whole tar.
	if resp, b := get(t, "Range", "bytes=-0", "If-Range", `"other"`); resp.StatusCode != http.StatusOK || len(b) != len(whole) {
		t.Errorf("Range -0 with a stale If-Range: got %d with %d bytes, want 200 with the whole tar", resp.StatusCode, len(b))
	}
}
