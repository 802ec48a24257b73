package world

import (
	"archive/tar"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand"
	"os"
	"path"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/depharness/depharness/fakes/registry"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy/assets"
)

var (
	assetsCrossSeed   = flag.Int64("assets.crosscheck.seed", 0, "seed of TestProxyAssetsMatchRegistryFlatten (0: from the clock)")
	assetsCrossImages = flag.Int("assets.crosscheck.images", 100, "images built by TestProxyAssetsMatchRegistryFlatten")
)

// tarFiles reads an asset tar as an extraction sees it and returns its
// regular files. It fails on a tar that no extraction reproduces faithfully:
// a member name given twice, or a member below a non-directory member.
func tarFiles(r io.Reader) (map[string][]byte, error) {
	files := map[string][]byte{}
	nondirs := map[string]bool{}
	seen := map[string]bool{}
	err := testkit.WalkTar(r, func(h *tar.Header, body io.Reader) error {
		name := strings.TrimSuffix(h.Name, "/")
		if seen[name] {
			return fmt.Errorf("member %q appears twice", name)
		}
		seen[name] = true
		if h.Typeflag != tar.TypeDir {
			nondirs[name] = true
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(body)
			if err != nil {
				return err
			}
			files[name] = b
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for name := range seen {
		for a := path.Dir(name); a != "."; a = path.Dir(a) {
			if nondirs[a] {
				return nil, fmt.Errorf("member %q lies below the non-directory member %q", name, a)
			}
		}
	}
	return files, nil
}

// TestProxyAssetsMatchRegistryFlatten builds random multi-layer images
// (files, deletions, opaque directories, raw directories, symlinks and
// files, on few paths so that files and directories replace each other
// across layers), pushes each to a fake registry on a loopback listener,
// builds its asset tar with the reference proxy's cache, pulling over that
// listener, and checks that the tar's regular files are exactly what
// registry.Flatten (verified against Docker's layer by layer extraction)
// says a compliant supervisor serves.
func TestProxyAssetsMatchRegistryFlatten(t *testing.T) {
	seed := *assetsCrossSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	n := *assetsCrossImages
	t.Logf("seed %d, %d images (rerun with -assets.crosscheck.seed=%d)", seed, n, seed)
	rnd := rand.New(rand.NewSource(seed))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute+time.Duration(n)*100*time.Millisecond)
	defer cancel()

	log := testkit.Logger(t, slog.LevelWarn)
	reg, err := registry.New(registry.Options{Logger: log})
	if err != nil {
		t.Fatalf("registry.New: %v", err)
	}
	t.Cleanup(func() {
		if err := reg.Close(); err != nil {
			t.Errorf("registry Close: %v", err)
		}
	})
	srv, err := serve("", reg, log)
	if err != nil {
		t.Fatalf("serving the registry: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.close(); err != nil {
			t.Errorf("registry server close: %v", err)
		}
	})
	builders := []*registry.Builder{
		registry.NewBuilder(registry.BuilderOptions{Registry: srv.addr, Format: registry.FormatDocker}),
		registry.NewBuilder(registry.BuilderOptions{Registry: srv.addr, Format: registry.FormatOCI}),
	}
	cache, err := assets.New(assets.Options{Dir: t.TempDir(), Logger: log, Retry: assets.Retry{Attempts: 1}})
	if err != nil {
		t.Fatalf("assets.New: %v", err)
	}
	t.Cleanup(func() {
		if err := cache.Close(); err != nil {
			t.Errorf("cache Close: %v", err)
		}
	})

	// The images are drawn in order from the seed, then built and checked a
	// few at a time.
	gen := registry.NewLayerGen(rnd)
	nonEmpty := 0
	images := make([][]registry.Layer, n)
	for i := range images {
		images[i] = gen.Image(2, 5)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, layers := range images {
		want := registry.Flatten(layers...)
		if len(want) > 0 {
			nonEmpty++
		}
		g.Go(func() error {
			if err := checkProxyAssets(gctx, cache, builders[i%2], i, layers, want); err != nil {
				return fmt.Errorf("seed %d image %d: %w%s", seed, i, err, registry.DescribeLayers(layers))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d of %d images with assets", nonEmpty, n)
	if min := n / 2; nonEmpty < min {
		t.Errorf("coverage: got %d images with assets, want at least %d", nonEmpty, min)
	}
}

// checkProxyAssets pushes image i, has the cache build its asset tar and
// compares the tar's regular files with want.
func checkProxyAssets(ctx context.Context, cache *assets.Cache, b *registry.Builder, i int, layers []registry.Layer, want map[string][]byte) error {
	ref, _, err := b.Build(ctx, fmt.Sprintf("apps/%d", i+1), layers...)
	if err != nil {
		return fmt.Errorf("Build: %w", err)
	}
	appID, commit := int64(i+1), fmt.Sprintf("commit%d", i)
	if err := cache.Ensure(ctx, appID, commit, ref); err != nil {
		return fmt.Errorf("Ensure %s: %w", ref, err)
	}
	f, err := os.Open(cache.TarPath(appID, commit))
	if err != nil {
		return fmt.Errorf("opening the tar: %w", err)
	}
	defer f.Close()
	got, err := tarFiles(f)
	if err != nil {
		return fmt.Errorf("reading the tar: %w", err)
	}
	if !maps.EqualFunc(got, want, bytes.Equal) {
		return fmt.Errorf("proxy tar files got %q, want %q (registry.Flatten)", got, want)
	}
	return nil
}
