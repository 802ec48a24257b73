package registry

import (
	"archive/tar"
	"fmt"
	"maps"
	"math/rand"
	"path"
	"slices"
	"strings"
)

// LayerGen draws random layers for property tests that compare what the
// consumers of an image make of it (Flatten, Docker's extraction, ggcr's
// mutate.Extract, a supervisor's asset tar). Its paths are made of few
// elements, so that layers collide on them (file over directory and back,
// deletions and opaque directories over both), and it draws only layers
// that Tar accepts, with raw entries placed as a real layer's tar holds
// them: each where the layer already has its parent directory and nothing
// at its path (nor, for a non-directory, below it).
type LayerGen struct {
	rnd    *rand.Rand
	paths  []string
	serial int // numbers the contents, so no two files are equal
}

// NewLayerGen returns a LayerGen drawing from rnd, on every path of one to
// three of the elements "a", "b" and ".h" (a hidden one).
func NewLayerGen(rnd *rand.Rand) *LayerGen {
	var paths []string
	level := []string{""}
	for range 3 {
		var next []string
		for _, p := range level {
			for _, n := range []string{"a", "b", ".h"} {
				next = append(next, path.Join(p, n))
			}
		}
		paths = append(paths, next...)
		level = next
	}
	return &LayerGen{rnd: rnd, paths: paths}
}

// Image draws an image of min to max layers.
func (g *LayerGen) Image(min, max int) []Layer {
	layers := make([]Layer, min+g.rnd.Intn(max-min+1))
	for i := range layers {
		layers[i] = g.Layer()
	}
	return layers
}

// Layer draws one layer: files, deletions and opaque directories, then raw
// directories, symlinks and files.
func (g *LayerGen) Layer() Layer {
	rnd := g.rnd
	l := Layer{Files: map[string][]byte{}}
	for range rnd.Intn(7) {
		p := g.path()
		next := l
		switch k := rnd.Intn(10); {
		case k < 6:
			next.Files = maps.Clone(l.Files)
			g.serial++
			next.Files[p] = fmt.Appendf(nil, "content %d of %s", g.serial, p)
		case k < 9:
			next.Delete = append(slices.Clone(l.Delete), p)
		default:
			if rnd.Intn(4) == 0 {
				p = "" // /assets itself
			}
			next.Opaque = append(slices.Clone(l.Opaque), p)
		}
		if _, err := next.Tar(); err == nil {
			l = next
		}
	}
	// The layer's directories (Tar writes the parents of its files,
	// deletions and opaque directories) and every path it has an entry at.
	dirs, taken := map[string]bool{"": true}, map[string]bool{"": true}
	parents := func(p string) {
		for a := path.Dir(p); a != "."; a = path.Dir(a) {
			dirs[a], taken[a] = true, true
		}
	}
	for p := range l.Files {
		taken[p] = true
		parents(p)
	}
	for _, p := range l.Delete {
		taken[p] = true
		parents(p)
	}
	for _, p := range l.Opaque {
		dirs[p], taken[p] = true, true
		parents(p)
	}
	below := func(p string) bool {
		for q := range taken {
			if strings.HasPrefix(q, p+"/") {
				return true
			}
		}
		return false
	}
	for range rnd.Intn(3) {
		p := g.path()
		parent := path.Dir(p)
		if parent == "." {
			parent = ""
		}
		if !dirs[parent] || taken[p] {
			continue
		}
		name := path.Join(AssetsDir, p)
		switch k := rnd.Intn(3); {
		case k == 0:
			l.Raw = append(l.Raw, RawEntry{Name: name + "/", Type: tar.TypeDir})
			dirs[p] = true
		case below(p):
			continue
		case k == 1:
			l.Raw = append(l.Raw, RawEntry{Name: name, Type: tar.TypeSymlink, Linkname: "a"})
		default:
			g.serial++
			l.Raw = append(l.Raw, RawEntry{Name: name, Data: fmt.Appendf(nil, "raw content %d of %s", g.serial, p)})
		}
		taken[p] = true
	}
	return l
}

func (g *LayerGen) path() string { return g.paths[g.rnd.Intn(len(g.paths))] }

// DescribeLayers prints layers for a failure message.
func DescribeLayers(layers []Layer) string {
	var b strings.Builder
	for i, l := range layers {
		fmt.Fprintf(&b, "\n  layer %d: files %q delete %q opaque %q", i, slices.Sorted(maps.Keys(l.Files)), l.Delete, l.Opaque)
		for _, r := range l.Raw {
			fmt.Fprintf(&b, " raw %q(type %c)", r.Name, r.Type)
		}
	}
	return b.String()
}
