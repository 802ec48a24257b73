package registry

import (
	"archive/tar"
	"bytes"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// tarEntries lists the entries of an uncompressed tar as "name type".
func tarEntries(t testing.TB, b []byte) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		out = append(out, h.Name+" "+string(h.Typeflag))
	}
}

func TestLayerTarHasDirectoriesWhiteoutsFilesThenRawEntries(t *testing.T) {
	l := Layer{
		Files:  map[string][]byte{"sub/deep/x.hex": []byte("x"), ".hidden": []byte("h"), "firmware.bin": []byte("fw")},
		Delete: []string{"old.bin", "gone/dir"},
		Opaque: []string{"sub", ""},
		Raw:    []RawEntry{{Name: "/assets/abs"}, {Name: "assets/link", Type: tar.TypeSymlink, Linkname: "/etc/passwd"}},
	}
	b, err := l.Tar()
	if err != nil {
		t.Fatalf("Tar: %v", err)
	}
	got := tarEntries(t, b)
	want := []string{
		"assets/ 5", "assets/gone/ 5", "assets/sub/ 5", "assets/sub/deep/ 5",
		"assets/.wh..wh..opq 0", "assets/.wh.old.bin 0", "assets/gone/.wh.dir 0", "assets/sub/.wh..wh..opq 0",
		"assets/.hidden 0", "assets/firmware.bin 0", "assets/sub/deep/x.hex 0",
		"/assets/abs 0", "assets/link 2",
	}
	if !slices.Equal(got, want) {
		t.Errorf("tar entries:\ngot  %q\nwant %q", got, want)
	}
}

func TestLayerTarRejectsAmbiguousOrEscapingPaths(t *testing.T) {
	for _, tc := range []struct {
		name  string
		layer Layer
	}{
		{"a file path that escapes /assets", Layer{Files: map[string][]byte{"../x": nil}}},
		{"an absolute file path", Layer{Files: map[string][]byte{"/x": nil}}},
		{"an empty file path", Layer{Files: map[string][]byte{"": nil}}},
		{"a file named like a whiteout", Layer{Files: map[string][]byte{"d/.wh.x": nil}}},
		{"the same file given twice after cleaning", Layer{Files: map[string][]byte{"a/b": nil, "a//b": nil}}},
		{"a path both written and deleted", Layer{Files: map[string][]byte{"a": nil}, Delete: []string{"a"}}},
		{"a deletion of /assets itself", Layer{Delete: []string{"."}}},
		{"a file that is the parent of another file", Layer{Files: map[string][]byte{"d": nil, "d/x": nil}}},
		{"a deletion under a file of the layer", Layer{Files: map[string][]byte{"d": nil}, Delete: []string{"d/x"}}},
		{"an opaque directory that is a file of the layer", Layer{Files: map[string][]byte{"d": nil}, Opaque: []string{"d"}}},
		{"an opaque directory outside /assets", Layer{Opaque: []string{".."}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.layer.Tar(); err == nil {
				t.Errorf("Tar: got nil error, want one")
			}
		})
	}
}

