package assets

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy/violation"
)

// hostileImages are images whose /assets hold links and special files that
// lead out of any folder the tar is extracted to, unless the tar is made
// safe (APP-ASSET-5). Layers are bottom first.
var hostileImages = []struct {
	name   string
	layers [][]ent
}{
	{
		name: "a hard link to a deep symlink that is harmless where it stands",
		layers: [][]ent{{
			dir("assets/a/b/c/d/e/f/g/h/"),
			symlink("assets/a/b/c/d/e/f/g/h/l", "../../../../../../../../etc/passwd"),
			hardlink("assets/evil", "assets/a/b/c/d/e/f/g/h/l"),
			file("assets/firmware.bin", "fw"),
		}},
	},
	{
		name: "a hard link to a symlinked folder, then a file written through it",
		layers: [][]ent{{
			dir("assets/x/y/"), symlink("assets/x/y/s", "../.."), hardlink("assets/esc", "assets/x/y/s"),
			file("assets/esc/pwned", "same layer"),
		}},
	},
	{
		name: "a symlink through a symlinked folder, then a file written through it",
		layers: [][]ent{
			{dir("assets/a/b/c/"), symlink("assets/a/b/c/top", "../../.."), symlink("assets/x", "a/b/c/top/..")},
			{file("assets/x/pwned", "upper layer"), symlink("assets/y", "a/b/c/top/../sibling")},
		},
	},
	{
		name: "absolute links, in and out of /assets",
		layers: [][]ent{{
			file("assets/firmware.bin", "fw"), dir("assets/sub/"),
			symlink("assets/sub/fw", "/assets/firmware.bin"), symlink("assets/etc", "/etc"),
			symlink("assets/parent", "/assets/.."), hardlink("assets/sub/h", "assets/etc"),
		}},
	},
	{
		name: "escaping links replacing a folder of a lower layer",
		layers: [][]ent{
			{dir("assets/d/"), file("assets/d/keep", "k"), symlink("assets/l", "../..")},
			{symlink("assets/d", ".."), file("assets/l/pwned", "through l")},
		},
	},
	{
		name: "device nodes, fifos and setuid, setgid and sticky bits",
		layers: [][]ent{{
			withMode(file("assets/tool", "t"), 0o4755), withMode(file("assets/g", "g"), 0o2755),
			withMode(dir("assets/tmp/"), 0o1777), {name: "assets/null", typ: tar.TypeChar},
			{name: "assets/disk", typ: tar.TypeBlock}, {name: "assets/pipe", typ: tar.TypeFifo},
		}},
	},
}

// servedTar builds the image of layers in a registry and returns the tar
// the cache serves for it.
func servedTar(t *testing.T, layers [][]ent, v ...string) []byte {
	t.Helper()
	var ls []v1.Layer
	for _, es := range layers {
		ls = append(ls, layerOf(t, es...))
	}
	r := newTestRegistry(t)
	ref := r.push(t, "app/hostile", imageOf(t, ls...))
	set := violation.Set{}
	for _, name := range v {
		set[name] = true
	}
	c, _ := newCache(t, Options{Violations: set})
	srv := testkit.Server(t, serveHandler(t, c, ref))
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: got %d %v, want 200", resp.StatusCode, err)
	}
	return b
}

