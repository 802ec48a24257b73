package assets

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/depharness/depharness/internal/atomicfile"
)

// Serving a built tar over HTTP with Range and ETag support.

// Serve writes the tar of appID at commit as the response to r, with
// http.ServeContent semantics (Range, If-Range, If-None-Match,
// If-Modified-Since, HEAD), Content-Type application/x-tar and a strong ETag
// made of the tar's SHA-256. A tar missing from disk is built first (through
// Ensure, so concurrent first requests build it once). If it cannot be built
// Serve writes nothing and returns the error; the caller answers 503.
func (c *Cache) Serve(w http.ResponseWriter, r *http.Request, appID int64, commit, image string) error {
	var f *os.File
	for try := 0; ; try++ {
		if err := c.Ensure(r.Context(), appID, commit, image); err != nil {
			return err
		}
		var err error
		f, err = os.Open(c.TarPath(appID, commit))
		if err == nil {
			break
		}
		// Pruned between Ensure and Open: build once more.
		if !errors.Is(err, fs.ErrNotExist) || try > 0 {
			return fmt.Errorf("assets: %w", err)
		}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("assets: %w", err)
	}
	etag, err := c.etag(appID, commit, f)
	if err != nil {
		return err
	}
	ct := ContentType
	if c.opts.Violations.On("assets-wrong-content-type") {
		ct = "application/octet-stream"
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("ETag", etag)
	if rg := r.Header.Get("Range"); rg != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Range", unsatisfiableEmptySuffixes(rg, fi.Size()))
	}
	cw := &countingResponseWriter{ResponseWriter: w}
	http.ServeContent(cw, r, "", fi.ModTime(), f)
	c.metrics.bytesServed.Add(float64(cw.n))
	return nil
}

// unsatisfiableEmptySuffixes rewrites each suffix range of length zero
// ("-0") of the Range header rg into one past the end of a size-byte body.
// RFC 9110 §14.1.2 makes such a range unsatisfiable (a Range of only those is
// answered 416 with "Content-Range: bytes */size"), but http.ServeContent
// serves it as an empty range "bytes size-(size-1)/size" with 206.
func unsatisfiableEmptySuffixes(rg string, size int64) string {
	specs, ok := strings.CutPrefix(rg, "bytes=")
	if !ok {
		return rg
	}
	parts := strings.Split(specs, ",")
	for i, p := range parts {
		start, end, ok := strings.Cut(strings.TrimSpace(p), "-")
		if !ok || strings.TrimSpace(start) != "" {
			continue
		}
		end = strings.TrimSpace(end)
		if end != "" && strings.Trim(end, "0") == "" {
			parts[i] = strconv.FormatInt(size, 10) + "-"
		}
	}
	return "bytes=" + strings.Join(parts, ",")
}

// etag returns the strong ETag of the open tar f: its SHA-256, read from the
// checksum file written at build time, or computed (and written) if that
// file is missing or damaged. f is left at offset 0.
func (c *Cache) etag(appID int64, commit string, f *os.File) (string, error) {
	if b, err := os.ReadFile(c.sumPath(appID, commit)); err == nil {
		s := strings.TrimSpace(string(b))
		if _, err := hex.DecodeString(s); err == nil && len(s) == 2*sha256.Size {
			return `"sha256:` + s + `"`, nil
		}
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", fmt.Errorf("assets: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("assets: %w", err)
	}
	s := hex.EncodeToString(sum.Sum(nil))
	if err := atomicfile.Write(c.sumPath(appID, commit), []byte(s+"\n")); err != nil {
		c.log.Warn("writing asset checksum", "app", appID, "commit", commit, "err", err)
	}
	return `"sha256:` + s + `"`, nil
}

// countingResponseWriter counts body bytes; it passes ReadFrom through so
// that a file is still sent with sendfile.
type countingResponseWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingResponseWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingResponseWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *countingResponseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
