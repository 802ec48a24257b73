package registry

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// journal makes manifests durable in disk mode. ggcr's registry keeps
// manifests in memory only (its blob store is pluggable, its manifest store
// is not), so every manifest write that succeeded is appended to a journal
// and replayed into a fresh handler on start.
//
// Layout under dir: journal.jsonl (one journalEntry a line, in order) and
// sha256/<hex> (manifest bodies by digest).
type journal struct {
	mu  sync.Mutex // serialises manifest writes with their journal lines
	dir string
	f   *os.File
}

type journalEntry struct {
	Op        string `json:"op"` // "put" or "delete"
	Repo      string `json:"repo"`
	Target    string `json:"target"` // tag or digest
	MediaType string `json:"mediaType,omitempty"`
	Digest    string `json:"digest,omitempty"` // of the body, for "put"
}

// openJournal opens (creating if needed) the journal in dir and returns the
// entries it holds. A torn last line (a crash mid-write) is ignored.
func openJournal(dir string) (*journal, []journalEntry, error) {
	if err := os.MkdirAll(filepath.Join(dir, "sha256"), 0o755); err != nil {
		return nil, nil, err
	}
	p := filepath.Join(dir, "journal.jsonl")
	var entries []journalEntry
	data, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		var e journalEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			break
		}
		entries = append(entries, e)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	return &journal{dir: dir, f: f}, entries, nil
}

func (j *journal) bodyPath(h v1.Hash) string { return filepath.Join(j.dir, h.Algorithm, h.Hex) }

// appendLocked writes e (and, for a put, body) durably. Call with j.mu held.
func (j *journal) appendLocked(e journalEntry, body []byte) error {
	if e.Op == "put" {
		h, _, err := v1.SHA256(bytes.NewReader(body))
		if err != nil {
			return err
		}
		e.Digest = h.String()
		tmp, err := os.CreateTemp(j.dir, "manifest-*")
		if err != nil {
			return err
		}
		_, werr := tmp.Write(body)
		if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
			return err
		}
		if err := os.Rename(tmp.Name(), j.bodyPath(h)); err != nil {
			return err
		}
	}
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := j.f.Write(append(line, '\n')); err != nil {
		return err
	}
	return j.f.Sync()
}

// replay applies entries to h, the fresh ggcr handler, in order.
func (j *journal) replay(h http.Handler, entries []journalEntry) error {
	for _, e := range entries {
		url := "/v2/" + e.Repo + "/manifests/" + e.Target
		var req *http.Request
		switch e.Op {
		case "put":
			d, err := v1.NewHash(e.Digest)
			if err != nil {
				return fmt.Errorf("journal: %w", err)
			}
			body, err := os.ReadFile(j.bodyPath(d))
			if err != nil {
				return fmt.Errorf("journal: manifest %s: %w", d, err)
			}
			req = httptest.NewRequest(http.MethodPut, url, bytes.NewReader(body))
			req.Header.Set("Content-Type", e.MediaType)
		case "delete":
			req = httptest.NewRequest(http.MethodDelete, url, nil)
		default:
			return fmt.Errorf("journal: unknown op %q", e.Op)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 300 && e.Op == "put" {
			return fmt.Errorf("journal: replay %s %s: status %d: %s", e.Op, url, rec.Code, rec.Body.String())
		}
	}
	return nil
}

func (j *journal) close() error { return j.f.Close() }
