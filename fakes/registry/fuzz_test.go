package registry

import (
	"path"
	"strings"
	"testing"
)

// FuzzRawAssetPath checks that whatever a tar member is named, Flatten never
// places it outside /assets: the path it yields is relative, clean and has
// no ".." element.
func FuzzRawAssetPath(f *testing.F) {
	for _, s := range []string{
		"assets/a", "/assets/a", "assets/../escape", "../assets/a", "assets/sub/../../etc/passwd",
		"./assets/x/../y", "assets", "assets/", "//assets//a", "assets/..", "assets/.wh..wh..opq", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		rel, ok := rawAssetPath(name)
		if !ok || rel == "" {
			return
		}
		if path.IsAbs(rel) || path.Clean(rel) != rel {
			t.Fatalf("rawAssetPath(%q) = %q: want a clean relative path", name, rel)
		}
		for _, el := range strings.Split(rel, "/") {
			if el == ".." {
				t.Fatalf("rawAssetPath(%q) = %q: has a .. element", name, rel)
			}
		}
		got := Flatten(Layer{Raw: []RawEntry{{Name: name, Data: []byte("x")}}})
		want := 1
		if strings.HasPrefix(path.Base(rel), whiteoutPrefix) {
			want = 0
		}
		if _, has := got[rel]; len(got) != want || (want == 1 && !has) {
			t.Fatalf("Flatten of a file named %q: got %q, want only %q", name, got, rel)
		}
	})
}
