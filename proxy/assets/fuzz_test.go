package assets

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"path"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/depharness/depharness/internal/testkit"
)

// FuzzFlatten feeds arbitrary bytes as the upper of two layers. Whatever the
// input, flatten must not panic, and when it succeeds its output must be a
// tar whose members stay inside the extraction folder.
func FuzzFlatten(f *testing.F) {
	f.Add(tarOf(f, file("assets/a", "a"), dir("assets/d/"), file("assets/d/b", "b")))
	f.Add(tarOf(f, file("assets/.wh.base", ""), file("assets/d/.wh..wh..opq", ""), file(".wh.assets", "")))
	f.Add(tarOf(f, symlink("assets/l", "../../etc"), hardlink("assets/h", "assets/base"), file("../assets/x", "x")))
	f.Add(tarOf(f, file("/assets/../assets/./x", "x"), symlink("assets/d/abs", "/assets/base")))
	f.Add([]byte("not a tar"))
	base := static.NewLayer(tarOf(f, file("assets/base", "base"), dir("assets/d/"), file("assets/d/b", "b")), types.OCIUncompressedLayer)
	f.Fuzz(func(t *testing.T, data []byte) {
		upper := static.NewLayer(data, types.OCIUncompressedLayer)
		var out bytes.Buffer
		// Sparse members can claim huge sizes in few bytes; the cache's size
		// limit stops them, as here.
		lw := &limitWriter{w: &out, left: 4 << 20}
		if _, err := flatten(context.Background(), []v1.Layer{base, upper}, lw, flattenOptions{}); err != nil {
			return // a malformed or too large layer is an error, which is fine
		}
		for h, body := range testkit.TarMembers(t, &out) {
			name := strings.TrimSuffix(h.Name, "/")
			if name == "" || path.IsAbs(name) || path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") {
				t.Fatalf("member name %q: want a clean relative name inside the folder", h.Name)
			}
			switch h.Typeflag {
			case tar.TypeSymlink:
				r := path.Clean(path.Dir(name) + "/" + h.Linkname)
				if path.IsAbs(h.Linkname) || r == ".." || strings.HasPrefix(r, "../") {
					t.Fatalf("symlink %q -> %q leads outside the folder", name, h.Linkname)
				}
			case tar.TypeLink:
				if l := path.Clean(h.Linkname); path.IsAbs(l) || l == ".." || strings.HasPrefix(l, "../") {
					t.Fatalf("hard link %q => %q leads outside the folder", name, h.Linkname)
				}
			case tar.TypeReg, tar.TypeDir:
			default:
				t.Fatalf("member %q has type %q, want a file, folder or link", name, h.Typeflag)
			}
			if _, err := io.Copy(io.Discard, body); err != nil {
				t.Fatalf("output tar: %v", err)
			}
		}
	})
}

// layersFromBytes decodes data into a sequence of layers (bottom first) of
// entries that are hostile in every way the fuzzer finds: names and link
// texts made of "a", "b", "..", "." and "" components, absolute link texts
// in and out of /assets, hard links, whiteouts, devices, fifos and special
// mode bits. Each entry takes a few bytes; at most 64 entries are made.
func layersFromBytes(data []byte) [][]ent {
	comps := []string{"a", "b", "..", ".", "", "c"}
	i := 0
	next := func() byte {
		if i >= len(data) {
			return 0
		}
		i++
		return data[i-1]
	}
	rel := func() string {
		n := 1 + int(next()%4)
		parts := make([]string, n)
		for k := range parts {
			parts[k] = comps[int(next())%len(comps)]
		}
		return strings.Join(parts, "/")
	}
	name := func() string {
		if next()%8 == 0 {
			return rel() // outside /assets, or escaping
		}
		return "assets/" + rel()
	}
	layers := [][]ent{{}}
	add := func(e ent) {
		if e.typ != tar.TypeDir && !(e.typ == 0 && strings.HasSuffix(e.name, "/")) {
			e.name = strings.TrimRight(e.name, "/") // tar has no such names
		}
		if strings.Trim(e.name, "/") != "" {
			layers[len(layers)-1] = append(layers[len(layers)-1], e)
		}
	}
	for n := 0; i < len(data) && n < 64; n++ {
		switch op := next(); op % 8 {
		case 0:
			layers = append(layers, []ent{})
		case 1:
			add(dir(name() + "/"))
		case 2:
			add(file(name(), "x"))
		case 3:
			var prefix string
			switch next() % 4 {
			case 1:
				prefix = "/"
			case 2:
				prefix = "/assets/"
			}
			add(symlink(name(), prefix+rel()))
		case 4:
			add(hardlink(name(), name()))
		case 5:
			p := name()
			d, b := path.Split(p)
			if next()%2 == 0 {
				b = ".wh..wh..opq"
			} else {
				b = ".wh." + b
			}
			add(file(d+b, ""))
		case 6:
			typ := []byte{tar.TypeChar, tar.TypeBlock, tar.TypeFifo}[int(op>>3)%3]
			add(ent{name: name(), typ: typ})
		case 7:
			add(withMode(file(name(), "m"), []int64{0o4755, 0o2755, 0o1777, 0o7777}[int(op>>3)%4]))
		}
	}
	return layers
}

// FuzzFlattenLayers flattens arbitrary sequences of hostile layers and
// extracts the tar with a simple extractor confined by an os.Root: no
// member may make it leave the root (APP-ASSET-5), no link may resolve
// outside it once extracted, and no member may be a device, a fifo or carry
// setuid, setgid or sticky bits.
func FuzzFlattenLayers(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var layers []v1.Layer
		for _, es := range layersFromBytes(data) {
			layers = append(layers, static.NewLayer(tarOf(t, es...), types.OCIUncompressedLayer))
		}
		var out bytes.Buffer
		if _, err := flatten(context.Background(), layers, &out, flattenOptions{}); err != nil {
			t.Fatalf("flatten: %v", err)
		}
		for h := range testkit.TarMembers(t, bytes.NewReader(out.Bytes())) {
			switch h.Typeflag {
			case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
			default:
				t.Errorf("member %q has type %q", h.Name, h.Typeflag)
			}
			if h.Mode&0o7000 != 0 {
				t.Errorf("member %q has mode %o", h.Name, h.Mode)
			}
		}
		s := newSandbox(t)
		for _, err := range s.extractGo(out.Bytes()) {
			// A layer may repeat a path as a file and a folder; extraction
			// then fails on one of them, which is not a way out.
			if escapes(err) {
				t.Errorf("extraction: %v", err)
			}
		}
		s.wantSafe(t)
	})
}
