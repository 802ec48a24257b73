package assets

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// assetsDir is the image folder whose contents make up the tar.
const assetsDir = "assets"

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// flattenOptions select deliberate contract violations (all off by default).
type flattenOptions struct {
	keepPrefix      bool // member names keep "assets/" (APP-ASSET-1)
	ignoreWhiteouts bool // whiteout markers are not applied (APP-ASSET-3)
	lowerWins       bool // a lower layer's version of a file wins (APP-ASSET-3)
	dropDotfiles    bool // top-level hidden entries are dropped, like `tar *` (APP-ASSET-4)
	rootOpaque      bool // an opaque marker directly in /assets is ignored (APP-ASSET-3)
	unsafeLinks     bool // symlinks and hard links are written as the layer has them (APP-ASSET-5)
	lexicalLinks    bool // links judged lexically where each stands, hard links to symlinks kept (APP-ASSET-5)
	keepSetuid      bool // setuid, setgid and sticky bits are kept (APP-ASSET-5)
	keepDevices     bool // device nodes and FIFOs are written (APP-ASSET-5)
}

// Reasons an entry under /assets is not emitted (the reason label of the
// dropped-entries metric).
const (
	dropLinkOutside  = "link-outside"    // a symlink or hard link that resolves outside the tar's root
	dropLinkLoop     = "link-loop"       // a symlink whose resolution does not end
	dropLinkConflict = "link-conflict"   // a symlink where the tar has a file or folder, or above other members
	dropLinkTarget   = "hardlink-target" // a hard link to nothing this layer put in the tar
	dropDevice       = "device"          // a character or block device node
	dropFifo         = "fifo"            // a named pipe
	dropOtherType    = "other-type"      // any other type of entry
)

// flattenStats says what a flatten emitted and dropped.
type flattenStats struct {
	Entries   int            // members written
	Dropped   int            // entries under /assets that were not emitted (escaping links, devices, ...)
	DroppedBy map[string]int // Dropped by reason (the drop* constants)
	Bytes     int64          // file content bytes written
}

func (s *flattenStats) drop(reason string) {
	s.Dropped++
	if s.DroppedBy == nil {
		s.DroppedBy = map[string]int{}
	}
	s.DroppedBy[reason]++
}

// upper records a path seen in a layer processed earlier (an upper layer),
// or in the layer being processed.
type upper struct {
	rank    int  // the layer's rank: higher is upper
	dir     bool // it is a directory (a non-directory hides everything below it)
	emitted bool // it was written to the output
	link    int  // 1 + the index in flattener.links of the symlink held here, 0 if none
}

// flattener streams the union of an image's layers, restricted to /assets,
// into a tar. Layers are read once each, from the top one down: an entry is
// written when no upper layer has the same path, deleted it (whiteout), made
// a parent opaque or replaced a parent with a non-directory; a non-directory
// also needs that no upper layer has entries below its path (which make the
// path a directory of that layer, with or without an entry of its own). What
// a layer removes stays removed whatever upper layers do: a layer's
// non-directory at p hides lower layers' entries below p even when it is
// itself hidden by an upper layer's directory at p. Member order in
// the output follows that walk; extraction does not depend on it, since no
// path is written twice except where one layer itself repeats a path (then
// the layer's order, last wins, is kept). Memory grows with the number of
// paths under /assets, never with file sizes.
type flattener struct {
	opts      flattenOptions
	tw        *tar.Writer
	buf       []byte
	entries   map[string]upper // path (from the image root, no leading "/") → upmost version
	whiteouts map[string]int   // path deleted by a whiteout → rank of the layer holding it
	opaques   map[string]int   // directory made opaque → rank of the layer holding the marker
	nondirs   map[string]int   // path of a non-directory, emitted or not → rank of the upmost layer with one
	impliedBy map[string]int   // path with an entry below it, emitted or not → rank of the upmost such layer
	written   map[string]bool  // path of a member written (not a pending link)
	links     []pendingLink
	stats     flattenStats
}

