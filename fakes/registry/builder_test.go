package registry

import (
	"archive/tar"
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/depharness/depharness/internal/testkit"
)

// tarEntries lists the entries of l's tar as "name type".
func tarEntries(t testing.TB, l Layer) []string {
	t.Helper()
	var out []string
	for _, h := range tarHeaders(t, l) {
		out = append(out, h.Name+" "+string(h.Typeflag))
	}
	return out
}

// tarHeaders are the headers of l's tar, in order.
func tarHeaders(t testing.TB, l Layer) []*tar.Header {
	t.Helper()
	b, err := l.Tar()
	if err != nil {
		t.Fatalf("Tar: %v", err)
	}
	var out []*tar.Header
	for h := range testkit.TarMembers(t, bytes.NewReader(b)) {
		out = append(out, h)
	}
	return out
}

func TestLayerTarHasDirectoriesWhiteoutsFilesThenRawEntries(t *testing.T) {
	l := Layer{
		Files:  map[string][]byte{"sub/deep/x.hex": []byte("x"), ".hidden": []byte("h"), "firmware.bin": []byte("fw")},
		Delete: []string{"old.bin", "gone/dir"},
		Opaque: []string{"sub", ""},
		Raw:    []RawEntry{{Name: "/assets/abs"}, {Name: "assets/link", Type: tar.TypeSymlink, Linkname: "/etc/passwd"}},
	}
	got := tarEntries(t, l)
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

func TestLayerTarWritesRawLinksDevicesFifosAndModeBitsAsGiven(t *testing.T) {
	l := Layer{Raw: []RawEntry{
		{Name: "assets/a/b/l", Type: tar.TypeSymlink, Linkname: "../../etc/passwd"},
		{Name: "assets/evil", Type: tar.TypeLink, Linkname: "assets/a/b/l"},
		{Name: "assets/null", Type: tar.TypeChar, Devmajor: 1, Devminor: 3},
		{Name: "assets/sda", Type: tar.TypeBlock, Devmajor: 8},
		{Name: "assets/pipe", Type: tar.TypeFifo},
		{Name: "assets/tool", Data: []byte("t"), Mode: 0o4755},
		{Name: "assets/tmp/", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "assets/g", Data: []byte("g"), Mode: 0o2750},
	}}
	var got []string
	for _, h := range tarHeaders(t, l) {
		if !strings.HasPrefix(h.Name, "assets/") || h.Name == "assets/" {
			continue
		}
		got = append(got, fmt.Sprintf("%s %c %s %d,%d %o", h.Name, h.Typeflag, h.Linkname, h.Devmajor, h.Devminor, h.Mode))
	}
	want := []string{
		"assets/a/b/l 2 ../../etc/passwd 0,0 644",
		"assets/evil 1 assets/a/b/l 0,0 644",
		"assets/null 3  1,3 644",
		"assets/sda 4  8,0 644",
		"assets/pipe 6  0,0 644",
		"assets/tool 0  0,0 4755",
		"assets/tmp/ 5  0,0 1777",
		"assets/g 0  0,0 2750",
	}
	if !slices.Equal(got, want) {
		t.Errorf("raw entries:\ngot  %q\nwant %q", got, want)
	}
}

func TestLayerTarRejectsAmbiguousOrEscapingPaths(t *testing.T) {
	for _, tc := range []struct {
		name  string
		layer Layer
		want  string // part of the error
	}{
		{"a file path that escapes /assets", Layer{Files: map[string][]byte{"../x": nil}}, "escapes"},
		{"an absolute file path", Layer{Files: map[string][]byte{"/x": nil}}, "relative"},
		{"an empty file path", Layer{Files: map[string][]byte{"": nil}}, "empty"},
		{"a file named like a whiteout", Layer{Files: map[string][]byte{"d/.wh.x": nil}}, "whiteout name"},
		{"the same file given twice after cleaning", Layer{Files: map[string][]byte{"a/b": nil, "a//b": nil}}, "twice"},
		{"a path both written and deleted", Layer{Files: map[string][]byte{"a": nil}, Delete: []string{"a"}}, "both written and deleted"},
		{"a deletion of /assets itself", Layer{Delete: []string{"."}}, "empty"},
		{"a path that is both a file and a directory", Layer{Files: map[string][]byte{"d/e": nil, "d/e/z": nil}},
			`path "d/e" is both a file and a directory of the same layer (the directory holds "d/e/z")`},
		{"a file that is an ancestor of another file", Layer{Files: map[string][]byte{"d": nil, "d/x/y": nil}}, `path "d" is both a file and a directory`},
		{"a deletion under a file of the layer", Layer{Files: map[string][]byte{"d": nil}, Delete: []string{"d/x"}}, `path "d" is both a file and a directory`},
		{"an opaque directory that is a file of the layer", Layer{Files: map[string][]byte{"d": nil}, Opaque: []string{"d"}}, "opaque directory"},
		{"an opaque directory under a file of the layer", Layer{Files: map[string][]byte{"d": nil}, Opaque: []string{"d/e"}}, `path "d" is both a file and a directory`},
		{"a deleted directory that holds a file of the layer", Layer{Files: map[string][]byte{"d/x": nil}, Delete: []string{"d"}},
			`deleted path "d" is also a directory of the same layer (it holds "d/x")`},
		{"a deleted directory that holds another deletion", Layer{Delete: []string{"d", "d/x"}}, `deleted path "d" is also a directory`},
		{"a deleted directory that the layer makes opaque", Layer{Delete: []string{"d"}, Opaque: []string{"d"}}, `deleted path "d" is also a directory`},
		{"an opaque directory outside /assets", Layer{Opaque: []string{".."}}, "escapes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.layer.Tar()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Tar: got error %v, want one containing %q", err, tc.want)
			}
			if _, err := Image(tc.layer); err == nil {
				t.Errorf("Image: got nil error, want the layer refused")
			}
		})
	}
}

