package assets

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"path"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
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
		tr := tar.NewReader(&out)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatalf("output tar: %v", err)
			}
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
			if _, err := io.Copy(io.Discard, tr); err != nil {
				t.Fatalf("output tar: %v", err)
			}
		}
	})
}
