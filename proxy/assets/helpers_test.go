package assets

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/depharness/depharness/internal/testkit"
)

// ent is one member of a test layer. typ 0 means a regular file (or a
// directory when name ends in "/").
type ent struct {
	name string
	body string
	typ  byte
	link string
	mode int64 // 0 means 0o644 (0o755 for a directory)
}

func file(name, body string) ent  { return ent{name: name, body: body} }
func dir(name string) ent         { return ent{name: name, typ: tar.TypeDir} }
func symlink(name, to string) ent { return ent{name: name, typ: tar.TypeSymlink, link: to} }
func hardlink(name, to string) ent {
	return ent{name: name, typ: tar.TypeLink, link: to}
}

// withMode returns e with its mode bits set to mode.
func withMode(e ent, mode int64) ent { e.mode = mode; return e }

// tarOf returns a tar stream of es.
func tarOf(t testing.TB, es ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, ModTime: time.Unix(1700000000, 0)}
		switch {
		case e.typ == 0 && strings.HasSuffix(e.name, "/"):
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case e.typ == 0:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		case e.typ == tar.TypeDir:
			h.Mode = 0o755
		case e.typ == tar.TypeChar || e.typ == tar.TypeBlock:
			h.Devmajor, h.Devminor = 1, 3
		}
		if e.mode != 0 {
			h.Mode = e.mode
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %s: %v", e.name, err)
		}
		if h.Size > 0 {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layerOf returns a gzip-compressed layer holding es.
func layerOf(t testing.TB, es ...ent) v1.Layer {
	t.Helper()
	b := tarOf(t, es...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// imageOf returns an image of layers, bottom first.
func imageOf(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// member is one member of an output tar, in a form easy to compare.
func member(h *tar.Header, body []byte) string {
	switch h.Typeflag {
	case tar.TypeDir:
		return h.Name + " dir"
	case tar.TypeSymlink:
		return h.Name + " -> " + h.Linkname
	case tar.TypeLink:
		return h.Name + " => " + h.Linkname
	default:
		return fmt.Sprintf("%s %q", h.Name, body)
	}
}

// readTar lists the members of a tar stream, sorted; it fails the test on a
// malformed tar or a name that appears twice.
func readTar(t testing.TB, r io.Reader) []string {
	t.Helper()
	got := []string{}
	seen := map[string]bool{}
	for h, tr := range testkit.TarMembers(t, r) {
		if seen[h.Name] {
			t.Errorf("member %q appears twice", h.Name)
		}
		seen[h.Name] = true
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, member(h, body))
	}
	sort.Strings(got)
	return got
}

func readTarFile(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readTar(t, f)
}

// testRegistry is ggcr's in-memory registry behind fault knobs and counters.
type testRegistry struct {
	srv  *httptest.Server
	host string

	manifestGets atomic.Int64
	blobGets     atomic.Int64
	failNext     atomic.Int64 // manifest GETs still to answer with 500
	// corruptManifests, if true, serves manifests with one byte changed.
	corruptManifests atomic.Bool
	// trickle, if non-zero, sends blob bodies 1 KiB at a time with this
	// pause between pieces.
	trickle atomic.Int64

	mu      sync.Mutex
	corrupt map[string]bool // blob digests served with one byte flipped
	gate    chan struct{}   // if non-nil, manifest GETs wait for it to close
}

func newTestRegistry(t testing.TB, opts ...registry.Option) *testRegistry {
	t.Helper()
	r := &testRegistry{corrupt: map[string]bool{}}
	opts = append([]registry.Option{registry.Logger(logTo(t))}, opts...)
	inner := registry.New(opts...)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		isGet := req.Method == http.MethodGet
		switch {
		case isGet && strings.Contains(req.URL.Path, "/manifests/"):
			r.manifestGets.Add(1)
			r.mu.Lock()
			gate := r.gate
			r.mu.Unlock()
			if gate != nil {
				select {
				case <-gate:
				case <-req.Context().Done():
					return
				}
			}
			if r.takeFault() {
				http.Error(w, "injected fault", http.StatusInternalServerError)
				return
			}
			if r.corruptManifests.Load() {
				serveCorrupted(w, req, inner)
				return
			}
		case isGet && strings.Contains(req.URL.Path, "/blobs/"):
			r.blobGets.Add(1)
			d := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
			r.mu.Lock()
			bad := r.corrupt[d]
			r.mu.Unlock()
			if bad {
				serveCorrupted(w, req, inner)
				return
			}
			if d := time.Duration(r.trickle.Load()); d > 0 {
				serveTrickle(w, req, inner, d)
				return
			}
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// serveCorrupted serves inner's answer with its middle byte changed.
func serveCorrupted(w http.ResponseWriter, req *http.Request, inner http.Handler) {
	rec := httptest.NewRecorder()
	inner.ServeHTTP(rec, req)
	b := rec.Body.Bytes()
	if len(b) > 0 {
		b[len(b)/2] ^= 0x01
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(b)
}

// serveTrickle serves inner's answer 1 KiB at a time, pausing d between
// pieces: a slow transfer that keeps making progress.
func serveTrickle(w http.ResponseWriter, req *http.Request, inner http.Handler, d time.Duration) {
	rec := httptest.NewRecorder()
	inner.ServeHTTP(rec, req)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	b := rec.Body.Bytes()
	for len(b) > 0 {
		n := min(len(b), 1024)
		if _, err := w.Write(b[:n]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		b = b[n:]
		select {
		case <-time.After(d):
		case <-req.Context().Done():
			return
		}
	}
}

// push stores img as repo:latest and returns its digest reference.
func (r *testRegistry) push(t testing.TB, repo string, img v1.Image) string {
	t.Helper()
	tag, err := name.ParseReference(r.host + "/" + repo + ":latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatalf("push: %v", err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return r.host + "/" + repo + "@" + d.String()
}

// takeFault consumes one injected fault, if any is left.
func (r *testRegistry) takeFault() bool {
	for {
		n := r.failNext.Load()
		if n <= 0 {
			return false
		}
		if r.failNext.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

func (r *testRegistry) corruptBlob(h v1.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.corrupt[h.String()] = true
}

// registryWithSample is a test registry holding sampleImage at repo, and
// the image's reference.
func registryWithSample(t testing.TB, repo string) (*testRegistry, string) {
	t.Helper()
	r := newTestRegistry(t)
	return r, r.push(t, repo, sampleImage(t))
}

func (r *testRegistry) hold() (release func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	r.gate = ch
	r.mu.Unlock()
	return sync.OnceFunc(func() { close(ch) })
}

func logTo(t testing.TB) *log.Logger { return log.New(testkit.LogWriter(t), "registry: ", 0) }