// sandbox is a folder holding the extraction root and, next to it, a
// folder with a file that must stay untouched.
type sandbox struct {
	dir, root, outside, secret string
	secretInfo                 os.FileInfo
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	s := &sandbox{dir: t.TempDir()}
	// The root is deep enough that links climbing a few levels above it
	// still land inside the sandbox, where the checks can see them.
	s.root = filepath.Join(s.dir, "1", "2", "3", "4", "5", "6", "7", "8", "9", "root")
	s.outside = filepath.Join(s.dir, "outside")
	s.secret = filepath.Join(s.outside, "secret")
	for _, d := range []string{s.root, s.outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(s.secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if s.secretInfo, err = os.Stat(s.secret); err != nil {
		t.Fatal(err)
	}
	return s
}

// problems lists what extraction did outside the root, or left leading
// outside it: files written next to the root, a changed secret, symlinks
// that resolve outside the root, files sharing the secret's inode, setuid,
// setgid or sticky bits, and anything that is not a file, folder or link.
func (s *sandbox) problems(t testing.TB) []string {
	t.Helper()
	var probs []string
	if b, err := os.ReadFile(s.secret); err != nil || string(b) != "secret" {
		probs = append(probs, fmt.Sprintf("the secret outside the root changed: %q %v", b, err))
	}
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		inRoot := p == s.root || strings.HasPrefix(p, s.root+string(filepath.Separator))
		if !inRoot {
			if !d.IsDir() && p != s.secret {
				probs = append(probs, "written outside the root: "+p)
			}
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.root, p)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if real, err := filepath.EvalSymlinks(p); err == nil {
				if r, _ := filepath.Rel(s.root, real); r == ".." || strings.HasPrefix(r, "../") {
					probs = append(probs, fmt.Sprintf("symlink %s resolves outside the root, to %s", rel, real))
				}
			} else {
				// Dangling: where it would lead once its target exists.
				target, _ := os.Readlink(p)
				dir, derr := filepath.EvalSymlinks(filepath.Dir(p))
				lead := filepath.Join(dir, target)
				if filepath.IsAbs(target) {
					lead = target
				}
				if r, _ := filepath.Rel(s.root, lead); derr != nil || r == ".." || strings.HasPrefix(r, "../") {
					probs = append(probs, fmt.Sprintf("symlink %s -> %s leads outside the root, to %s (%v)", rel, target, lead, err))
				}
			}
		case fi.Mode().IsRegular():
			if os.SameFile(fi, s.secretInfo) {
				probs = append(probs, "hard link to the secret: "+rel)
			}
		case fi.IsDir():
		default:
			probs = append(probs, fmt.Sprintf("%s is a %v", rel, fi.Mode().Type()))
		}
		if fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
			probs = append(probs, fmt.Sprintf("%s has mode %v", rel, fi.Mode()))
		}
		return nil
	})
	if err != nil {
		probs = append(probs, "walking the sandbox: "+err.Error())
	}
	return probs
}

// extractGNU extracts tarball into the sandbox's root with GNU tar.
func (s *sandbox) extractGNU(t *testing.T, tarball []byte) error {
	t.Helper()
	cmd := exec.Command("tar", "-x", "--no-same-owner", "-f", "-", "-C", s.root)
	cmd.Stdin = bytes.NewReader(tarball)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("tar -x: %v: %s", err, out)
	}
	return nil
}

// extractPython extracts tarball into the sandbox's root with Python's
// tarfile.extractall and no filter ("fully_trusted", Python's historical
// behaviour): it follows links as it writes. The hostile images climb at
// most 9 levels above their links and write nothing through absolute
// links, so even a regression stays inside the sandbox (the root is 10
// levels deep in it).
func (s *sandbox) extractPython(t *testing.T, python string, tarball []byte) error {
	t.Helper()
	f := filepath.Join(t.TempDir(), "assets.tar")
	if err := os.WriteFile(f, tarball, 0o644); err != nil {
		t.Fatal(err)
	}
	script := `import sys, tarfile
with tarfile.open(sys.argv[1]) as tf:
    kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    tf.extractall(sys.argv[2], **kw)
`
	out, err := exec.Command(python, "-c", script, f, s.root).CombinedOutput()
	if err != nil {
		return fmt.Errorf("python tarfile: %v: %s", err, out)
	}
	return nil
}

// extractGo extracts tarball into the sandbox's root the way many simple
// extractors do (parents created, files written through whatever links are
// there, hard links made with link(2)), but through an os.Root, so that an
// attempt to leave the root is an error instead of damage. It goes on after
// a failed member and returns every failure.
func (s *sandbox) extractGo(tarball []byte) []error {
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return []error{err}
	}
	defer root.Close()
	var errs []error
	err = testkit.WalkTar(bytes.NewReader(tarball), func(h *tar.Header, body io.Reader) error {
		if err := extractMember(root, body, h); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h.Name, err))
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errs
}

func extractMember(root *os.Root, tr io.Reader, h *tar.Header) error {
	name := strings.TrimSuffix(h.Name, "/")
	if dir := filepath.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	mode := fs.FileMode(h.Mode & 0o777)
	if h.Mode&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if h.Mode&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if h.Mode&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	switch h.Typeflag {
	case tar.TypeDir:
		if err := root.MkdirAll(name, 0o755); err != nil {
			return err
		}
		return root.Chmod(name, mode)
	case tar.TypeReg:
		b, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		if err := root.WriteFile(name, b, 0o644); err != nil {
			return err
		}
		return root.Chmod(name, mode)
	case tar.TypeSymlink:
		return root.Symlink(h.Linkname, name)
	case tar.TypeLink:
		return root.Link(h.Linkname, name)
	}
	return fmt.Errorf("a special file of type %q", h.Typeflag)
}

