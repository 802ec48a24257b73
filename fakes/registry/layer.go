package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Layers: what one holds, how it is written as a tar, and how one is read from
// a folder.

// Layer is one image layer, described by what it does to /assets.
//
// In the layer's tar the whiteouts come first, then the files (with their
// parent directories), then Raw in the order given. As in the OCI image
// spec, the whiteouts of a layer hide content of lower layers only.
type Layer struct {
	// Files maps a path relative to /assets ("firmware.bin", "sub/x.hex",
	// ".hidden") to its contents. Parent directories are created. A file
	// overwrites the same path of a lower layer.
	Files map[string][]byte
	// Delete lists paths relative to /assets (files or directories) that
	// this layer removes from lower layers, each as a whiteout entry
	// ".wh.<name>" in its parent directory. The parent directories are
	// written as directory entries, so they replace a lower layer's file at
	// their paths: Delete "d/e/z" removes a lower file "d/e".
	Delete []string
	// Opaque lists directories relative to /assets ("" or "." for /assets
	// itself) whose lower-layer content this layer hides, each as an opaque
	// whiteout ".wh..wh..opq" inside the directory (written, with its
	// parents, as directory entries).
	Opaque []string
	// Raw entries are written to the layer's tar as they are, with
	// arbitrary names ("assets/../escape", "/assets/x", "etc/passwd") and
	// types (symlinks, hard links), so tests can feed a consumer hostile or
	// unusual layers.
	Raw []RawEntry
}

// RawEntry is one tar entry written verbatim into a layer: any type
// (tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock,
// tar.TypeFifo, ...) and any mode bits, setuid, setgid and sticky included.
type RawEntry struct {
	Name     string // the tar member name, unmodified
	Type     byte   // tar type flag; 0 means tar.TypeReg
	Linkname string // target of a symlink or hard link
	Data     []byte // contents of a regular file
	Mode     int64  // mode bits (0o4755 is setuid); 0 means 0o644 (0o755 for a directory)
	// Devmajor and Devminor number a character or block device.
	Devmajor, Devminor int64
}

func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// cleanAssetPath validates a path relative to /assets and returns it clean.
// dirOK allows "" and "." for /assets itself (returned as "").
func cleanAssetPath(p string, dirOK bool) (string, error) {
	c := path.Clean(strings.ReplaceAll(p, "\\", "/"))
	switch {
	case c == "." && dirOK:
		return "", nil
	case c == "." || p == "":
		return "", fmt.Errorf("empty path %q", p)
	case path.IsAbs(c):
		return "", fmt.Errorf("path %q must be relative to /%s", p, AssetsDir)
	case c == ".." || strings.HasPrefix(c, "../"):
		return "", fmt.Errorf("path %q escapes /%s", p, AssetsDir)
	}
	return c, nil
}

// cleanPathSet cleans paths as cleanAssetPath does into a set, refusing
// with clash (which formats the path) any that is one of files.
func cleanPathSet(paths []string, dirOK bool, files map[string][]byte, clash string) (map[string]bool, error) {
	set := make(map[string]bool, len(paths))
	for _, p := range paths {
		c, err := cleanAssetPath(p, dirOK)
		if err != nil {
			return nil, err
		}
		if _, ok := files[c]; ok {
			return nil, fmt.Errorf(clash, c)
		}
		set[c] = true
	}
	return set, nil
}

