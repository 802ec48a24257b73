package testkit

import (
	"archive/tar"
	"errors"
	"io"
	"iter"
	"testing"
)

// TarMembers yields the members of the tar stream r in order, each header
// with a reader of its body (valid until the next member); it fails the
// test (t.Fatalf) on a malformed tar.
func TarMembers(t testing.TB, r io.Reader) iter.Seq2[*tar.Header, io.Reader] {
	return func(yield func(*tar.Header, io.Reader) bool) {
		t.Helper()
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatalf("reading a tar: %v", err)
			}
			if !yield(h, tr) {
				return
			}
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
