package testkit

import (
	"archive/tar"
	"errors"
	"io"
	"iter"
	"testing"
)

// WalkTar calls f with each member of the tar stream r, in order: its
// header and a reader of its body (valid until f returns). It returns the
// first error of f or of reading the tar.
func WalkTar(r io.Reader, f func(h *tar.Header, body io.Reader) error) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := f(h, tr); err != nil {
			return err
		}
	}
}

var errStopped = errors.New("stopped")

// TarMembers yields the members of the tar stream r as WalkTar gives them;
// it fails the test (t.Fatalf) on a malformed tar.
func TarMembers(t testing.TB, r io.Reader) iter.Seq2[*tar.Header, io.Reader] {
	return func(yield func(*tar.Header, io.Reader) bool) {
		t.Helper()
		err := WalkTar(r, func(h *tar.Header, body io.Reader) error {
			if !yield(h, body) {
				return errStopped
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopped) {
			t.Fatalf("reading a tar: %v", err)
		}
	}
}

// TarFiles reads the tar stream r and returns its regular files by member
// name; it fails the test on a malformed tar.
func TarFiles(t testing.TB, r io.Reader) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for h, body := range TarMembers(t, r) {
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatalf("reading %s from a tar: %v", h.Name, err)
		}
		files[h.Name] = b
	}
	return files
}