// Tar returns the layer's uncompressed tar. It fails on a Files, Delete or
// Opaque path that is empty, absolute or escapes /assets, on a file whose
// name is a whiteout (use Delete or Opaque), and where the outcome would
// depend on the consumer:
//   - a path that is both a file and a directory of the layer ("d/e" and
//     "d/e/z" in Files, a Delete or Opaque path under a file): no extraction
//     can create both;
//   - a path both written and deleted by the layer;
//   - a deleted path that is also a directory of the layer (Delete "d" with
//     Files "d/x", Delete "d/x" or Opaque "d"): the OCI rule says the
//     whiteout hides lower layers only, but ggcr's mutate.Extract lets it
//     hide the layer's own entries too, and Docker on overlayfs fails to
//     create the whiteout over the layer's directory.
//
// Repeated Delete or Opaque paths are written once.
func (l Layer) Tar() ([]byte, error) {
	files := make(map[string][]byte, len(l.Files))
	for p, data := range l.Files {
		c, err := cleanAssetPath(p, false)
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(path.Base(c), whiteoutPrefix) {
			return nil, fmt.Errorf("file %q has a whiteout name: use Layer.Delete or Layer.Opaque", p)
		}
		if _, dup := files[c]; dup {
			return nil, fmt.Errorf("file %q given twice", c)
		}
		files[c] = data
	}
	deleted, err := cleanPathSet(l.Delete, false, files, "path %q both written and deleted in one layer")
	if err != nil {
		return nil, err
	}
	opaque, err := cleanPathSet(l.Opaque, true, files, "opaque directory %q is a file of the same layer")
	if err != nil {
		return nil, err
	}

	// The directories the layer's tar holds (relative to /assets, "" for
	// /assets itself), each with the first path that needs it.
	needs := map[string]string{"": ""}
	need := func(dir, by string) {
		if _, ok := needs[dir]; !ok {
			needs[dir] = by
		}
	}
	parents := func(c string) {
		for a := path.Dir(c); a != "."; a = path.Dir(a) {
			need(a, c)
		}
	}
	for _, c := range slices.Sorted(maps.Keys(files)) {
		parents(c)
	}
	for _, c := range slices.Sorted(maps.Keys(deleted)) {
		parents(c)
	}
	for _, c := range slices.Sorted(maps.Keys(opaque)) {
		if c != "" {
			need(c, path.Join(c, opaqueWhiteout))
			parents(c)
		}
	}
	for _, c := range slices.Sorted(maps.Keys(files)) {
		if by, ok := needs[c]; ok {
			return nil, fmt.Errorf("path %q is both a file and a directory of the same layer (the directory holds %q)", c, by)
		}
	}
	for _, c := range slices.Sorted(maps.Keys(deleted)) {
		if by, ok := needs[c]; ok {
			return nil, fmt.Errorf("deleted path %q is also a directory of the same layer (it holds %q): a whiteout hides lower layers only, consumers disagree on such a layer", c, by)
		}
	}

	var whiteouts []string // tar names
	for c := range deleted {
		whiteouts = append(whiteouts, path.Join(AssetsDir, path.Dir(c), whiteoutPrefix+path.Base(c)))
	}
	for c := range opaque {
		whiteouts = append(whiteouts, path.Join(AssetsDir, c, opaqueWhiteout))
	}
	sort.Strings(whiteouts)

	dirs := make(map[string]bool, len(needs))
	for d := range needs {
		dirs[path.Join(AssetsDir, d)] = true
	}
	names := slices.Sorted(maps.Keys(files))
	dirNames := make([]string, 0, len(dirs))
	for d := range dirs {
		dirNames = append(dirNames, d)
	}
	sort.Strings(dirNames)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range dirNames {
		if err := writeEntry(tw, RawEntry{Name: d + "/", Type: tar.TypeDir}); err != nil {
			return nil, err
		}
	}
	for _, w := range whiteouts {
		if err := writeEntry(tw, RawEntry{Name: w}); err != nil {
			return nil, err
		}
	}
	for _, c := range names {
		if err := writeEntry(tw, RawEntry{Name: path.Join(AssetsDir, c), Data: files[c]}); err != nil {
			return nil, err
		}
	}
	for _, r := range l.Raw {
		if err := writeEntry(tw, r); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// entryEpoch is the modification time of every entry, so that layers are
// reproducible.
var entryEpoch = time.Unix(0, 0).UTC()

func writeEntry(tw *tar.Writer, e RawEntry) error {
	typ := e.Type
	if typ == 0 {
		typ = tar.TypeReg
	}
	mode := e.Mode
	if mode == 0 {
		mode = 0o644
		if typ == tar.TypeDir {
			mode = 0o755
		}
	}
	h := &tar.Header{
		Name:     e.Name,
		Typeflag: typ,
		Linkname: e.Linkname,
		Mode:     mode,
		ModTime:  entryEpoch,
		Uname:    "root",
		Gname:    "root",
	}
	if typ == tar.TypeReg {
		h.Size = int64(len(e.Data))
	}
	if typ == tar.TypeChar || typ == tar.TypeBlock {
		h.Devmajor, h.Devminor = e.Devmajor, e.Devminor
	}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("tar entry %q: %w", e.Name, err)
	}
	if typ == tar.TypeReg {
		if _, err := tw.Write(e.Data); err != nil {
			return fmt.Errorf("tar entry %q: %w", e.Name, err)
		}
	}
	return nil
}

// FilesFromDir reads the regular files under dir, recursively, into a map
// suitable for Layer.Files (slash-separated paths relative to dir; hidden
// files included). Symlinks and other special files are an error, so that
// what is pushed is exactly what Flatten predicts.
func FilesFromDir(dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("registry: %s is not a regular file", p)
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		return nil, err
	}
	return files, nil
}

// LayerFromRoot describes a layer by paths relative to the image root
// ("assets/firmware.bin", "etc/os-release"), as the fake cloud's releases
// do: files and deletions under assets/ become Files and Delete, anything
// else (other folders, unclean or escaping names) is written verbatim as Raw
// entries (a deletion as a ".wh." entry next to its target), sorted by name
// so that the same input gives the same layer.
func LayerFromRoot(files map[string][]byte, del []string) Layer {
	var l Layer
	for p, data := range files {
		if rel, ok := assetRel(p); ok {
			if l.Files == nil {
				l.Files = map[string][]byte{}
			}
			l.Files[rel] = data
			continue
		}
		l.Raw = append(l.Raw, RawEntry{Name: p, Data: data})
	}
	for _, p := range del {
		if rel, ok := assetRel(p); ok {
			l.Delete = append(l.Delete, rel)
			continue
		}
		dir, base := path.Split(p)
		l.Raw = append(l.Raw, RawEntry{Name: dir + whiteoutPrefix + base})
	}
	sort.Slice(l.Raw, func(i, j int) bool { return l.Raw[i].Name < l.Raw[j].Name })
	return l
}

// assetRel returns p relative to /assets when p is already a clean, relative
// path strictly inside assets/ that Layer.Files accepts.
func assetRel(p string) (string, bool) {
	rel, ok := strings.CutPrefix(p, AssetsDir+"/")
	if !ok {
		return "", false
	}
	c, err := cleanAssetPath(rel, false)
	if err != nil || c != rel || strings.HasPrefix(path.Base(c), whiteoutPrefix) {
		return "", false
	}
	return c, true
}
