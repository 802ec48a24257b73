package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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
