package assets

import (
	"archive/tar"
	"path"
	"slices"
	"strings"
)

// Links in the flattened tar: held until every other member is written,
// then kept only if they resolve inside the tar (APP-ASSET-5).

// pendingLink is a symbolic link (or a hard link to one) kept for the end of
// the tar, where links are judged against the whole tree.
type pendingLink struct {
	path       string      // from the image root, under assets/
	text       string      // the link's text as the layer has it
	hdr        *tar.Header // the member to write, Linkname set at the end
	superseded bool        // a later entry of the same layer took the path
}

// hold keeps a symlink at p (under /assets) with the layer's text for the
// end of the tar; hdr is its member without Linkname.
func (f *flattener) hold(p, text string, hdr *tar.Header, rank int) {
	hdr.Typeflag = tar.TypeSymlink
	f.links = append(f.links, pendingLink{path: p, text: text, hdr: hdr})
	f.entries[p] = upper{rank: rank, link: len(f.links)}
}

// writeLinks writes the symlinks held back, after every other member, each
// only if it is safe wherever the tar is extracted (APP-ASSET-5):
//   - A link stands at a path no other member is at or below: extraction
//     never writes through a link, and creates links where folders are
//     real folders.
//   - Its text, an absolute one into /assets rewritten relative to the
//     link's folder, stays inside the tar's root read lexically from the
//     link's folder, and also resolved from where the link stands through
//     the links kept (a link through a linked folder follows that folder's
//     link, then ".." climbs from where that led), and resolution ends (at
//     most maxLinkHops links).
//
// Dropping a link changes how others resolve, so the judgement repeats
// until every link left is safe.
func (f *flattener) writeLinks() error {
	type kept struct {
		rel  string // member path relative to /assets
		text string // the text written
		hdr  *tar.Header
	}
	// Paths that have members below them.
	above := map[string]bool{}
	markAbove := func(p string) {
		for a := path.Dir(p); underAssets(a) && !above[a]; a = path.Dir(a) {
			above[a] = true
		}
	}
	for p := range f.written {
		markAbove(p)
	}
	for _, l := range f.links {
		if !l.superseded {
			markAbove(l.path)
		}
	}
	var ks []kept
	for _, l := range f.links {
		if l.superseded {
			continue
		}
		if f.written[l.path] || above[l.path] {
			f.stats.drop(dropLinkConflict)
			continue
		}
		rel := strings.TrimPrefix(l.path, assetsDir+"/")
		text, ok := relativeText(rel, l.text)
		if ok {
			// Lexically inside too, so that extractors that check links
			// by their text alone take it.
			c := path.Clean(path.Dir(rel) + "/" + text)
			ok = c != ".." && !strings.HasPrefix(c, "../")
		}
		if !ok {
			f.stats.drop(dropLinkOutside)
			continue
		}
		ks = append(ks, kept{rel: rel, text: text, hdr: l.hdr})
	}
	for {
		tree := make(map[string]string, len(ks))
		for _, k := range ks {
			tree[k.rel] = k.text
		}
		safe := ks[:0:0]
		for _, k := range ks {
			switch resolveLink(tree, k.rel) {
			case resolvedInside:
				safe = append(safe, k)
			case resolvedOutside:
				f.stats.drop(dropLinkOutside)
			case resolvedLoop:
				f.stats.drop(dropLinkLoop)
			}
		}
		if len(safe) == len(ks) {
			break
		}
		ks = safe
	}
	for _, k := range ks {
		k.hdr.Linkname = k.text
		if err := f.tw.WriteHeader(k.hdr); err != nil {
			return err
		}
		f.stats.Entries++
	}
	return nil
}

// relativeText is the text written for a symlink at rel (relative to
// /assets) whose layer text is text: a relative text as it is, an absolute
// one into /assets as the same path relative to the link's folder. ok is
// false for an empty text and an absolute one elsewhere.
func relativeText(rel, text string) (string, bool) {
	if text == "" {
		return "", false
	}
	if !path.IsAbs(text) {
		return text, true
	}
	parts := strings.Split(text, "/")
	i := 0
	for i < len(parts) && (parts[i] == "" || parts[i] == ".") {
		i++
	}
	if i == len(parts) || parts[i] != assetsDir {
		return "", false
	}
	rest := strings.Join(parts[i+1:], "/")
	up := strings.Repeat("../", strings.Count(rel, "/"))
	switch {
	case up == "" && rest == "":
		return ".", true
	case rest == "":
		return strings.TrimSuffix(up, "/"), true
	}
	return up + rest, true
}

// maxLinkHops bounds the links followed in one resolution, as Linux does
// (ELOOP after 40).
const maxLinkHops = 40

type resolution int

const (
	resolvedInside resolution = iota
	resolvedOutside
	resolvedLoop
)

// resolveLink resolves the symlink at rel in tree (member path → text, paths
// relative to the tar's root) as a kernel would after extraction, but
// treating every path that is not a link as a folder, so that the answer
// holds whatever else exists: a text that would climb above the root, or
// is absolute, is outside.
func resolveLink(tree map[string]string, rel string) resolution {
	hops := 0
	var follow func(dir []string, text string) ([]string, resolution)
	follow = func(dir []string, text string) ([]string, resolution) {
		if path.IsAbs(text) {
			return nil, resolvedOutside
		}
		at := slices.Clip(dir)
		for c := range strings.SplitSeq(text, "/") {
			switch c {
			case "", ".":
			case "..":
				if len(at) == 0 {
					return nil, resolvedOutside
				}
				at = slices.Clip(at[:len(at)-1])
			default:
				at = append(at, c)
				t, ok := tree[strings.Join(at, "/")]
				if !ok {
					continue
				}
				if hops++; hops > maxLinkHops {
					return nil, resolvedLoop
				}
				var r resolution
				if at, r = follow(at[:len(at)-1], t); r != resolvedInside {
					return nil, r
				}
			}
		}
		return at, resolvedInside
	}
	dir := strings.Split(rel, "/")
	_, r := follow(dir[:len(dir)-1], tree[rel])
	return r
}

// symlinkTarget decides what a symlink at p (a path under /assets) pointing
// at linkname becomes. Links are never followed, neither here nor when
// flattening. A link is kept only when its target, resolved lexically from
// the link's folder, lies inside /assets; it is then written in normal form,
// relative to the link's folder (an absolute /assets/x becomes, say, "../x"),
// so that it stays inside the folder the tar is extracted to. Links that
// point outside /assets, or climb above the image root, are dropped.
func symlinkTarget(p, linkname string) (string, bool) {
	if linkname == "" {
		return "", false
	}
	dir := path.Dir(p)
	var resolved string
	if path.IsAbs(linkname) {
		resolved = strings.TrimPrefix(path.Clean(linkname), "/")
	} else {
		resolved = path.Clean(dir + "/" + linkname)
	}
	if !underAssets(resolved) {
		return "", false
	}
	return relPath(dir, resolved), true
}

// relPath is the relative slash path from directory from to to (both from
// the same root, cleaned, no leading "/").
func relPath(from, to string) string {
	fs, ts := strings.Split(from, "/"), strings.Split(to, "/")
	i := 0
	for i < len(fs) && i < len(ts) && fs[i] == ts[i] {
		i++
	}
	parts := make([]string, 0, len(fs)-i+len(ts)-i)
	for range fs[i:] {
		parts = append(parts, "..")
	}
	parts = append(parts, ts[i:]...)
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}
