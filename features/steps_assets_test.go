package features

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"
)

// member is one entry of a test tar: "name" a file, "name/" a folder,
// "name -> text" a symlink, "name => target" a hard link.
func testTar(t *testing.T, members ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		h := &tar.Header{Name: m, Typeflag: tar.TypeReg, Mode: 0o644}
		switch {
		case strings.Contains(m, " -> "):
			h.Name, h.Linkname, _ = strings.Cut(m, " -> ")
			h.Typeflag = tar.TypeSymlink
		case strings.Contains(m, " => "):
			h.Name, h.Linkname, _ = strings.Cut(m, " => ")
			h.Typeflag = tar.TypeLink
		case strings.HasSuffix(m, "/"):
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case strings.HasPrefix(m, "char "):
			h.Name, h.Typeflag = strings.TrimPrefix(m, "char "), tar.TypeChar
		case strings.HasPrefix(m, "fifo "):
			h.Name, h.Typeflag = strings.TrimPrefix(m, "fifo "), tar.TypeFifo
		case strings.HasPrefix(m, "setuid "):
			h.Name, h.Mode = strings.TrimPrefix(m, "setuid "), 0o4755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTarExtractionProblems(t *testing.T) {
	tests := []struct {
		name    string
		members []string
		want    []string // substrings of the problems, in order; none for a safe tar
	}{
		{"files, folders and links inside are safe", []string{
			"a/", "a/x", "l -> a/x", "a/up -> ../l", "h => a/x", "d -> a", "d/y", "abs -> a/../a/x", "loop -> loop",
			"dangling -> nowhere/x", "h2 => l",
		}, nil},
		{"a hard link to a symlink is that symlink at the hard link's place", []string{
			"a/b/c/", "a/b/c/l -> ../../../etc/passwd", "evil => a/b/c/l",
		}, []string{"symlink evil -> ../../../etc/passwd leads outside"}},
		{"a symlink through a symlinked folder resolves from where that leads", []string{
			"a/b/", "a/b/top -> ../..", "x -> a/b/top/..",
		}, []string{"symlink x -> a/b/top/.. leads outside"}},
		{"an absolute link leads outside", []string{"abs -> /assets/x"}, []string{"symlink abs -> /assets/x leads outside"}},
		{"a member created through a link that leads out", []string{"l -> ..", "l/pwned"}, []string{
			"l/pwned is created outside", "symlink l -> .. leads outside",
		}},
		{"a file written through a link that leads out", []string{"l -> ../x", "l"}, []string{
			"l is written through the link l -> ../x", "symlink l -> ../x leads outside",
		}},
		{"a hard link whose target is reached through a link that leads out", []string{"l -> ..", "h => l/etc/passwd"}, []string{
			"hard link h => l/etc/passwd points outside", "symlink l -> .. leads outside",
		}},
		{"devices, fifos and setuid bits", []string{"char null", "fifo pipe", "setuid tool"}, []string{
			"null is a device node", "pipe is a FIFO", "tool has mode 4755",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probs, err := tarExtractionProblems(testTar(t, tt.members...))
			if err != nil {
				t.Fatal(err)
			}
			if len(probs) != len(tt.want) {
				t.Fatalf("problems: got %q, want %d like %q", probs, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(probs[i], w) {
					t.Errorf("problem %d: got %q, want one with %q", i, probs[i], w)
				}
			}
		})
	}
}