// flatten writes the tar of the /assets folder of the image made of layers
// (bottom layer first) to w. Reading a layer to its end makes the registry
// client verify the blob's digest, so a corrupt blob is an error here.
func flatten(ctx context.Context, layers []v1.Layer, w io.Writer, opts flattenOptions) (flattenStats, error) {
	f := &flattener{
		opts:      opts,
		tw:        tar.NewWriter(w),
		buf:       make([]byte, 256<<10),
		entries:   map[string]upper{},
		whiteouts: map[string]int{},
		opaques:   map[string]int{},
		nondirs:   map[string]int{},
		impliedBy: map[string]int{},
		written:   map[string]bool{},
	}
	n := len(layers)
	for k := range n {
		i := n - 1 - k // top layer first
		if opts.lowerWins {
			i = k
		}
		if err := f.layer(ctx, layers[i], n-1-k); err != nil {
			return f.stats, fmt.Errorf("layer %d of %d: %w", i+1, n, err)
		}
	}
	if err := f.writeLinks(); err != nil {
		return f.stats, err
	}
	if err := f.tw.Close(); err != nil {
		return f.stats, err
	}
	return f.stats, nil
}

// layer streams one layer with the given rank.
func (f *flattener) layer(ctx context.Context, l v1.Layer, rank int) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := f.entry(tr, hdr, rank); err != nil {
			return err
		}
	}
	// Read past the tar's end-of-archive blocks to the end of the blob: the
	// digest is checked there.
	if _, err := io.CopyBuffer(io.Discard, rc, f.buf); err != nil {
		return err
	}
	return nil
}

// cleanName turns a member name into a path from the image root without a
// leading "/" ("" is the root). ok is false for names that climb above the
// root ("../x").
func cleanName(name string) (p string, ok bool) {
	c := path.Clean(strings.TrimLeft(name, "/"))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", false
	}
	if c == "." {
		return "", true
	}
	return c, true
}

// underAssets reports whether p is /assets or below it.
func underAssets(p string) bool {
	return p == assetsDir || strings.HasPrefix(p, assetsDir+"/")
}

// hidden reports whether the version of p (a directory if dir) in the layer
// of the given rank is shadowed by an upper layer.
func (f *flattener) hidden(p string, dir bool, rank int) bool {
	if e, ok := f.entries[p]; ok && e.rank > rank {
		return true
	}
	// An upper layer has entries below p, so p is a directory there, which
	// replaces a non-directory. An upper directory entry at p, if any, is in
	// entries; this also covers layers that write no entry for p itself.
	if r, ok := f.impliedBy[p]; ok && r > rank && !dir {
		return true
	}
	if r, ok := f.whiteouts[p]; ok && r > rank {
		return true
	}
	// Every strict ancestor: the root (""), then each prefix ending before a "/".
	if f.hidesBelow("", rank) {
		return true
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && f.hidesBelow(p[:i], rank) {
			return true
		}
	}
	return false
}

// hidesBelow reports whether an upper layer than rank deleted directory a,
// made it opaque or replaced it with a non-directory. The non-directory
// counts even when it was not emitted (an upper layer has a again, say as a
// directory): its layer removed the lower tree at a, and upper layers do not
// bring it back. A non-directory at a in the same layer, earlier in its tar,
// also hides what comes below it: extraction could not create it (and a
// symlink is never followed).
func (f *flattener) hidesBelow(a string, rank int) bool {
	if r, ok := f.whiteouts[a]; ok && r > rank {
		return true
	}
	if r, ok := f.opaques[a]; ok && r > rank {
		return true
	}
	if r, ok := f.nondirs[a]; ok && r > rank {
		return true
	}
	e, ok := f.entries[a]
	return ok && e.rank >= rank && !e.dir
}