// escapes reports whether err is an os.Root's refusal to leave its root
// (other errors, like a dangling link or a loop, do not leave it).
func escapes(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

// wantSafe fails the test for every problem found in the root and for a
// link in it that leads out.
func (s *sandbox) wantSafe(t *testing.T) {
	t.Helper()
	if err := s.readAll(); err != nil {
		t.Error(err)
	}
	for _, p := range s.problems(t) {
		t.Error(p)
	}
}

// readAll follows every link in the root through os.Root, so a link that
// leads out fails.
func (s *sandbox) readAll() error {
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return err
	}
	defer root.Close()
	return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		if _, err := root.Stat(p); escapes(err) {
			return fmt.Errorf("following %s: %w", p, err)
		}
		return nil
	})
}

func TestServedTarsOfHostileImagesExtractSafely(t *testing.T) {
	_, gnuErr := exec.LookPath("tar")
	python, pyErr := exec.LookPath("python3")
	for _, img := range hostileImages {
		t.Run(img.name, func(t *testing.T) {
			tarball := servedTar(t, img.layers)
			for _, x := range []struct {
				name    string
				missing error // not nil: the extractor is not installed
				extract func(t *testing.T, s *sandbox) error
			}{
				{"GNU tar", gnuErr, func(t *testing.T, s *sandbox) error { return s.extractGNU(t, tarball) }},
				{"Python tarfile", pyErr, func(t *testing.T, s *sandbox) error { return s.extractPython(t, python, tarball) }},
			} {
				t.Run(x.name, func(t *testing.T) {
					if x.missing != nil {
						t.Skip(x.missing)
					}
					s := newSandbox(t)
					if err := x.extract(t, s); err != nil {
						t.Fatal(err)
					}
					s.wantSafe(t)
				})
			}
			t.Run("Go extractor", func(t *testing.T) {
				s := newSandbox(t)
				for _, err := range s.extractGo(tarball) {
					t.Errorf("extraction: %v", err)
				}
				s.wantSafe(t)
			})
		})
	}
}

// TestHostileTarsAreCaughtWithoutTheLinkChecks shows that the extraction
// checks above can fail: with the links judged lexically (the proxy before
// APP-ASSET-5) or written as they are, GNU tar extracts the reported hard
// link to a symlink as a symlink leading to /etc/passwd, and the Go
// extractor is refused by its os.Root.
func TestHostileTarsAreCaughtWithoutTheLinkChecks(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("no tar on PATH")
	}
	for _, v := range []string{"assets-lexical-links", "assets-unsafe-links", "assets-keep-setuid"} {
		t.Run(v, func(t *testing.T) {
			found := 0
			for _, img := range hostileImages {
				tarball := servedTar(t, img.layers, v)
				s := newSandbox(t)
				err := s.extractGNU(t, tarball)
				probs := s.problems(t)
				if rerr := s.readAll(); rerr != nil {
					probs = append(probs, rerr.Error())
				}
				if err != nil {
					probs = append(probs, err.Error())
				}
				t.Logf("%s: %q", img.name, probs)
				found += len(probs)
			}
			if found == 0 {
				t.Errorf("with %s: no extraction problem found, want some", v)
			}
		})
	}
}

func TestDroppedEntriesAreCountedByReason(t *testing.T) {
	r := newTestRegistry(t)
	img := hostileImages[len(hostileImages)-1]
	var ls []v1.Layer
	for _, es := range img.layers {
		ls = append(ls, layerOf(t, es...))
	}
	ref := r.push(t, "app/drops", imageOf(t, ls...))
	c, reg := newCache(t, Options{})
	if err := c.Ensure(context.Background(), 1, commit, ref); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP depharness_proxy_asset_entries_dropped_total Entries under /assets left out of asset tars, by reason (link-outside, link-loop, link-conflict, hardlink-target, device, fifo, other-type).
# TYPE depharness_proxy_asset_entries_dropped_total counter
depharness_proxy_asset_entries_dropped_total{reason="device"} 2
depharness_proxy_asset_entries_dropped_total{reason="fifo"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "depharness_proxy_asset_entries_dropped_total"); err != nil {
		t.Error(err)
	}
	if probs, err := testutil.GatherAndLint(reg, "depharness_proxy_asset_entries_dropped_total"); err != nil || len(probs) > 0 {
		t.Errorf("lint: %v %v", probs, err)
	}
}
