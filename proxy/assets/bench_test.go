package assets

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const mib = 1 << 20

// patternReader yields a 1 MiB block of seeded random bytes over and over:
// cheap to produce, and incompressible within gzip's window.
type patternReader struct {
	block []byte
	off   int
}

func newPatternReader(seed uint64) *patternReader {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, mib)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return &patternReader{block: b}
}

func (p *patternReader) Read(b []byte) (int, error) {
	n := copy(b, p.block[p.off:])
	p.off = (p.off + n) % len(p.block)
	return n, nil
}

// memWatch samples the heap while a benchmark runs and reports how much the
// process grew: peak HeapInuse and final Sys over the values at start.
type memWatch struct {
	start runtime.MemStats
	peak  atomic.Uint64
	stop  chan struct{}
	done  sync.WaitGroup
}

func watchMemory() *memWatch {
	m := &memWatch{stop: make(chan struct{})}
	runtime.GC()
	runtime.ReadMemStats(&m.start)
	m.peak.Store(m.start.HeapInuse)
	m.done.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var s runtime.MemStats
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				runtime.ReadMemStats(&s)
				if s.HeapInuse > m.peak.Load() {
					m.peak.Store(s.HeapInuse)
				}
			}
		}
	})
	return m
}

func (m *memWatch) report(b *testing.B) {
	close(m.stop)
	m.done.Wait()
	var end runtime.MemStats
	runtime.ReadMemStats(&end)
	growth := func(after, before uint64) float64 {
		if after < before {
			return 0
		}
		return float64(after-before) / mib
	}
	b.ReportMetric(growth(m.peak.Load(), m.start.HeapInuse), "peak-heapinuse-growth-MiB")
	b.ReportMetric(growth(end.Sys, m.start.Sys), "sys-growth-MiB")
}

// writeTarOfSize writes a tar holding assets/big.bin so that the whole tar
// is exactly size bytes (size a multiple of 512, at least 2048).
func writeTarOfSize(b testing.TB, w io.Writer, size int64, withPrefix bool) {
	b.Helper()
	tw := tar.NewWriter(w)
	name := "big.bin"
	if withPrefix {
		if err := tw.WriteHeader(&tar.Header{Name: "assets/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			b.Fatal(err)
		}
		size -= 512
		name = "assets/big.bin"
	}
	body := size - 512 - 1024
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: body}); err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(tw, newPatternReader(1), body); err != nil {
		b.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkServe256MiB serves a 256 MiB tar over a loopback HTTP server to
// a client that reads it all.
func BenchmarkServe256MiB(b *testing.B) {
	const size = 256 * mib
	c, _ := newCache(b, Options{})
	if err := os.MkdirAll(c.appDir(1), 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(c.TarPath(1, commit))
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.New()
	writeTarOfSize(b, io.MultiWriter(f, sum), size, false)
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(c.sumPath(1, commit), []byte(hex.EncodeToString(sum.Sum(nil))), 0o644); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := c.Serve(w, r, 1, commit, "127.0.0.1:1/unused@sha256:"+hex.EncodeToString(make([]byte, 32))); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	}))
	b.Cleanup(srv.Close)
	client := srv.Client()
	get := func() {
		resp, err := client.Get(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || n != size {
			b.Fatalf("got %d %d bytes (%v), want 200 %d bytes", resp.StatusCode, n, err, size)
		}
	}
	get() // warm up connections

	m := watchMemory()
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		get()
	}
	b.StopTimer()
	m.report(b)
}

// fileLayer is a layer whose blob is a file on disk.
type fileLayer struct {
	path           string
	digest, diffID v1.Hash
	size           int64
	mediaType      types.MediaType
	gzipped        bool
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil || !l.gzipped {
		return f, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, f}, nil
}

// bigLayer writes, straight into the registry's blob folder, a layer blob
// holding a tar of about size bytes with /assets/big.bin.
func bigLayer(b *testing.B, blobDir string, size int64, gz bool) *fileLayer {
	b.Helper()
	if err := os.MkdirAll(filepath.Join(blobDir, "sha256"), 0o755); err != nil {
		b.Fatal(err)
	}
	f, err := os.CreateTemp(blobDir, "gen-*")
	if err != nil {
		b.Fatal(err)
	}
	blobSum, tarSum := sha256.New(), sha256.New()
	counter := &countWriter{}
	blob := io.MultiWriter(f, blobSum, counter)
	var zw *gzip.Writer
	var tarOut io.Writer = blob
	if gz {
		zw, _ = gzip.NewWriterLevel(blob, gzip.BestSpeed)
		tarOut = zw
	}
	writeTarOfSize(b, io.MultiWriter(tarOut, tarSum), size, true)
	if zw != nil {
		if err := zw.Close(); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	l := &fileLayer{
		digest:    v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(blobSum.Sum(nil))},
		diffID:    v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(tarSum.Sum(nil))},
		size:      counter.n,
		mediaType: types.OCIUncompressedLayer,
		gzipped:   gz,
	}
	if gz {
		l.mediaType = types.OCILayer
	}
	l.path = filepath.Join(blobDir, "sha256", l.digest.Hex)
	if err := os.Rename(f.Name(), l.path); err != nil {
		b.Fatal(err)
	}
	return l
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkBuild256MiB pulls an image whose one layer holds a 256 MiB file
// under /assets from a loopback registry (blobs on disk) and builds the tar:
// memory must not grow with the file's size.
func BenchmarkBuild256MiB(b *testing.B) {
	for _, gz := range []bool{false, true} {
		b.Run("gzip="+strconv.FormatBool(gz), func(b *testing.B) {
			const size = 256 * mib
			blobDir := b.TempDir()
			r := newTestRegistry(b, registry.WithBlobHandler(registry.NewDiskBlobHandler(blobDir)), registry.Logger(logTo(quiet{b})))
			layer := bigLayer(b, blobDir, size, gz)
			ref := r.push(b, "app/big", imageOf(b, layer))
			c, _ := newCache(b, Options{MaxBytes: 2 * size})

			m := watchMemory()
			b.SetBytes(size)
			b.ResetTimer()
			i := 0
			for b.Loop() {
				i++
				if err := c.Ensure(context.Background(), 1, "c"+strconv.Itoa(i), ref); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := c.Prune(1, ""); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			m.report(b)
		})
	}
}

// quiet drops registry request logs in benchmarks.
type quiet struct{ testing.TB }

func (quiet) Logf(string, ...any) {}
