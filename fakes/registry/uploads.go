package registry

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// DefaultMaxBlobBytes is the default of Options.MaxBlobBytes: the largest
// blob a push may upload (the reference proxy's default ASSET_MAX_BYTES).
const DefaultMaxBlobBytes int64 = 1 << 30

// Blob uploads (POST, PATCH and PUT under /v2/<repo>/blobs/uploads/) are
// served here rather than by go-containerregistry's registry, which keeps
// every upload's bytes in memory whatever its blob store: an upload is
// spooled to a file under Options.Dir (in memory without one), bounded by
// Options.MaxBlobBytes, and handed to the blob store as one streamed PUT
// once its digest is given.

// uploads holds the blob uploads in progress.
type uploads struct {
	dir string // spool directory; "" spools in memory
	max int64

	mu sync.Mutex
	m  map[string]*upload
}

// upload is one upload in progress. Its mutex serialises the requests
// writing to it.
type upload struct {
	mu   sync.Mutex
	size int64
	buf  *bytes.Buffer // in memory
	file *os.File      // on disk
	done bool          // committed or cancelled: its id is gone
}

// errTooLarge: an upload would exceed the blob size limit.
var errTooLarge = errors.New("registry: blob exceeds the push size limit")

func newUploads(dir string, max int64) (*uploads, error) {
	u := &uploads{dir: dir, max: max, m: map[string]*upload{}}
	if dir != "" {
		// Spools of an earlier process are incomplete uploads: start clean.
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// start begins an upload and returns its id and itself, locked.
func (u *uploads) start() (string, *upload, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	id := hex.EncodeToString(b)
	up := &upload{}
	if u.dir == "" {
		up.buf = &bytes.Buffer{}
	} else {
		f, err := os.Create(filepath.Join(u.dir, id))
		if err != nil {
			return "", nil, err
		}
		up.file = f
	}
	up.mu.Lock()
	u.mu.Lock()
	u.m[id] = up
	u.mu.Unlock()
	return id, up, nil
}

// get returns the upload id, locked, or nil.
func (u *uploads) get(id string) *upload {
	u.mu.Lock()
	up := u.m[id]
	u.mu.Unlock()
	if up == nil {
		return nil
	}
	up.mu.Lock()
	if up.done {
		up.mu.Unlock()
		return nil
	}
	return up
}

// end forgets the upload id (locked by the caller) and frees its spool.
func (u *uploads) end(id string, up *upload) {
	up.done = true
	u.mu.Lock()
	delete(u.m, id)
	u.mu.Unlock()
	if up.file != nil {
		up.file.Close()
		os.Remove(up.file.Name())
	}
	up.buf = nil
}

// appendBody adds r's body to up, refusing with errTooLarge, before reading
// anything, a body whose declared length would take the upload over the
// limit, and a body without one as soon as it does.
func (u *uploads) appendBody(up *upload, r *http.Request) error {
	if r.ContentLength > 0 && up.size+r.ContentLength > u.max {
		return errTooLarge
	}
	var w io.Writer = up.buf
	if up.file != nil {
		w = up.file
	}
	n, err := io.Copy(w, io.LimitReader(r.Body, u.max-up.size+1))
	up.size += n
	switch {
	case err != nil:
		return err
	case up.size > u.max:
		return errTooLarge
	}
	return nil
}

// reader reads the upload's bytes from the start.
func (up *upload) reader() (io.Reader, error) {
	if up.file == nil {
		return bytes.NewReader(up.buf.Bytes()), nil
	}
	if _, err := up.file.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.LimitReader(up.file, up.size), nil
}

// serveUpload serves a blob upload request of repo; id is the upload's id
// ("" for POST to start one).
func (s *Server) serveUpload(w *responseWriter, r *http.Request, repo, id string) {
	base := "/v2/" + repo + "/blobs/uploads/"
	digest := r.URL.Query().Get("digest")
	var up *upload
	switch {
	case r.Method == http.MethodPost && id == "":
		var err error
		if id, up, err = s.uploads.start(); err != nil {
			s.log.Error("registry: start upload", "err", err)
			writeUploadError(w, http.StatusInternalServerError, "UNKNOWN", "cannot start the upload")
			return
		}
		if digest == "" { // the client sends the bytes next
			up.mu.Unlock()
			w.Header().Set("Location", base+id)
			w.Header().Set("Docker-Upload-UUID", id)
			w.Header().Set("Range", "0-0")
			w.WriteHeader(http.StatusAccepted)
			return
		}
		// A monolithic upload: POST ?digest= with the whole blob.
	case id == "" || strings.Contains(id, "/"):
		writeUploadError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "no such upload")
		return
	default:
		if up = s.uploads.get(id); up == nil {
			writeUploadError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "no such upload")
			return
		}
	}
	defer up.mu.Unlock()

	switch r.Method {
	case http.MethodGet:
		w.Header().Set("Location", base+id)
		w.Header().Set("Docker-Upload-UUID", id)
		w.Header().Set("Range", uploadRange(up.size))
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodDelete:
		s.uploads.end(id, up)
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodPatch, http.MethodPut, http.MethodPost:
	default:
		writeUploadError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed on an upload")
		return
	}
	if cr := r.Header.Get("Content-Range"); cr != "" && r.Method == http.MethodPatch {
		var start, end int64
		if _, err := fmt.Sscanf(cr, "%d-%d", &start, &end); err != nil || start != up.size {
			w.Header().Set("Range", uploadRange(up.size))
			writeUploadError(w, http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID", "Content-Range does not follow what was uploaded")
			return
		}
	}
	if err := s.uploads.appendBody(up, r); err != nil {
		s.uploads.end(id, up)
		if errors.Is(err, errTooLarge) {
			s.log.Warn("registry: push refused: blob over the size limit", "repo", repo, "max_bytes", s.uploads.max)
			w.Header().Set("Connection", "close") // the rest of the body is not read
			writeUploadError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID",
				fmt.Sprintf("a blob may not exceed %d bytes", s.uploads.max))
			return
		}
		writeUploadError(w, http.StatusBadRequest, "BLOB_UPLOAD_INVALID", "the upload's body could not be read")
		return
	}
	if r.Method == http.MethodPatch {
		w.Header().Set("Location", base+id)
		w.Header().Set("Docker-Upload-UUID", id)
		w.Header().Set("Range", uploadRange(up.size))
		w.WriteHeader(http.StatusAccepted)
		return
	}
	// PUT (or POST) ?digest=: hand the whole blob to the blob store.
	defer s.uploads.end(id, up)
	if digest == "" {
		writeUploadError(w, http.StatusBadRequest, "DIGEST_INVALID", "digest not specified")
		return
	}
	body, err := up.reader()
	if err != nil {
		writeUploadError(w, http.StatusInternalServerError, "UNKNOWN", "cannot read the upload back")
		return
	}
	put := r.Clone(r.Context())
	put.Method = http.MethodPut
	put.URL.Path, put.URL.RawPath = base+id, ""
	put.URL.RawQuery = "digest=" + digest
	put.RequestURI = put.URL.RequestURI()
	put.Header.Del("Content-Range")
	put.Body, put.ContentLength = io.NopCloser(body), up.size
	if up.size == 0 {
		put.Body = http.NoBody
	}
	s.inner.ServeHTTP(w, put)
}

// uploadRange is the Range header of an upload of size bytes.
func uploadRange(size int64) string {
	if size == 0 {
		return "0-0"
	}
	return fmt.Sprintf("0-%d", size-1)
}

// writeUploadError writes an OCI distribution error.
func writeUploadError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, msg)
}