func TestFlatten(t *testing.T) {
	b := func(s string) []byte { return []byte(s) }
	for _, tc := range []struct {
		name   string
		layers []Layer
		want   map[string][]byte
	}{
		{"no layers give no assets", nil, map[string][]byte{}},
		{"one layer gives its files, hidden and nested ones included",
			[]Layer{{Files: map[string][]byte{"a": b("1"), ".h": b("2"), "d/e/f": b("3")}}},
			map[string][]byte{"a": b("1"), ".h": b("2"), "d/e/f": b("3")}},
		{"a later layer overwrites a file",
			[]Layer{{Files: map[string][]byte{"a": b("old"), "b": b("b")}}, {Files: map[string][]byte{"a": b("new")}}},
			map[string][]byte{"a": b("new"), "b": b("b")}},
		{"a whiteout deletes a file of a lower layer",
			[]Layer{{Files: map[string][]byte{"a": b("1"), "b": b("2")}}, {Delete: []string{"a"}}},
			map[string][]byte{"b": b("2")}},
		{"a whiteout of a directory deletes its tree",
			[]Layer{{Files: map[string][]byte{"d/x": b("1"), "d/y/z": b("2"), "dd": b("3")}}, {Delete: []string{"d"}}},
			map[string][]byte{"dd": b("3")}},
		{"an opaque directory hides lower content but keeps its own layer's files",
			[]Layer{{Files: map[string][]byte{"d/x": b("1"), "e": b("2")}}, {Opaque: []string{"d"}, Files: map[string][]byte{"d/new": b("3")}}},
			map[string][]byte{"d/new": b("3"), "e": b("2")}},
		{"an opaque /assets hides every lower asset",
			[]Layer{{Files: map[string][]byte{"a": b("1")}}, {Opaque: []string{""}, Files: map[string][]byte{"b": b("2")}}},
			map[string][]byte{"b": b("2")}},
		{"a file deleted then added back in a later layer is present",
			[]Layer{{Files: map[string][]byte{"a": b("1")}}, {Delete: []string{"a"}}, {Files: map[string][]byte{"a": b("3")}}},
			map[string][]byte{"a": b("3")}},
		{"a file replaces a lower directory tree",
			[]Layer{{Files: map[string][]byte{"d/x": b("1")}}, {Files: map[string][]byte{"d": b("2")}}},
			map[string][]byte{"d": b("2")}},
		{"a file under a lower file replaces that file with a directory",
			[]Layer{{Files: map[string][]byte{"d": b("1")}}, {Files: map[string][]byte{"d/x": b("2")}}},
			map[string][]byte{"d/x": b("2")}},
		{"raw entries that escape /assets or lie outside it are dropped",
			[]Layer{{Raw: []RawEntry{
				{Name: "assets/../escape", Data: b("e")},
				{Name: "../assets/up", Data: b("u")},
				{Name: "assets/sub/../../etc/passwd", Data: b("p")},
				{Name: "etc/hosts", Data: b("h")},
				{Name: "assets", Type: tar.TypeDir},
			}}},
			map[string][]byte{}},
		{"raw entries inside /assets count once cleaned, leading slash dropped",
			[]Layer{{Raw: []RawEntry{{Name: "/assets/abs", Data: b("a")}, {Name: "./assets/x/../y", Data: b("y")}}}},
			map[string][]byte{"abs": b("a"), "y": b("y")}},
		{"a raw symlink is not a file and replaces one",
			[]Layer{{Files: map[string][]byte{"l": b("1")}}, {Raw: []RawEntry{{Name: "assets/l", Type: tar.TypeSymlink, Linkname: "/etc/passwd"}}}},
			map[string][]byte{}},
		{"raw whiteouts delete like Delete and Opaque",
			[]Layer{{Files: map[string][]byte{"a": b("1"), "d/x": b("2"), "k": b("3")}}, {Raw: []RawEntry{{Name: "assets/.wh.a"}, {Name: "/assets/d/.wh..wh..opq"}}}},
			map[string][]byte{"k": b("3")}},
		{"a raw file later in the layer wins over Files",
			[]Layer{{Files: map[string][]byte{"a": b("files")}, Raw: []RawEntry{{Name: "assets/a", Data: b("raw")}}}},
			map[string][]byte{"a": b("raw")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Flatten(tc.layers...)
			if !maps.EqualFunc(got, tc.want, bytes.Equal) {
				t.Errorf("Flatten: got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestImageDigestIsStableForTheSameInputAndChangesWithIt(t *testing.T) {
	layers := func(content string) []Layer {
		return []Layer{
			{Files: map[string][]byte{"a": []byte("1"), "b/c": []byte("2"), "z": []byte("3"), "y": []byte("4")}},
			{Files: map[string][]byte{"a": []byte(content)}, Delete: []string{"z", "y"}},
		}
	}
	digest := func(ls []Layer) string {
		t.Helper()
		img, err := Image(ls...)
		if err != nil {
			t.Fatalf("Image: %v", err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatalf("Digest: %v", err)
		}
		return d.String()
	}
	first := digest(layers("x"))
	for i := range 5 {
		if got := digest(layers("x")); got != first {
			t.Fatalf("build %d: got digest %s, want %s (same input)", i, got, first)
		}
	}
	if got := digest(layers("other")); got == first {
		t.Errorf("different content: got the same digest %s", got)
	}
	later := NewBuilder(BuilderOptions{Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	img, err := later.Image(layers("x")...)
	if err != nil {
		t.Fatalf("Image: %v", err)
	}
	if d, _ := img.Digest(); d.String() == first {
		t.Errorf("different creation time: got the same digest %s", d)
	}
}

func TestImageIsLinuxAmd64WithTheFormatsMediaTypes(t *testing.T) {
	for _, tc := range []struct {
		name                        string
		format                      Format
		manifest, config, layerType types.MediaType
	}{
		{"the default is Docker schema 2", FormatDocker, types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer},
		{"OCI on request", FormatOCI, types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := NewBuilder(BuilderOptions{Format: tc.format}).Image(Layer{Files: map[string][]byte{"a": []byte("1")}}, Layer{Delete: []string{"a"}})
			if err != nil {
				t.Fatalf("Image: %v", err)
			}
			m, err := img.Manifest()
			if err != nil {
				t.Fatalf("Manifest: %v", err)
			}
			if m.MediaType != tc.manifest || m.Config.MediaType != tc.config {
				t.Errorf("media types: got manifest %s config %s, want %s %s", m.MediaType, m.Config.MediaType, tc.manifest, tc.config)
			}
			if len(m.Layers) != 2 {
				t.Fatalf("layers: got %d, want 2", len(m.Layers))
			}
			for i, l := range m.Layers {
				if l.MediaType != tc.layerType {
					t.Errorf("layer %d media type: got %s, want %s", i, l.MediaType, tc.layerType)
				}
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatalf("ConfigFile: %v", err)
			}
			if cf.OS != "linux" || cf.Architecture != "amd64" {
				t.Errorf("platform: got %s/%s, want linux/amd64", cf.OS, cf.Architecture)
			}
			if cf.RootFS.Type != "layers" || len(cf.RootFS.DiffIDs) != 2 {
				t.Errorf("rootfs: got type %q with %d diff ids, want \"layers\" with 2", cf.RootFS.Type, len(cf.RootFS.DiffIDs))
			}
		})
	}
}

func TestFilesFromDirReadsNestedAndHiddenFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("firmware.bin", "fw")
	write(".hidden", "h")
	write("sub/deep/x.hex", "x")
	got, err := FilesFromDir(dir)
	if err != nil {
		t.Fatalf("FilesFromDir: %v", err)
	}
	want := map[string][]byte{"firmware.bin": []byte("fw"), ".hidden": []byte("h"), "sub/deep/x.hex": []byte("x")}
	if !maps.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("FilesFromDir: got %q, want %q", got, want)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := FilesFromDir(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("FilesFromDir with a symlink: got error %v, want \"not a regular file\"", err)
	}
}

func TestLayerFromRootSplitsAssetsFromTheRestOfTheImage(t *testing.T) {
	l := LayerFromRoot(
		map[string][]byte{"assets/a": []byte("1"), "assets/d/b": []byte("2"), "etc/os-release": []byte("3"), "assets/../escape": []byte("4"), "/assets/abs": []byte("5")},
		[]string{"assets/old", "etc/gone"},
	)
	wantFiles := map[string][]byte{"a": []byte("1"), "d/b": []byte("2")}
	if !maps.EqualFunc(l.Files, wantFiles, bytes.Equal) {
		t.Errorf("Files: got %q, want %q", l.Files, wantFiles)
	}
	if !slices.Equal(l.Delete, []string{"old"}) {
		t.Errorf("Delete: got %q, want [old]", l.Delete)
	}
	var raw []string
	for _, r := range l.Raw {
		raw = append(raw, r.Name)
	}
	if want := []string{"/assets/abs", "assets/../escape", "etc/.wh.gone", "etc/os-release"}; !slices.Equal(raw, want) {
		t.Errorf("Raw names: got %q, want %q", raw, want)
	}
	got := Flatten(l)
	want := map[string][]byte{"a": []byte("1"), "d/b": []byte("2"), "abs": []byte("5")}
	if !maps.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("Flatten: got %q, want %q", got, want)
	}
}