// entry handles one member of a layer.
func (f *flattener) entry(tr *tar.Reader, hdr *tar.Header, rank int) error {
	p, ok := cleanName(hdr.Name)
	if !ok {
		return nil // escapes the image root: never part of any folder
	}
	parent, base := path.Split(p)
	parent = strings.TrimSuffix(parent, "/")

	if strings.HasPrefix(base, whiteoutPrefix) {
		if f.opts.ignoreWhiteouts {
			return nil
		}
		if base == whiteoutOpaque {
			if f.opts.rootOpaque && parent == assetsDir {
				return nil
			}
			if _, seen := f.opaques[parent]; !seen && (parent == "" || underAssets(parent)) {
				f.opaques[parent] = rank
			}
			return nil
		}
		target := path.Join(parent, strings.TrimPrefix(base, whiteoutPrefix))
		if _, seen := f.whiteouts[target]; !seen && underAssets(target) {
			f.whiteouts[target] = rank
		}
		return nil
	}

	if !underAssets(p) {
		return nil
	}
	isDir := hdr.Typeflag == tar.TypeDir
	f.mark(p, isDir, rank)
	if f.hidden(p, isDir, rank) {
		return nil
	}
	// A later entry of the same layer replaces a symlink held for the end.
	if e, ok := f.entries[p]; ok && e.link > 0 {
		f.links[e.link-1].superseded = true
	}
	f.entries[p] = upper{rank: rank, dir: isDir}
	if p == assetsDir {
		return nil // the folder itself: members are relative to it
	}
	rel := strings.TrimPrefix(p, assetsDir+"/")
	if f.opts.dropDotfiles && strings.HasPrefix(rel, ".") {
		return nil
	}

	mode := hdr.Mode & 0o777
	if f.opts.keepSetuid {
		mode = hdr.Mode & 0o7777
	}
	out := &tar.Header{
		Typeflag: hdr.Typeflag,
		Name:     f.memberName(rel),
		Mode:     mode,
		ModTime:  hdr.ModTime,
		Uid:      hdr.Uid,
		Gid:      hdr.Gid,
		Uname:    hdr.Uname,
		Gname:    hdr.Gname,
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		out.Name += "/"
	case tar.TypeReg:
		out.Size = hdr.Size
	case tar.TypeSymlink:
		switch {
		case f.opts.unsafeLinks:
			out.Linkname = hdr.Linkname
		case f.opts.lexicalLinks:
			target, ok := symlinkTarget(p, hdr.Linkname)
			if !ok {
				f.stats.drop(dropLinkOutside)
				return nil
			}
			out.Linkname = target
		default:
			f.hold(p, hdr.Linkname, out, rank)
			return nil
		}
	case tar.TypeLink:
		t, ok := cleanName(hdr.Linkname)
		if f.opts.unsafeLinks {
			if !ok || !underAssets(t) || t == assetsDir {
				f.stats.drop(dropLinkOutside)
				return nil
			}
			out.Linkname = f.memberName(strings.TrimPrefix(t, assetsDir+"/"))
			break
		}
		e, seen := f.entries[t]
		// A hard link is kept when its target is a file or symlink of this
		// same layer already taken (tar order puts the target first);
		// anything else would point at content that is not in the output.
		if !ok || t == assetsDir || !underAssets(t) || !seen || e.rank != rank || e.dir {
			f.stats.drop(dropLinkTarget)
			return nil
		}
		if e.link > 0 && !f.opts.lexicalLinks {
			// Extracted, a hard link to a symlink is that symlink at the
			// new place: it is written as one, and judged from there.
			f.hold(p, f.links[e.link-1].text, &tar.Header{
				Name: out.Name, Mode: out.Mode, ModTime: out.ModTime,
				Uid: out.Uid, Gid: out.Gid, Uname: out.Uname, Gname: out.Gname,
			}, rank)
			return nil
		}
		if !e.emitted {
			f.stats.drop(dropLinkTarget)
			return nil
		}
		out.Linkname = f.memberName(strings.TrimPrefix(t, assetsDir+"/"))
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if !f.opts.keepDevices {
			if hdr.Typeflag == tar.TypeFifo {
				f.stats.drop(dropFifo)
			} else {
				f.stats.drop(dropDevice)
			}
			return nil
		}
		out.Devmajor, out.Devminor = hdr.Devmajor, hdr.Devminor
	default:
		f.stats.drop(dropOtherType)
		return nil
	}
	if err := f.tw.WriteHeader(out); err != nil {
		return err
	}
	if out.Size > 0 {
		n, err := io.CopyBuffer(f.tw, tr, f.buf)
		f.stats.Bytes += n
		if err != nil {
			return err
		}
	}
	f.entries[p] = upper{rank: rank, dir: isDir, emitted: true}
	f.written[p] = true
	f.stats.Entries++
	return nil
}

// mark records what the layer of the given rank does to lower layers by
// having an entry at p (under /assets), whether or not the entry is emitted:
// a non-directory removes the lower tree at p (nondirs), and p's folders
// under /assets are directories of the layer, replacing lower non-directories
// at their paths (impliedBy). Layers come top down, so the first rank
// recorded for a path is the upmost; once a folder is recorded, so are its
// own folders, and the walk up stops there.
func (f *flattener) mark(p string, dir bool, rank int) {
	if _, seen := f.nondirs[p]; !seen && !dir {
		f.nondirs[p] = rank
	}
	for a := path.Dir(p); underAssets(a); a = path.Dir(a) {
		if _, seen := f.impliedBy[a]; seen {
			break
		}
		f.impliedBy[a] = rank
	}
}

// memberName is the output name of a path relative to /assets.
func (f *flattener) memberName(rel string) string {
	if f.opts.keepPrefix {
		return assetsDir + "/" + rel
	}
	return rel
}
