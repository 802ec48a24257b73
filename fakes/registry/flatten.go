package registry

import (
	"archive/tar"
	"bytes"
	"maps"
	"path"
	"slices"
	"strings"
)

// Flatten returns the /assets content that layers (bottom first) give once
// applied in order, as a compliant consumer must serve it (APP-ASSET-3/4):
// paths relative to /assets mapped to contents, regular files only.
//
// It applies each layer to the result of the layers below it, as Docker's
// layer extraction and overlayfs do, and as the OCI image spec describes:
//   - First the layer's whiteouts (Delete, Opaque and raw ".wh." entries)
//     remove lower-layer content: a deleted path with its tree, everything
//     below an opaque directory. They never hide the layer's own entries.
//   - Then its directories replace lower-layer files at their paths: the
//     parents of its files, of its whiteouts and its opaque directories
//     (Tar writes each as an entry), and raw directory entries. So
//     Layer{Delete: ["d/e/z"]} removes a lower file "d/e".
//   - Then its files and raw entries, in tar order, later entries winning.
//     An entry replaces whatever was at its path (a file or symlink replaces
//     a directory tree) and any file where one of its parent directories
//     goes. A raw entry that is not a regular file (symlink, hard link,
//     directory, device) is not listed itself.
//
// What a layer removed stays removed whatever upper layers do: a directory
// in layer 3 over a file in layer 2 does not bring back what layer 1 had
// under that path. (ggcr's mutate.Extract does bring it back; Docker and
// overlayfs do not, and Flatten follows them.)
//
// Raw entry names are read as a consumer must read them: leading "/"
// dropped, cleaned; a name whose cleaned path escapes the root or lies
// outside /assets contributes nothing. Files, Delete and Opaque paths that
// are empty, absolute or escape /assets are skipped; for a layer that Tar
// refuses otherwise the result means nothing, as no image can hold it.
func Flatten(layers ...Layer) map[string][]byte {
	out := map[string][]byte{}
	removeBelow := func(p string) {
		for k := range out {
			if p == "" || strings.HasPrefix(k, p+"/") {
				delete(out, k)
			}
		}
	}
	removeTree := func(p string) {
		delete(out, p)
		removeBelow(p)
	}
	// place makes room for an entry at p: a directory replaces a file, a
	// non-directory replaces a tree, and a file where a parent directory
	// goes is replaced by it.
	place := func(p string, dir bool) {
		for a := path.Dir(p); a != "."; a = path.Dir(a) {
			delete(out, a)
		}
		if dir {
			delete(out, p)
		} else {
			removeTree(p)
		}
	}
	for _, l := range layers {
		dirs := map[string]bool{} // the layer's directories from Files, Delete and Opaque
		parents := func(c string) {
			for a := path.Dir(c); a != "."; a = path.Dir(a) {
				dirs[a] = true
			}
		}
		// Whiteouts first: they apply to lower layers only.
		for _, p := range l.Delete {
			if c, err := cleanAssetPath(p, false); err == nil {
				removeTree(c)
				parents(c)
			}
		}
		for _, p := range l.Opaque {
			if c, err := cleanAssetPath(p, true); err == nil {
				removeBelow(c)
				if c != "" {
					dirs[c] = true
					parents(c)
				}
			}
		}
		for _, r := range l.Raw {
			rel, ok := rawAssetPath(r.Name)
			if !ok || rel == "" {
				continue
			}
			switch target, opaque, ok := whiteoutOf(rel); {
			case !ok:
			case opaque:
				removeBelow(target)
			case target == "":
				removeBelow("") // ".wh." in /assets names /assets itself
			case target != ".." && !strings.HasPrefix(target, "../"):
				removeTree(target)
			}
		}
		files := map[string]string{} // clean path → key in l.Files
		for _, p := range slices.Sorted(maps.Keys(l.Files)) {
			if c, err := cleanAssetPath(p, false); err == nil {
				files[c] = p
				parents(c)
			}
		}
		// The layer's directory entries replace lower files.
		for d := range dirs {
			delete(out, d)
		}
		for _, c := range slices.Sorted(maps.Keys(files)) {
			place(c, false)
			out[c] = bytes.Clone(l.Files[files[c]])
		}
		for _, r := range l.Raw {
			rel, ok := rawAssetPath(r.Name)
			if !ok || rel == "" || strings.HasPrefix(path.Base(rel), whiteoutPrefix) {
				continue
			}
			place(rel, r.Type == tar.TypeDir)
			if r.Type == 0 || r.Type == tar.TypeReg {
				out[rel] = bytes.Clone(r.Data)
			}
		}
	}
	return out
}

// whiteoutOf reads the whiteout that rel, a path relative to /assets,
// stands for: an opaque marker, whose target is its directory, or a
// whiteout of dir/name for dir/.wh.name. ok is false for any other path.
func whiteoutOf(rel string) (target string, opaque, ok bool) {
	dir, base := path.Dir(rel), path.Base(rel)
	if dir == "." {
		dir = ""
	}
	switch {
	case base == opaqueWhiteout:
		return dir, true, true
	case strings.HasPrefix(base, whiteoutPrefix):
		return path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix)), false, true
	}
	return "", false, false
}

// rawAssetPath maps a tar member name to a path relative to /assets; ok is
// false when the name escapes the root or lies outside /assets. /assets
// itself is "".
func rawAssetPath(name string) (rel string, ok bool) {
	c := path.Clean(strings.TrimLeft(name, "/"))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", false
	}
	if c == AssetsDir {
		return "", true
	}
	rel, ok = strings.CutPrefix(c, AssetsDir+"/")
	return rel, ok
}
