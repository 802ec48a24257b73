package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/depharness/depharness/internal/promreg/promtest"
	"github.com/depharness/depharness/internal/testkit"
)

// fixture is a Server on a loopback listener and a Builder pushing to it.
type fixture struct {
	srv     *Server
	http    *httptest.Server
	host    string
	builder *Builder
}

func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testkit.Logger(t, slog.LevelDebug)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	hs := testkit.Server(t, srv)
	host := strings.TrimPrefix(hs.URL, "http://")
	return &fixture{srv: srv, http: hs, host: host, builder: NewBuilder(BuilderOptions{Registry: host})}
}

func (f *fixture) build(t testing.TB, repo string, layers ...Layer) (string, v1.Hash) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ref, d, err := f.builder.Build(ctx, repo, layers...)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return ref, d
}

// noRetry makes ggcr's client give up at the first failure, so each
// injected fault shows.
func noRetry() []remote.Option {
	return []remote.Option{
		remote.WithRetryStatusCodes(),
		remote.WithRetryPredicate(func(error) bool { return false }),
	}
}

func pullImage(t testing.TB, ref string, opts ...remote.Option) (v1.Image, error) {
	t.Helper()
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		t.Fatalf("ParseReference(%q): %v", ref, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return remote.Image(r, append([]remote.Option{remote.WithContext(ctx)}, opts...)...)
}

// checkAssets fails the test unless img's /assets, extracted as Docker
// would, are want; what names them in the failure.
func checkAssets(t *testing.T, img v1.Image, want map[string][]byte, what string) {
	t.Helper()
	got, err := extractAssets(t, img)
	if err != nil {
		t.Fatalf("%s: extract: %v", what, err)
	}
	if !maps.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("%s: got %q, want %q", what, got, want)
	}
}

