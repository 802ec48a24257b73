package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

var (
	crossSeed   = flag.Int64("crosscheck.seed", 0, "seed of TestFlattenMatchesExtractionOfRandomImages (0: from the clock)")
	crossImages = flag.Int("crosscheck.images", 200, "images built by TestFlattenMatchesExtractionOfRandomImages")
)

// layerEntry is one tar member of a built layer, relative to /assets.
type layerEntry struct {
	rel  string // "" is /assets itself
	kind byte   // 'd' directory, 'w' whiteout target, 'o' opaque directory, 'f' anything else
}

// layerEntries lists the members of l's tar that lie under /assets.
func layerEntries(t testing.TB, l Layer) []layerEntry {
	t.Helper()
	var out []layerEntry
	for _, h := range tarHeaders(t, l) {
		rel, ok := rawAssetPath(h.Name)
		if !ok {
			continue
		}
		switch target, opaque, whiteout := whiteoutOf(rel); {
		case whiteout && opaque:
			out = append(out, layerEntry{target, 'o'})
		case whiteout:
			out = append(out, layerEntry{target, 'w'})
		case h.Typeflag == tar.TypeDir:
			out = append(out, layerEntry{rel, 'd'})
		default:
			out = append(out, layerEntry{rel, 'f'})
		}
	}
	return out
}

// ggcrResurrects reports whether the image has the corner on which ggcr's
// mutate.Extract disagrees with Docker and overlayfs: a layer puts a
// non-directory at p, over lower-layer content below p, and an upper layer
// puts a directory at p. Extract only remembers the upper directory and so
// serves the lowest layer's content below p again; Docker and overlayfs do
// not (the middle layer removed it).
func ggcrResurrects(t testing.TB, layers []Layer) bool {
	t.Helper()
	entries := make([][]layerEntry, len(layers))
	for i, l := range layers {
		entries[i] = layerEntries(t, l)
	}
	has := func(i int, match func(layerEntry) bool) bool {
		return slices.ContainsFunc(entries[i], match)
	}
	for j := range layers {
		for _, e := range entries[j] {
			if e.kind != 'f' {
				continue
			}
			p := e.rel
			upperDir, lowerBelow := false, false
			for k := j + 1; k < len(layers); k++ {
				upperDir = upperDir || has(k, func(u layerEntry) bool { return u.rel == p && (u.kind == 'd' || u.kind == 'o') })
			}
			for i := range j {
				lowerBelow = lowerBelow || has(i, func(u layerEntry) bool { return strings.HasPrefix(u.rel, p+"/") })
			}
			if upperDir && lowerBelow {
				return true
			}
		}
	}
	return false
}

// extractLikeDocker applies the image's layers, bottom first, to a fresh
// directory under root the way Docker's UnpackLayer does on a plain
// filesystem (AUFS-style whiteouts), and returns the regular files under
// /assets. Entries are applied in tar order: a whiteout removes its target
// when it is met, an opaque marker removes what its directory holds that
// this layer has not unpacked yet, and an entry replaces whatever is at its
// path unless both are directories.
func extractLikeDocker(root string, img v1.Image) (map[string][]byte, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for i, l := range layers {
		if err := unpackLayer(root, l); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	out := map[string][]byte{}
	assets := filepath.Join(root, AssetsDir)
	err = filepath.WalkDir(assets, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == assets {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(assets, p)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = b
		return nil
	})
	return out, err
}

func unpackLayer(root string, l v1.Layer) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	unpacked := map[string]bool{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		rel := path.Clean(strings.TrimLeft(h.Name, "/"))
		if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		full := filepath.Join(root, filepath.FromSlash(rel))
		dir, base := filepath.Dir(full), filepath.Base(full)
		if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		switch {
		case base == opaqueWhiteout:
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || p == dir || unpacked[p] {
					return err
				}
				if err := os.RemoveAll(p); err != nil {
					return err
				}
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			})
			if err != nil {
				return err
			}
			continue
		case strings.HasPrefix(base, whiteoutPrefix):
			if err := os.RemoveAll(filepath.Join(dir, strings.TrimPrefix(base, whiteoutPrefix))); err != nil {
				return err
			}
			continue
		}
		if fi, err := os.Lstat(full); err == nil && !(fi.IsDir() && h.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(full); err != nil {
				return err
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(full, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			if err := os.WriteFile(full, b, 0o644); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, full); err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q: unexpected type %c", h.Name, h.Typeflag)
		}
		unpacked[full] = true
	}
}

// TestFlattenMatchesExtractionOfRandomImages builds random multi-layer
// images (files, deletions, opaque directories, raw directories, symlinks
// and files, on few paths so that files and directories replace each other
// across layers), pushes each to an in-process registry, pulls it with
// go-containerregistry's client and checks that Flatten equals the regular
// files under /assets of two extractions: Docker's layer by layer
// extraction on disk, always, and ggcr's mutate.Extract, except on images
// with the one corner where Extract disagrees with Docker (see
// ggcrResurrects; Flatten follows Docker there).
func TestFlattenMatchesExtractionOfRandomImages(t *testing.T) {
	seed := *crossSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d, %d images (rerun with -crosscheck.seed=%d)", seed, *crossImages, seed)
	rnd := rand.New(rand.NewSource(seed))
	srv, err := New(Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tr := HandlerTransport(srv)
	builders := []*Builder{
		NewBuilder(BuilderOptions{Registry: "registry.test", Transport: tr, Format: FormatDocker}),
		NewBuilder(BuilderOptions{Registry: "registry.test", Transport: tr, Format: FormatOCI}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gen := NewLayerGen(rnd)
	tmp := t.TempDir()
	withGGCR, nonEmpty := 0, 0
	for i := range *crossImages {
		layers := gen.Image(1, 5)
		want := Flatten(layers...)
		if len(want) > 0 {
			nonEmpty++
		}
		ref, _, err := builders[i%2].Build(ctx, fmt.Sprintf("apps/%d", i), layers...)
		if err != nil {
			t.Fatalf("seed %d image %d: Build: %v%s", seed, i, err, DescribeLayers(layers))
		}
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			t.Fatalf("parse %s: %v", ref, err)
		}
		img, err := remote.Image(r, remote.WithTransport(tr), remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("seed %d image %d: pull %s: %v", seed, i, ref, err)
		}
		docker, err := extractLikeDocker(filepath.Join(tmp, fmt.Sprint(i)), img)
		if err != nil {
			t.Fatalf("seed %d image %d: extracting like Docker: %v%s", seed, i, err, DescribeLayers(layers))
		}
		if !maps.EqualFunc(want, docker, bytes.Equal) {
			t.Fatalf("seed %d image %d: Flatten got %q, want %q (Docker's extraction)%s", seed, i, want, docker, DescribeLayers(layers))
		}
		if ggcrResurrects(t, layers) {
			continue
		}
		withGGCR++
		extracted, err := extractAssets(t, img)
		if err != nil {
			t.Fatalf("seed %d image %d: mutate.Extract: %v", seed, i, err)
		}
		if !maps.EqualFunc(want, extracted, bytes.Equal) {
			t.Fatalf("seed %d image %d: Flatten got %q, want %q (mutate.Extract)%s", seed, i, want, extracted, DescribeLayers(layers))
		}
	}
	t.Logf("%d images with assets; %d also checked against mutate.Extract", nonEmpty, withGGCR)
	if min := *crossImages / 2; withGGCR < min || nonEmpty < min {
		t.Errorf("coverage: got %d images checked against mutate.Extract and %d with assets, want at least %d each", withGGCR, nonEmpty, min)
	}
}
