package testkit

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestTarMembersAndTarFilesReadAStreamAndFailOnAMalformedOne(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range []struct {
		name, body string
		typ        byte
	}{{"d/", "", tar.TypeDir}, {"d/a", "alpha", tar.TypeReg}, {"d/l", "", tar.TypeSymlink}, {"b", "beta", tar.TypeReg}} {
		if err := tw.WriteHeader(&tar.Header{Name: m.name, Typeflag: m.typ, Size: int64(len(m.body)), Mode: 0o644, Linkname: "a"}); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, m.body)
	}
	tw.Close()
	var names []string
	for h := range TarMembers(t, bytes.NewReader(buf.Bytes())) {
		names = append(names, h.Name)
	}
	if got := strings.Join(names, " "); got != "d/ d/a d/l b" {
		t.Errorf("members: got %q, want every member in order", got)
	}
	files := TarFiles(t, bytes.NewReader(buf.Bytes()))
	if len(files) != 2 || string(files["d/a"]) != "alpha" || string(files["b"]) != "beta" {
		t.Errorf("files: got %q, want the two regular files", files)
	}
	rec := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		TarFiles(rec, bytes.NewReader(buf.Bytes()[:700]))
	}()
	<-done
	if m := rec.messages(); !strings.Contains(m, "reading a tar") {
		t.Errorf("a cut tar: reported %q, want a failure", m)
	}
	stop := errors.New("stop")
	n := 0
	err := WalkTar(bytes.NewReader(buf.Bytes()), func(*tar.Header, io.Reader) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("WalkTar with f failing: got %v after %d members, want f's error after one", err, n)
	}
}