// extractAssets flattens img with ggcr's mutate.Extract and returns the
// regular files under /assets, relative to it.
func extractAssets(t testing.TB, img v1.Image) (map[string][]byte, error) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string][]byte{}
	err := testkit.WalkTar(rc, func(h *tar.Header, body io.Reader) error {
		rel, ok := strings.CutPrefix(strings.TrimLeft(h.Name, "/"), "assets/")
		if !ok || h.Typeflag != tar.TypeReg {
			return nil
		}
		b, err := io.ReadAll(body)
		out[rel] = b
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// releaseLayers are three layers exercising overwrite, whiteouts, an opaque
// directory, nested and hidden files.
func releaseLayers() []Layer {
	return []Layer{
		{Files: map[string][]byte{
			"firmware.bin": []byte("v1 firmware"), ".hidden": []byte("dot"), "sub/x.hex": []byte(":00000001FF"),
			"old.txt": []byte("to be deleted"), "cfg/a": []byte("a"), "cfg/b": []byte("b"),
		}},
		{Files: map[string][]byte{"firmware.bin": []byte("v2 firmware"), "sub/deep/y.hex": []byte("y")}, Delete: []string{"old.txt"}},
		{Opaque: []string{"cfg"}, Files: map[string][]byte{"cfg/c": []byte("c")}},
	}
}

func TestPulledImageFlattensToWhatFlattenPredicts(t *testing.T) {
	for _, format := range []Format{FormatDocker, FormatOCI} {
		t.Run(fmt.Sprintf("format %d", format), func(t *testing.T) {
			f := newFixture(t, Options{})
			f.builder = NewBuilder(BuilderOptions{Registry: f.host, Format: format})
			layers := releaseLayers()
			ref, d := f.build(t, "apps/1234", layers...)
			if want := f.host + "/apps/1234@" + d.String(); ref != want {
				t.Errorf("ref: got %s, want %s", ref, want)
			}
			img, err := pullImage(t, ref)
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			if got, err := img.Digest(); err != nil || got != d {
				t.Errorf("pulled digest: got %s (%v), want %s", got, err, d)
			}
			want := Flatten(layers...)
			checkAssets(t, img, want, "flattened /assets")
			if string(want["firmware.bin"]) != "v2 firmware" || want["old.txt"] != nil || want["cfg/a"] != nil || want[".hidden"] == nil {
				t.Errorf("Flatten of the release: got %q, want the v2 firmware, no old.txt or cfg/a, .hidden kept", want)
			}
		})
	}
}

func TestBuilderPushesInProcessThroughHandlerTransport(t *testing.T) {
	srv, err := New(Options{Logger: testkit.Logger(t, slog.LevelDebug)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tr := HandlerTransport(srv)
	b := NewBuilder(BuilderOptions{Registry: "registry.test", Transport: tr})
	layers := releaseLayers()
	ref, d, err := b.Build(context.Background(), "apps/1", layers...)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if want := "registry.test/apps/1@" + d.String(); ref != want {
		t.Errorf("ref: got %s, want %s", ref, want)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithTransport(tr))
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	checkAssets(t, img, Flatten(layers...), "flattened /assets")
}

func TestBuildFromDirPushesTheDirectoryAsAssets(t *testing.T) {
	f := newFixture(t, Options{})
	dir := t.TempDir()
	files := map[string][]byte{"a.bin": []byte("a"), ".h": []byte("h"), "s/t/u": []byte("u")}
	for rel, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ref, _, err := f.builder.BuildFromDir(context.Background(), "apps/dir", dir)
	if err != nil {
		t.Fatalf("BuildFromDir: %v", err)
	}
	img, err := pullImage(t, ref)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	checkAssets(t, img, files, "flattened /assets")
}

func TestFailNextFailsExactlyNPullsOfItsKind(t *testing.T) {
	f := newFixture(t, Options{})
	ref, _ := f.build(t, "apps/1", releaseLayers()...)

	f.srv.FailNext(KindManifest, 2, http.StatusServiceUnavailable)
	for i := range 2 {
		_, err := pullImage(t, ref, noRetry()...)
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("pull %d: got error %v, want status 503", i, err)
		}
	}
	img, err := pullImage(t, ref, noRetry()...)
	if err != nil {
		t.Fatalf("pull after the failures: got %v, want success", err)
	}

	f.srv.FailNext(KindBlob, 1, http.StatusNotFound)
	if _, err := img.ConfigFile(); err == nil {
		t.Fatalf("config blob with a failure armed: got success, want 404")
	}
	if _, err := extractAssets(t, img); err != nil {
		t.Errorf("layers after the one failure: got %v, want success", err)
	}

	var failed int
	for _, r := range f.srv.Requests() {
		if r.Fault == "fail" {
			failed++
		}
	}
	if failed != 3 {
		t.Errorf("requests with fault \"fail\": got %d, want 3", failed)
	}
}

func TestFailLastsUntilUnfail(t *testing.T) {
	f := newFixture(t, Options{})
	ref, _ := f.build(t, "apps/1", releaseLayers()...)
	f.srv.Fail(KindManifest, http.StatusTooManyRequests)
	for i := range 3 {
		if _, err := pullImage(t, ref, noRetry()...); err == nil {
			t.Fatalf("pull %d while failing: got success, want 429", i)
		}
	}
	f.srv.Unfail(KindManifest)
	if _, err := pullImage(t, ref, noRetry()...); err != nil {
		t.Errorf("pull after Unfail: got %v, want success", err)
	}
	f.srv.Fail(KindManifest, http.StatusBadGateway)
	f.srv.Heal()
	if _, err := pullImage(t, ref, noRetry()...); err != nil {
		t.Errorf("pull after Heal: got %v, want success", err)
	}
}

func TestFaultsLeavePushesAlone(t *testing.T) {
	f := newFixture(t, Options{})
	f.srv.Fail(KindManifest, http.StatusServiceUnavailable)
	f.srv.Fail(KindBlob, http.StatusServiceUnavailable)
	f.srv.Fail(KindBase, http.StatusServiceUnavailable)
	f.srv.Throttle(1)
	f.srv.CorruptNext(100)
	if _, _, err := f.builder.Build(context.Background(), "apps/1", releaseLayers()...); err != nil {
		t.Errorf("push while pulls fail: got %v, want success", err)
	}
}

func TestCorruptNextServesABlobThatFailsItsDigestOnce(t *testing.T) {
	f := newFixture(t, Options{Seed: 42})
	ref, _ := f.build(t, "apps/1", releaseLayers()...)
	layers := pullLayers(t, ref, noRetry()...)
	f.srv.CorruptNext(1)
	if err := readLayer(layers[0]); err == nil || !strings.Contains(err.Error(), "error verifying sha256 checksum") {
		t.Fatalf("corrupt blob: got error %v, want a sha256 verification error", err)
	}
	if err := readLayer(layers[0]); err != nil {
		t.Errorf("next read: got %v, want success (only one corruption armed)", err)
	}
}

func TestCorruptDigestUntilUncorrupt(t *testing.T) {
	f := newFixture(t, Options{Seed: 7})
	ref, _ := f.build(t, "apps/1", releaseLayers()...)
	layers := pullLayers(t, ref, noRetry()...)
	d, err := layers[1].Digest()
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Corrupt(d)
	for i := range 2 {
		if err := readLayer(layers[1]); err == nil {
			t.Fatalf("read %d of the corrupted digest: got success, want a digest error", i)
		}
	}
	if err := readLayer(layers[0]); err != nil {
		t.Errorf("another blob: got %v, want success", err)
	}
	f.srv.Uncorrupt()
	if err := readLayer(layers[1]); err != nil {
		t.Errorf("after Uncorrupt: got %v, want success", err)
	}
	// A corrupt body keeps its length: the digest is what catches it.
	for _, r := range f.srv.Requests() {
		if r.Fault == "corrupt" {
			size, _ := layers[1].Size()
			if r.Bytes != size {
				t.Errorf("corrupt body: got %d bytes, want %d", r.Bytes, size)
			}
		}
	}
}

// pullLayers pulls ref and returns its layers.
func pullLayers(t testing.TB, ref string, opts ...remote.Option) []v1.Layer {
	t.Helper()
	img, err := pullImage(t, ref, opts...)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return layers
}

func readLayer(l v1.Layer) error {
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// fetchBlob fetches a blob over plain HTTP and returns its body and the
// time the transfer took.
func fetchBlob(f *fixture, repo string, d v1.Hash) ([]byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.http.URL+"/v2/"+repo+"/blobs/"+d.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	start := time.Now()
	resp, err := f.http.Client().Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("GET blob: got status %d, want 200", resp.StatusCode)
	}
	return body, time.Since(start), nil
}

func getBlob(t testing.TB, f *fixture, repo string, d v1.Hash) ([]byte, time.Duration) {
	t.Helper()
	body, took, err := fetchBlob(f, repo, d)
	if err != nil {
		t.Fatal(err)
	}
	return body, took
}

// buildRandomLayer builds apps/1 with one file of size random bytes from
// seed, incompressible so that the layer blob is about as large, and
// returns the blob's digest.
func buildRandomLayer(t *testing.T, f *fixture, seed int64, size int) v1.Hash {
	t.Helper()
	content := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(content)
	ref, _ := f.build(t, "apps/1", Layer{Files: map[string][]byte{"big.bin": content}})
	d, err := pullLayers(t, ref)[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestThrottleSlowsBlobsAndUnthrottleRestoresThem(t *testing.T) {
	f := newFixture(t, Options{})
	d := buildRandomLayer(t, f, 1, 48<<10)

	const rate = 256 << 10 // bytes per second
	f.srv.Throttle(rate)
	body, took := getBlob(t, f, "apps/1", d)
	// The pacing allows at most one chunk (rate/50 bytes) ahead of
	// schedule, so the transfer cannot be faster than this.
	minTook := time.Duration(float64(len(body)-rate/50) / rate * float64(time.Second))
	if took < minTook {
		t.Errorf("throttled transfer of %d bytes: took %v, want at least %v", len(body), took, minTook)
	}
	if sum := sha256.Sum256(body); "sha256:"+hex.EncodeToString(sum[:]) != d.String() {
		t.Errorf("throttled body: digest does not match %s", d)
	}

	f.srv.Unthrottle()
	getBlob(t, f, "apps/1", d)
	// The throttled request may be recorded after this one (its handler
	// paces after the last byte): await both, then look at the later one.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var gets []Request
	err := f.srv.Await(ctx, func(rs []Request) bool {
		gets = gets[:0]
		for _, r := range rs {
			if r.Kind == KindBlob && r.Method == http.MethodGet && r.Target == d.String() {
				gets = append(gets, r)
			}
		}
		return len(gets) == 2
	})
	if err != nil {
		t.Fatalf("await blob GETs: %v", err)
	}
	slices.SortFunc(gets, func(a, b Request) int { return a.Time.Compare(b.Time) })
	if gets[0].Fault != "throttle" || gets[1].Fault != "" {
		t.Errorf("faults of the throttled and unthrottled GETs: got %q and %q, want \"throttle\" and \"\"", gets[0].Fault, gets[1].Fault)
	}
}

func TestUnthrottleReleasesATransferUnderWay(t *testing.T) {
	f := newFixture(t, Options{})
	d := buildRandomLayer(t, f, 2, 64<<10)

	// At 1 KiB/s the blob would take about a minute; Unthrottle as soon as
	// the transfer has started must let it finish within the test's
	// deadline.
	f.srv.Throttle(1 << 10)
	done := make(chan error, 1)
	go func() {
		_, _, err := fetchBlob(f, "apps/1", d)
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The request is recorded once answered; await the first throttled
	// bytes through the blob bytes counter instead.
	for testutil.ToFloat64(f.srv.metrics.BlobBytes) == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("throttled transfer never started")
		case <-time.After(5 * time.Millisecond):
		}
	}
	f.srv.Unthrottle()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("transfer after Unthrottle: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("transfer still throttled after Unthrottle")
	}
}

func TestMetricsCountRequestsAndBlobBytesAndLintClean(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFixture(t, Options{Metrics: NewMetrics(reg)})
	ref, _ := f.build(t, "apps/1", releaseLayers()...)
	img, err := pullImage(t, ref, noRetry()...)
	if err != nil {
		t.Fatal(err)
	}
	f.srv.FailNext(KindManifest, 1, http.StatusServiceUnavailable)
	if _, err := pullImage(t, ref, noRetry()...); err == nil {
		t.Fatal("pull with a failure armed: got success")
	}
	if _, err := extractAssets(t, img); err != nil {
		t.Fatal(err)
	}

	promtest.CheckHygiene(t, reg)
	m := f.srv.metrics
	if got := testutil.ToFloat64(m.Requests.WithLabelValues("manifest", "GET", "503")); got != 1 {
		t.Errorf("failed manifest GETs: got %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.Requests.WithLabelValues("manifest", "PUT", "201")); got != 1 {
		t.Errorf("manifest PUTs: got %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.Faults.WithLabelValues("fail")); got != 1 {
		t.Errorf("fail faults: got %v, want 1", got)
	}
	var blobBytes int64
	for _, r := range f.srv.Requests() {
		if r.Kind == KindBlob && r.Method == http.MethodGet {
			blobBytes += r.Bytes
		}
	}
	if blobBytes == 0 {
		t.Fatal("no blob bytes recorded")
	}
	if got := testutil.ToFloat64(m.BlobBytes); got != float64(blobBytes) {
		t.Errorf("blob bytes: got %v, want %d (sum of recorded blob GETs)", got, blobBytes)
	}
}

func TestDiskModeServesImagesAfterARestart(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, Options{Dir: dir})
	layers := releaseLayers()
	ref, d := f.build(t, "apps/1", layers...)
	ref2, _ := f.build(t, "apps/2", Layer{Files: map[string][]byte{"other": []byte("x")}})
	f.http.Close()
	if err := f.srv.Close(); err != nil {
		t.Fatal(err)
	}

	g := newFixture(t, Options{Dir: dir})
	for _, r := range []string{ref, ref2} {
		r = strings.Replace(r, f.host, g.host, 1)
		img, err := pullImage(t, r, noRetry()...)
		if err != nil {
			t.Fatalf("pull %s after restart: %v", r, err)
		}
		if r == strings.Replace(ref, f.host, g.host, 1) {
			if got, _ := img.Digest(); got != d {
				t.Errorf("digest after restart: got %s, want %s", got, d)
			}
			checkAssets(t, img, Flatten(layers...), "assets after restart")
		}
	}
}

func TestMemoryModeForgetsImagesWithTheServer(t *testing.T) {
	f := newFixture(t, Options{})
	ref, _ := f.build(t, "apps/1", releaseLayers()...)
	g := newFixture(t, Options{})
	if _, err := pullImage(t, strings.Replace(ref, f.host, g.host, 1), noRetry()...); err == nil {
		t.Errorf("pull from a fresh in-memory registry: got success, want not found")
	}
}

func TestAwaitReturnsOnceTheRequestArrives(t *testing.T) {
	f := newFixture(t, Options{})
	ref, _ := f.build(t, "apps/1", releaseLayers()...)
	f.srv.ResetRequests()
	errc := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		errc <- f.srv.Await(ctx, func(rs []Request) bool {
			for _, r := range rs {
				if r.Kind == KindManifest && r.Method == http.MethodGet && r.Repo == "apps/1" && r.Status == http.StatusOK {
					return true
				}
			}
			return false
		})
	}()
	if _, err := pullImage(t, ref); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Errorf("Await: got %v, want nil", err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if err := f.srv.Await(short, func([]Request) bool { return false }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Await of a never-true predicate: got %v, want deadline exceeded", err)
	}
}

func TestRequestLogIsBounded(t *testing.T) {
	f := newFixture(t, Options{RequestLogSize: 3})
	for range 5 {
		resp, err := http.Get(f.http.URL + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := len(f.srv.Requests()); got != 3 {
		t.Errorf("recorded requests: got %d, want 3", got)
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		path         string
		kind         Kind
		repo, target string
	}{
		{"/v2/", KindBase, "", ""},
		{"/v2", KindBase, "", ""},
		{"/v2/_catalog", KindCatalog, "", ""},
		{"/v2/apps/1/manifests/sha256:ab", KindManifest, "apps/1", "sha256:ab"},
		{"/v2/r/manifests/latest", KindManifest, "r", "latest"},
		{"/v2/apps/1/blobs/sha256:cd", KindBlob, "apps/1", "sha256:cd"},
		{"/v2/apps/1/blobs/uploads/", KindUpload, "apps/1", ""},
		{"/v2/apps/1/blobs/uploads/123", KindUpload, "apps/1", "123"},
		{"/v2/apps/1/tags/list", KindTags, "apps/1", ""},
		{"/metrics", KindOther, "", ""},
		{"/v2/x", KindOther, "", ""},
	} {
		kind, repo, target := classify(tc.path)
		if kind != tc.kind || repo != tc.repo || target != tc.target {
			t.Errorf("classify(%q): got (%s, %q, %q), want (%s, %q, %q)", tc.path, kind, repo, target, tc.kind, tc.repo, tc.target)
		}
	}
}

func TestUnknownTrafficIsRefusedAndLogged(t *testing.T) {
	f := newFixture(t, Options{})
	resp, err := http.Get(f.http.URL + "/nonsense")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nonsense: got %d, want 404", resp.StatusCode)
	}
	rs := f.srv.Requests()
	if len(rs) != 1 || rs[0].Kind != KindOther || rs[0].Status != http.StatusNotFound {
		t.Errorf("recorded: got %+v, want one 404 of kind other", rs)
	}
}
