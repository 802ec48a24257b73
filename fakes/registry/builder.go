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
	// ".wh.<name>" in its parent directory.
	Delete []string
	// Opaque lists directories relative to /assets ("" or "." for /assets
	// itself) whose lower-layer content this layer hides, each as an opaque
	// whiteout ".wh..wh..opq" inside the directory.
	Opaque []string
	// Raw entries are written to the layer's tar as they are, with
	// arbitrary names ("assets/../escape", "/assets/x", "etc/passwd") and
	// types (symlinks, hard links), so tests can feed a consumer hostile or
	// unusual layers.
	Raw []RawEntry
}

// RawEntry is one tar entry written verbatim into a layer.
type RawEntry struct {
	Name     string // the tar member name, unmodified
	Type     byte   // tar type flag; 0 means tar.TypeReg
	Linkname string // target of a symlink or hard link
	Data     []byte // contents of a regular file
	Mode     int64  // permission bits; 0 means 0o644 (0o755 for a directory)
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
	ro := []remote.Option{remote.WithContext(ctx), remote.WithAuth(authn.Anonymous), remote.WithTransport(builderTransport{inner})}
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
// depend on the consumer: a path both written and deleted by the layer, or
// a file of the layer where it also needs a directory.
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
	// A file where the layer needs a directory (the parent of another file
	// or of a whiteout) would make the outcome depend on entry order.
	parentIsFile := func(c string) error {
		for a := path.Dir(c); a != "."; a = path.Dir(a) {
			if _, ok := files[a]; ok {
				return fmt.Errorf("path %q lies under file %q of the same layer", c, a)
			}
		}
		return nil
	}
	for c := range files {
		if err := parentIsFile(c); err != nil {
			return nil, err
		}
	}
	deleted := map[string]bool{}
	var whiteouts []string // tar names
	for _, p := range l.Delete {
		c, err := cleanAssetPath(p, false)
		if err != nil {
			return nil, err
		}
		if _, ok := files[c]; ok {
			return nil, fmt.Errorf("path %q both written and deleted in one layer", c)
		}
		if err := parentIsFile(c); err != nil {
			return nil, err
		}
		deleted[c] = true
		whiteouts = append(whiteouts, path.Join(AssetsDir, path.Dir(c), whiteoutPrefix+path.Base(c)))
	}
	for _, p := range l.Opaque {
		c, err := cleanAssetPath(p, true)
		if err != nil {
			return nil, err
		}
		if _, ok := files[c]; ok {
			return nil, fmt.Errorf("opaque directory %q is a file of the same layer", c)
		}
		if err := parentIsFile(path.Join(c, opaqueWhiteout)); err != nil {
			return nil, err
		}
		whiteouts = append(whiteouts, path.Join(AssetsDir, c, opaqueWhiteout))
	}
	sort.Strings(whiteouts)

	dirs := map[string]bool{AssetsDir: true}
	addParents := func(name string) {
		for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, w := range whiteouts {
		addParents(w)
	}
	names := make([]string, 0, len(files))
	for c := range files {
		names = append(names, c)
		addParents(path.Join(AssetsDir, c))
	}
	sort.Strings(names)
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
// It follows the OCI layer rules: a layer's whiteouts (Delete, Opaque and
// raw ".wh." entries) hide lower-layer content only, then its files are
// added, later entries winning. Raw entry names are read as a consumer
// must read them: leading "/" dropped, cleaned; a name whose cleaned path
// escapes the root or lies outside /assets contributes nothing. As when a
// layer is extracted, an entry replaces whatever was at its path (a file
// replaces a directory tree; a directory keeps the tree but replaces a
// file) and any file where one of its parent directories goes. A raw entry
// that is not a regular file (symlink, hard link, directory, device) is not
// listed itself.
func Flatten(layers ...Layer) map[string][]byte {
	out := map[string][]byte{}
	removeTree := func(p string) {
		for k := range out {
			if p == "" || k == p || strings.HasPrefix(k, p+"/") {
				delete(out, k)
			}
		}
	}
	for _, l := range layers {
		// Whiteouts first: they apply to lower layers only.
		for _, p := range l.Delete {
			if c, err := cleanAssetPath(p, false); err == nil {
				removeTree(c)
			}
		}
		for _, p := range l.Opaque {
			if c, err := cleanAssetPath(p, true); err == nil {
				removeTree(c)
			}
		}
		for _, r := range l.Raw {
			rel, ok := rawAssetPath(r.Name)
			if !ok || rel == "" {
				continue
			}
			switch base, dir := path.Base(rel), path.Dir(rel); {
			case base == opaqueWhiteout:
				if dir == "." {
					dir = ""
				}
				removeTree(dir)
			case strings.HasPrefix(base, whiteoutPrefix):
				removeTree(path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix)))
			}
		}
		// An entry replaces whatever was at its path, and a file where one
		// of its parent directories must be.
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
		for _, p := range slices.Sorted(maps.Keys(l.Files)) {
			if c, err := cleanAssetPath(p, false); err == nil {
				place(c, false)
				out[c] = bytes.Clone(l.Files[p])
			}
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

type builderTransport struct{ inner http.RoundTripper }

func (t builderTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Header.Set(BuilderHeader, "1")
	return t.inner.RoundTrip(r)
}