func TestLayerTarWritesRepeatedDeletionsAndOpaqueDirectoriesOnce(t *testing.T) {
	got := tarEntries(t, Layer{Delete: []string{"x", "./x", "d/y", "d/y"}, Opaque: []string{"o", "o/"}})
	want := []string{"assets/ 5", "assets/d/ 5", "assets/o/ 5", "assets/.wh.x 0", "assets/d/.wh.y 0", "assets/o/.wh..wh..opq 0"}
	if !slices.Equal(got, want) {
		t.Errorf("tar entries:\ngot  %q\nwant %q", got, want)
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
		{"a deletion under a lower file replaces that file with the deletion's directory",
			[]Layer{{Files: map[string][]byte{"d/e": b("1"), "k": b("2")}}, {Delete: []string{"d/e/z"}}},
			map[string][]byte{"k": b("2")}},
		{"a deletion replaces a lower file where any of its parent directories goes",
			[]Layer{{Files: map[string][]byte{"d": b("1"), "k": b("2")}}, {Delete: []string{"d/e/z"}}},
			map[string][]byte{"k": b("2")}},
		{"an opaque directory replaces a lower file at its path",
			[]Layer{{Files: map[string][]byte{"d": b("1"), "k": b("2")}}, {Opaque: []string{"d"}}},
			map[string][]byte{"k": b("2")}},
		{"an opaque directory replaces a lower file where its parent goes",
			[]Layer{{Files: map[string][]byte{"d": b("1"), "k": b("2")}}, {Opaque: []string{"d/e"}}},
			map[string][]byte{"k": b("2")}},
		{"a deletion keeps lower files beside its path",
			[]Layer{{Files: map[string][]byte{"d/e/y": b("1"), "d/f": b("2")}}, {Delete: []string{"d/e/z"}}},
			map[string][]byte{"d/e/y": b("1"), "d/f": b("2")}},
		{"a directory over a file does not bring back what the file replaced",
			[]Layer{{Files: map[string][]byte{"d/x": b("1")}}, {Files: map[string][]byte{"d": b("2")}}, {Files: map[string][]byte{"d/y": b("3")}}},
			map[string][]byte{"d/y": b("3")}},
		{"a deletion's directory over a file does not bring back what the file replaced",
			[]Layer{{Files: map[string][]byte{"d/x": b("1")}}, {Files: map[string][]byte{"d": b("2")}}, {Delete: []string{"d/z"}}},
			map[string][]byte{}},
		{"a raw directory entry replaces a lower file and keeps a lower tree",
			[]Layer{{Files: map[string][]byte{"f": b("1"), "t/x": b("2")}}, {Raw: []RawEntry{{Name: "assets/f/", Type: tar.TypeDir}, {Name: "assets/t", Type: tar.TypeDir}}}},
			map[string][]byte{"t/x": b("2")}},
		{"a raw opaque marker without its directory entry keeps a lower file at the directory's path",
			[]Layer{{Files: map[string][]byte{"d": b("1")}}, {Raw: []RawEntry{{Name: "assets/d/.wh..wh..opq"}}}},
			map[string][]byte{"d": b("1")}},
		{"a raw whiteout named .wh. in /assets deletes all of /assets",
			[]Layer{{Files: map[string][]byte{"a": b("1"), "d/x": b("2")}}, {Raw: []RawEntry{{Name: "assets/.wh."}}}},
			map[string][]byte{}},
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
