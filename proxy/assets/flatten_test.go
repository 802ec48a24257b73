package assets

import (
	"archive/tar"
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/depharness/depharness/internal/testkit"
)

func TestFlatten(t *testing.T) {
	tests := []struct {
		name   string
		layers [][]ent // bottom first
		opts   flattenOptions
		want   []string
	}{
		{
			name: "member names are relative to /assets and other folders are left out",
			layers: [][]ent{{
				dir("assets/"), file("assets/firmware.bin", "fw"), dir("assets/sub/"), file("assets/sub/x.hex", "x"),
				dir("etc/"), file("etc/passwd", "root"), file("assetsfoo", "not assets"), file("other/assets/y", "no"),
			}},
			want: []string{`firmware.bin "fw"`, "sub/ dir", `sub/x.hex "x"`},
		},
		{
			name:   "leading slash and ./ prefixes are stripped",
			layers: [][]ent{{file("/assets/a", "a"), file("./assets/b", "b"), dir("./assets/c/"), file("./assets/c/d", "d")}},
			want:   []string{`a "a"`, `b "b"`, "c/ dir", `c/d "d"`},
		},
		{
			name:   "hidden files and folders are included",
			layers: [][]ent{{file("assets/.hidden", "h"), dir("assets/.dir/"), file("assets/.dir/f", "f"), file("assets/sub/.x", "x")}},
			want:   []string{".dir/ dir", `.dir/f "f"`, `.hidden "h"`, `sub/.x "x"`},
		},
		{
			name:   "a whiteout in a later layer deletes the file",
			layers: [][]ent{{file("assets/a", "a"), file("assets/b", "b")}, {file("assets/.wh.a", "")}},
			want:   []string{`b "b"`},
		},
		{
			name: "a whiteout of a folder deletes everything below it",
			layers: [][]ent{
				{dir("assets/sub/"), file("assets/sub/x", "x"), dir("assets/sub/y/"), file("assets/sub/y/z", "z"), file("assets/keep", "k")},
				{file("assets/.wh.sub", "")},
			},
			want: []string{`keep "k"`},
		},
		{
			name: "an opaque folder hides lower contents and keeps its own",
			layers: [][]ent{
				{dir("assets/sub/"), file("assets/sub/x", "x"), file("assets/sub/y", "y"), file("assets/top", "t")},
				{dir("assets/sub/"), file("assets/sub/.wh..wh..opq", ""), file("assets/sub/z", "z")},
			},
			want: []string{"sub/ dir", `sub/z "z"`, `top "t"`},
		},
		{
			name:   "the later version of an overwritten file wins",
			layers: [][]ent{{file("assets/a", "old"), file("assets/b", "b")}, {file("assets/a", "new")}},
			want:   []string{`a "new"`, `b "b"`},
		},
		{
			name:   "a file added again above its whiteout is present with the new content",
			layers: [][]ent{{file("assets/a", "old")}, {file("assets/.wh.a", "")}, {file("assets/a", "new")}},
			want:   []string{`a "new"`},
		},
		{
			name:   "a whiteout deletes only lower layers, not the file of its own layer",
			layers: [][]ent{{file("assets/a", "old")}, {file("assets/.wh.a", ""), file("assets/a", "same layer")}},
			want:   []string{`a "same layer"`},
		},
		{
			name:   "a file replacing a folder hides what was in the folder",
			layers: [][]ent{{dir("assets/sub/"), file("assets/sub/x", "x")}, {file("assets/sub", "now a file")}},
			want:   []string{`sub "now a file"`},
		},
		{
			name:   "a folder replacing a file keeps the folder's contents",
			layers: [][]ent{{file("assets/sub", "a file")}, {dir("assets/sub/"), file("assets/sub/x", "x")}},
			want:   []string{"sub/ dir", `sub/x "x"`},
		},
		{
			name:   "a whiteout's parent folder in a later layer replaces a lower file of that name",
			layers: [][]ent{{file("assets/d", "file")}, {dir("assets/d/"), file("assets/d/.wh.z", "")}},
			want:   []string{"d/ dir"},
		},
		{
			name: "a file between two folders removes the lowest folder's contents for good",
			layers: [][]ent{
				{dir("assets/a/"), file("assets/a/a", "lowest")},
				{file("assets/a", "a file")},
				{dir("assets/a/"), file("assets/a/b", "top")},
			},
			want: []string{"a/ dir", `a/b "top"`},
		},
		{
			name: "a symlink between two folders removes the lowest folder's contents for good",
			layers: [][]ent{
				{dir("assets/a/"), file("assets/a/a", "lowest"), dir("assets/a/s/"), file("assets/a/s/x", "x")},
				{dir("assets/a/"), symlink("assets/a/s", "..")},
				{dir("assets/a/s/"), file("assets/a/s/y", "top")},
			},
			want: []string{"a/ dir", `a/a "lowest"`, "a/s/ dir", `a/s/y "top"`},
		},
		{
			name: "a file hidden by a whiteout above it still removes the folder below it",
			layers: [][]ent{
				{dir("assets/a/"), file("assets/a/x", "lowest")},
				{file("assets/a", "a file")},
				{file("assets/.wh.a", "")},
			},
			want: []string{},
		},
		{
			name: "an entry without its parent folder entry replaces a lower file of the parent's name",
			layers: [][]ent{
				{file("assets/d", "a file"), file("assets/keep", "k")},
				{file("assets/d/x", "x")},
			},
			want: []string{`d/x "x"`, `keep "k"`},
		},
		{
			name: "an entry without its parent folder entries replaces lower files at every parent",
			layers: [][]ent{
				{file("assets/d", "d file")},
				{dir("assets/d/"), file("assets/d/e", "e file")},
				{file("assets/d/e/f/x", "x")},
			},
			want: []string{"d/ dir", `d/e/f/x "x"`},
		},
		{
			name: "a folder implied by an entry keeps a lower folder of that name with its contents",
			layers: [][]ent{
				{dir("assets/d/"), file("assets/d/old", "old")},
				{file("assets/d/x", "x")},
			},
			want: []string{"d/ dir", `d/old "old"`, `d/x "x"`},
		},
		{
			name: "a folder implied by an entry that a later layer deletes still replaces a lower file",
			layers: [][]ent{
				{file("assets/d", "a file")},
				{file("assets/d/x", "x")},
				{file("assets/d/.wh.x", "")},
			},
			want: []string{},
		},
		{
			name: "entries below a file or symlink of the same layer are dropped, links are not followed",
			layers: [][]ent{{
				file("assets/f", "file"), file("assets/f/x", "under a file"), dir("assets/sub/"),
				symlink("assets/link", "sub"), file("assets/link/y", "through a link"),
			}},
			want: []string{`f "file"`, "link -> sub", "sub/ dir"},
		},
		{
			name:   "folders from several layers merge",
			layers: [][]ent{{dir("assets/sub/"), file("assets/sub/a", "a")}, {dir("assets/sub/"), file("assets/sub/b", "b")}},
			want:   []string{"sub/ dir", `sub/a "a"`, `sub/b "b"`},
		},
		{
			name:   "a whiteout of /assets itself empties the tar",
			layers: [][]ent{{file("assets/a", "a")}, {file(".wh.assets", "")}},
			want:   []string{},
		},
		{
			name:   "an opaque image root hides lower layers' assets",
			layers: [][]ent{{file("assets/a", "a")}, {file(".wh..wh..opq", ""), file("assets/b", "b")}},
			want:   []string{`b "b"`},
		},
		{
			name:   "an /assets that a later layer turns into a symlink gives an empty tar",
			layers: [][]ent{{file("assets/a", "a"), file("data/b", "b")}, {symlink("assets", "/data")}},
			want:   []string{},
		},
		{
			name:   "an image without /assets gives an empty tar",
			layers: [][]ent{{dir("etc/"), file("etc/hostname", "h")}},
			want:   []string{},
		},
		{
			name:   "an image without layers gives an empty tar",
			layers: nil,
			want:   []string{},
		},
		{
			name: "names whose cleaned path escapes /assets are never emitted",
			layers: [][]ent{{
				file("assets/../etc/passwd", "no"), file("../assets/x", "no"), file("assets/../../y", "no"),
				file("assets/sub/../inside", "yes"),
			}},
			want: []string{`inside "yes"`},
		},
		{
			name: "symlinks inside /assets are kept in relative form, links leading out are dropped",
			layers: [][]ent{{
				file("assets/x", "x"), dir("assets/sub/"),
				symlink("assets/rel", "x"),
				symlink("assets/abs", "/assets/x"),
				symlink("assets/sub/up", "../x"),
				symlink("assets/sub/abs", "/assets/x"),
				symlink("assets/sub/root", "/assets"),
				symlink("assets/out-abs", "/etc/passwd"),
				symlink("assets/out-rel", "../etc/passwd"),
				symlink("assets/sub/out-deep", "../../../../etc/passwd"),
				symlink("assets/sub/out-around", "../../assets/x/../../etc"),
			}},
			want: []string{
				"abs -> x", "rel -> x", "sub/ dir", "sub/abs -> ../x", "sub/root -> ..", "sub/up -> ../x", `x "x"`,
			},
		},
		{
			name: "hard links to files of the same layer are kept with relative names",
			layers: [][]ent{
				{file("assets/lower", "l"), file("etc/passwd", "root")},
				{
					file("assets/a", "a"), hardlink("assets/h", "assets/a"), hardlink("assets/h2", "/assets/a"),
					hardlink("assets/out", "etc/passwd"), hardlink("assets/to-lower", "assets/lower"),
				},
			},
			want: []string{`a "a"`, "h => a", "h2 => a", `lower "l"`},
		},
		{
			name: "a hard link to a symlink is that symlink at the link's place, dropped when it leads out from there",
			layers: [][]ent{{
				dir("assets/a/b/c/d/e/f/g/h/"),
				symlink("assets/a/b/c/d/e/f/g/h/l", "../../../../../../../../etc/passwd"),
				hardlink("assets/evil", "assets/a/b/c/d/e/f/g/h/l"),
				file("assets/x", "x"), symlink("assets/l2", "x"), dir("assets/sub/"), hardlink("assets/sub/h2", "assets/l2"),
				symlink("assets/sub/up", "../x"), hardlink("assets/h3", "assets/sub/up"),
			}},
			want: []string{
				"a/b/c/d/e/f/g/h/ dir", "a/b/c/d/e/f/g/h/l -> ../../../../../../../../etc/passwd",
				"l2 -> x", "sub/ dir", "sub/h2 -> x", "sub/up -> ../x", `x "x"`,
			},
		},
		{
			name: "a symlink through a linked folder is resolved where that folder's link leads",
			layers: [][]ent{{
				dir("assets/a/b/c/"), symlink("assets/a/b/c/top", "../../.."),
				symlink("assets/out", "a/b/c/top/.."),
				symlink("assets/in", "a/b/c/top/a"),
				dir("assets/p/q/"), symlink("assets/d", "p/q"), symlink("assets/y", "d/.."),
				symlink("assets/z", "d/../.."), symlink("assets/p/w", "../d/../../.."),
			}},
			want: []string{
				"a/b/c/ dir", "a/b/c/top -> ../../..", "d -> p/q", "in -> a/b/c/top/a", "p/q/ dir", "y -> d/..",
			},
		},
		{
			name: "a symlink through a dropped link is judged without it",
			layers: [][]ent{{
				symlink("assets/bad", "../.."), symlink("assets/via", "bad/x"), symlink("assets/ok", "via2/.."),
				dir("assets/via2/"),
			}},
			want: []string{"ok -> via2/..", "via -> bad/x", "via2/ dir"},
		},
		{
			name:   "symlinks that loop are dropped",
			layers: [][]ent{{symlink("assets/a", "b"), symlink("assets/b", "a/x"), symlink("assets/self", "self")}},
			want:   []string{},
		},
		{
			name: "absolute links into /assets are rewritten relative, other absolute links dropped",
			layers: [][]ent{{
				dir("assets/s/t/"), file("assets/x", "x"),
				symlink("assets/s/t/abs", "/assets/x"), symlink("assets/s/root", "//./assets"),
				symlink("assets/top", "/assets"), symlink("assets/back", "/assets/../assets/x"),
				symlink("assets/etc", "/etc"), symlink("assets/assetsx", "/assetsx/y"),
			}},
			want: []string{"s/root -> ..", "s/t/ dir", "s/t/abs -> ../../x", "top -> .", `x "x"`},
		},
		{
			name: "a symlink where the tar has a file or folder, or above other members, is dropped",
			layers: [][]ent{{
				file("assets/l/x", "x"), symlink("assets/l", "."),
				dir("assets/d/"), symlink("assets/d", "."),
				symlink("assets/s/inner", "."), symlink("assets/s", "."),
			}},
			want: []string{"d/ dir", `l/x "x"`, "s/inner -> ."},
		},
		{
			name: "a later entry of the same layer replaces a symlink held for the end",
			layers: [][]ent{{
				symlink("assets/a", "x"), file("assets/a", "file"),
				symlink("assets/b", "x"), symlink("assets/b", "y"),
			}},
			want: []string{`a "file"`, "b -> y"},
		},
		{
			name:   "long names survive",
			layers: [][]ent{{file("assets/"+strings.Repeat("d/", 80)+"f", "deep")}},
			want:   []string{strings.Repeat("d/", 80) + `f "deep"`},
		},
		{
			name:   "devices and fifos are dropped",
			layers: [][]ent{{{name: "assets/null", typ: tar.TypeChar}, {name: "assets/fifo", typ: tar.TypeFifo}, file("assets/a", "a")}},
			want:   []string{`a "a"`},
		},
		{
			name: "violation assets-unsafe-links writes links as the image has them",
			layers: [][]ent{{
				file("assets/x", "x"), symlink("assets/abs", "/etc/passwd"), symlink("assets/up", "../../y"),
				hardlink("assets/h", "assets/abs"), hardlink("assets/lower", "assets/elsewhere"),
			}},
			opts: flattenOptions{unsafeLinks: true},
			want: []string{"abs -> /etc/passwd", "h => abs", "lower => elsewhere", "up -> ../../y", `x "x"`},
		},
		{
			name: "violation assets-lexical-links keeps hard links to symlinks and links through linked folders",
			layers: [][]ent{{
				dir("assets/a/b/"), symlink("assets/a/b/l", "../../etc/passwd"), hardlink("assets/evil", "assets/a/b/l"),
				symlink("assets/a/top", ".."), symlink("assets/out", "a/top/.."),
			}},
			opts: flattenOptions{lexicalLinks: true},
			want: []string{"a/b/ dir", "a/b/l -> ../../etc/passwd", "a/top -> ..", "evil => a/b/l", "out -> a"},
		},
		{
			name:   "violation assets-keep-devices writes device nodes and fifos",
			layers: [][]ent{{{name: "assets/null", typ: tar.TypeChar}, {name: "assets/fifo", typ: tar.TypeFifo}}},
			opts:   flattenOptions{keepDevices: true},
			want:   []string{`fifo ""`, `null ""`},
		},
		{
			name:   "violation assets-root-opaque-ignored keeps lower layers' assets under an opaque /assets",
			layers: [][]ent{{file("assets/a", "a"), dir("assets/d/"), file("assets/d/x", "x")}, {file("assets/.wh..wh..opq", ""), file("assets/b", "b")}},
			opts:   flattenOptions{rootOpaque: true},
			want:   []string{`a "a"`, `b "b"`, "d/ dir", `d/x "x"`},
		},
		{
			name:   "an opaque marker directly in /assets hides lower layers' assets",
			layers: [][]ent{{file("assets/a", "a"), dir("assets/d/"), file("assets/d/x", "x")}, {file("assets/.wh..wh..opq", ""), file("assets/b", "b")}},
			want:   []string{`b "b"`},
		},
		{
			name:   "violation assets-keep-prefix keeps the assets/ prefix",
			layers: [][]ent{{file("assets/a", "a"), dir("assets/sub/"), file("assets/sub/b", "b")}},
			opts:   flattenOptions{keepPrefix: true},
			want:   []string{`assets/a "a"`, "assets/sub/ dir", `assets/sub/b "b"`},
		},
		{
			name:   "violation assets-ignore-whiteouts keeps deleted files",
			layers: [][]ent{{file("assets/a", "a"), file("assets/b", "b")}, {file("assets/.wh.a", "")}},
			opts:   flattenOptions{ignoreWhiteouts: true},
			want:   []string{`a "a"`, `b "b"`},
		},
		{
			name:   "violation assets-lower-layer-wins keeps the first version of a file",
			layers: [][]ent{{file("assets/a", "old")}, {file("assets/a", "new")}},
			opts:   flattenOptions{lowerWins: true},
			want:   []string{`a "old"`},
		},
		{
			name:   "violation assets-drop-dotfiles drops top-level hidden entries only",
			layers: [][]ent{{file("assets/.hidden", "h"), dir("assets/.dir/"), file("assets/.dir/f", "f"), file("assets/sub/.x", "x")}},
			opts:   flattenOptions{dropDotfiles: true},
			want:   []string{`sub/.x "x"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var layers []v1.Layer
			for _, es := range tt.layers {
				layers = append(layers, layerOf(t, es...))
			}
			var out bytes.Buffer
			if _, err := flatten(context.Background(), layers, &out, tt.opts); err != nil {
				t.Fatalf("flatten: %v", err)
			}
			got := readTar(t, bytes.NewReader(out.Bytes()))
			if !slices.Equal(got, tt.want) {
				t.Errorf("members:\n got %s\nwant %s", strings.Join(got, " | "), strings.Join(tt.want, " | "))
			}
			for _, m := range got {
				if tt.opts.unsafeLinks {
					break
				}
				if strings.HasPrefix(m, "/") || strings.Contains(m, "..") && !strings.Contains(m, "->") {
					t.Errorf("member %q is not a plain relative name", m)
				}
			}
		})
	}
}

func TestFlattenEmptyTarIsValid(t *testing.T) {
	var out bytes.Buffer
	if _, err := flatten(context.Background(), []v1.Layer{layerOf(t, file("etc/x", "x"))}, &out, flattenOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := out.Len(), 1024; got != want {
		t.Errorf("empty tar size: got %d bytes, want %d (two zero blocks)", got, want)
	}
	if !bytes.Equal(out.Bytes(), make([]byte, 1024)) {
		t.Errorf("empty tar: got non-zero bytes, want the end-of-archive blocks only")
	}
}

func TestFlattenIsDeterministic(t *testing.T) {
	layers := []v1.Layer{
		layerOf(t, file("assets/a", "a"), dir("assets/d/"), file("assets/d/b", "b")),
		layerOf(t, file("assets/c", "c"), file("assets/d/.wh.b", "")),
	}
	var one, two bytes.Buffer
	if _, err := flatten(context.Background(), layers, &one, flattenOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := flatten(context.Background(), layers, &two, flattenOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Errorf("two flattens of one image differ: got %d and %d bytes", one.Len(), two.Len())
	}
}

func TestRelPath(t *testing.T) {
	tests := []struct{ from, to, want string }{
		{"assets", "assets/x", "x"},
		{"assets/sub", "assets/x", "../x"},
		{"assets/a/b", "assets/c/d", "../../c/d"},
		{"assets/sub", "assets", ".."},
		{"assets", "assets", "."},
	}
	for _, tt := range tests {
		if got := relPath(tt.from, tt.to); got != tt.want {
			t.Errorf("relPath(%q, %q): got %q, want %q", tt.from, tt.to, got, tt.want)
		}
	}
}

func TestFlattenClearsSpecialModeBitsAndCountsDropsByReason(t *testing.T) {
	layers := []v1.Layer{layerOf(t,
		withMode(file("assets/tool", "t"), 0o4755), withMode(file("assets/group", "g"), 0o2750),
		withMode(dir("assets/tmp/"), 0o1777), withMode(symlink("assets/l", "tool"), 0o6777),
		ent{name: "assets/null", typ: tar.TypeChar}, ent{name: "assets/sda", typ: tar.TypeBlock},
		ent{name: "assets/fifo", typ: tar.TypeFifo},
		symlink("assets/out", "../x"), symlink("assets/loop", "loop"), hardlink("assets/h", "assets/none"),
		file("assets/c/x", "x"), symlink("assets/c", "."),
	)}
	for _, keep := range []bool{false, true} {
		var out bytes.Buffer
		st, err := flatten(context.Background(), layers, &out, flattenOptions{keepSetuid: keep})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{"tool": 0o755, "group": 0o750, "tmp/": 0o777, "l": 0o777, "c/x": 0o644}
		if keep {
			want = map[string]int64{"tool": 0o4755, "group": 0o2750, "tmp/": 0o1777, "l": 0o6777, "c/x": 0o644}
		}
		got := map[string]int64{}
		for h := range testkit.TarMembers(t, &out) {
			got[h.Name] = h.Mode
		}
		if !maps.Equal(got, want) {
			t.Errorf("keepSetuid=%v: modes: got %v, want %v", keep, got, want)
		}
		wantDrops := map[string]int{dropDevice: 2, dropFifo: 1, dropLinkOutside: 1, dropLinkLoop: 1, dropLinkTarget: 1, dropLinkConflict: 1}
		if !maps.Equal(st.DroppedBy, wantDrops) || st.Dropped != 7 {
			t.Errorf("drops: got %d %v, want 7 %v", st.Dropped, st.DroppedBy, wantDrops)
		}
	}
}

func TestRelativeText(t *testing.T) {
	tests := []struct {
		rel, text, want string
		ok              bool
	}{
		{"x", "y", "y", true},
		{"s/x", "../y", "../y", true},
		{"x", "/assets/y", "y", true},
		{"s/t/x", "/assets/y/z", "../../y/z", true},
		{"s/x", "/assets", "..", true},
		{"x", "/assets/", ".", true},
		{"x", "/./assets/y", "y", true},
		{"x", "/etc/passwd", "", false},
		{"x", "/assetsx", "", false},
		{"x", "/", "", false},
		{"x", "", "", false},
	}
	for _, tt := range tests {
		got, ok := relativeText(tt.rel, tt.text)
		if got != tt.want || ok != tt.ok {
			t.Errorf("relativeText(%q, %q): got %q %v, want %q %v", tt.rel, tt.text, got, ok, tt.want, tt.ok)
		}
	}
}
