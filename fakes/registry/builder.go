package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// AssetsDir is the folder of the image whose contents a dependent app's
// assets are: Layer.Files, Layer.Delete and Layer.Opaque are relative to it.
const AssetsDir = "assets"

const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
)

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

// Format selects the media types of built images.
type Format int

const (
	// FormatDocker is Docker image manifest v2 schema 2, the default: what
	// every Docker daemon pulls.
	FormatDocker Format = iota
	// FormatOCI is the OCI image manifest.
	FormatOCI
)

// BuilderOptions configure a Builder. The zero value of each field is its
// documented default.
type BuilderOptions struct {
	// Registry is the host:port images are pushed to and that appears in
	// the returned references ("127.0.0.1:48481"). Required.
	Registry string
	// Transport carries the push. Nil means remote.DefaultTransport (real
	// network). Use HandlerTransport to push into a Server in-process.
	Transport http.RoundTripper
	// Format of the manifests and configs; zero is FormatDocker.
	Format Format
	// Created is the creation time recorded in the image config; zero means
	// the Unix epoch, so that the same layers always give the same digest.
	Created time.Time
	// Token is the registry's admin token (Options.AdminToken), sent with
	// every request of a push; empty sends none.
	Token string
}

// Builder turns asset files into container images and pushes them to a
// registry. It is safe for concurrent use.
type Builder struct {
	opts BuilderOptions
}

// NewBuilder returns a Builder for opts.
func NewBuilder(opts BuilderOptions) *Builder {
	if opts.Created.IsZero() {
		opts.Created = time.Unix(0, 0).UTC()
	}
	return &Builder{opts: opts}
}

// Registry returns the host:port the builder pushes to.
func (b *Builder) Registry() string { return b.opts.Registry }

// Build builds an image from layers (bottom first) and pushes it to repo
// ("apps/1234") by digest. It returns the digest reference
// "host:port/repo@sha256:…" and the manifest digest. The same layers and
// options always give the same digest.
func (b *Builder) Build(ctx context.Context, repo string, layers ...Layer) (ref string, digest v1.Hash, err error) {
	img, err := b.Image(layers...)
	if err != nil {
		return "", v1.Hash{}, err
	}
	return b.Push(ctx, repo, img)
}

// BuildFromDir is Build with a single layer holding the files under dir
// (see FilesFromDir) as /assets.
func (b *Builder) BuildFromDir(ctx context.Context, repo, dir string) (ref string, digest v1.Hash, err error) {
	files, err := FilesFromDir(dir)
	if err != nil {
		return "", v1.Hash{}, err
	}
	return b.Build(ctx, repo, Layer{Files: files})
}

// Push pushes img to repo by digest and returns its digest reference and
// manifest digest.
func (b *Builder) Push(ctx context.Context, repo string, img v1.Image) (ref string, digest v1.Hash, err error) {
	if b.opts.Registry == "" {
		return "", v1.Hash{}, errors.New("registry: builder has no Registry")
	}
	digest, err = img.Digest()
	if err != nil {
		return "", v1.Hash{}, fmt.Errorf("registry: image digest: %w", err)
	}
	d, err := name.NewDigest(b.opts.Registry+"/"+repo+"@"+digest.String(), name.Insecure, name.StrictValidation)
	if err != nil {
		return "", v1.Hash{}, fmt.Errorf("registry: reference for %q: %w", repo, err)
	}
	inner := b.opts.Transport
	if inner == nil {
		inner = remote.DefaultTransport
	}
	ro := []remote.Option{remote.WithContext(ctx), remote.WithAuth(authn.Anonymous), remote.WithTransport(builderTransport{inner, b.opts.Token})}
	if err := remote.Write(d, img, ro...); err != nil {
		return "", v1.Hash{}, fmt.Errorf("registry: push %s: %w", d, err)
	}
	return d.String(), digest, nil
}

// Image builds the image of layers (bottom first) with the builder's format
// and a linux/amd64 config, without pushing it.
func (b *Builder) Image(layers ...Layer) (v1.Image, error) {
	manifestMT, configMT, layerMT := types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer
	if b.opts.Format == FormatOCI {
		manifestMT, configMT, layerMT = types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer
	}
	created := v1.Time{Time: b.opts.Created}
	adds := make([]mutate.Addendum, 0, len(layers))
	for i, l := range layers {
		raw, err := l.Tar()
		if err != nil {
			return nil, fmt.Errorf("registry: layer %d: %w", i, err)
		}
		gz, err := gzipBytes(raw)
		if err != nil {
			return nil, fmt.Errorf("registry: layer %d: %w", i, err)
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(gz)), nil
		}, tarball.WithMediaType(layerMT))
		if err != nil {
			return nil, fmt.Errorf("registry: layer %d: %w", i, err)
		}
		adds = append(adds, mutate.Addendum{
			Layer:     layer,
			MediaType: layerMT,
			History:   v1.History{Created: created, CreatedBy: fmt.Sprintf("depharness fake registry: layer %d", i)},
		})
	}
	base, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      created,
		Config: v1.Config{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd:        []string{"/bin/true"},
			WorkingDir: "/",
		},
		RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, fmt.Errorf("registry: config: %w", err)
	}
	base = mutate.MediaType(base, manifestMT)
	base = mutate.ConfigMediaType(base, configMT)
	img, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, fmt.Errorf("registry: append layers: %w", err)
	}
	return img, nil
}

// Image builds the image of layers with the default options (Docker
// schema 2, linux/amd64, created at the Unix epoch).
func Image(layers ...Layer) (v1.Image, error) {
	return NewBuilder(BuilderOptions{}).Image(layers...)
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
	deleted := map[string]bool{}
	for _, p := range l.Delete {
		c, err := cleanAssetPath(p, false)
		if err != nil {
			return nil, err
		}
		if _, ok := files[c]; ok {
			return nil, fmt.Errorf("path %q both written and deleted in one layer", c)
		}
		deleted[c] = true
	}
	opaque := map[string]bool{}
	for _, p := range l.Opaque {
		c, err := cleanAssetPath(p, true)
		if err != nil {
			return nil, err
		}
		if _, ok := files[c]; ok {
			return nil, fmt.Errorf("opaque directory %q is a file of the same layer", c)
		}
		opaque[c] = true
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
			base, dir := path.Base(rel), path.Dir(rel)
			if dir == "." {
				dir = ""
			}
			switch {
			case base == opaqueWhiteout:
				removeBelow(dir)
			case strings.HasPrefix(base, whiteoutPrefix):
				if target := path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix)); target == "" {
					removeBelow("") // ".wh." in /assets names /assets itself
				} else if target != ".." && !strings.HasPrefix(target, "../") {
					removeTree(target)
				}
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

// BuilderHeader marks the builder's own requests. The fault knobs leave
// them alone, so that releases can be pushed while pulls are failing.
const BuilderHeader = "Depharness-Image-Builder"

type builderTransport struct {
	inner http.RoundTripper
	token string
}

func (t builderTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Header.Set(BuilderHeader, "1")
	if t.token != "" {
		r.Header.Set("Authorization", "Bearer "+t.token)
	}
	return t.inner.RoundTrip(r)
}
