package assets

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/internal/atomicfile"
)

// Building a release's tar: pulling the image, flattening its /assets, writing the tar and its checksum atomically.

// Ensure makes sure the tar of appID at commit is on disk, building it from
// image (a registry reference, normally host:port/repo@sha256:…) if it is
// not. Concurrent calls for the same app and commit share one build. If ctx
// ends first Ensure returns its error; the build goes on for the others
// (until Options.BuildTimeout or Close).
func (c *Cache) Ensure(ctx context.Context, appID int64, commit, image string) error {
	if err := validKey(appID, commit); err != nil {
		return err
	}
	if c.Has(appID, commit) {
		c.metrics.hits.Inc()
		return nil
	}
	key := strconv.FormatInt(appID, 10) + "/" + commit
	c.mu.Lock()
	refused := c.tooLarge[key]
	c.mu.Unlock()
	if refused != nil {
		return refused
	}
	c.metrics.misses.Inc()
	ch := c.flights.DoChan(key, func() (any, error) {
		if c.Has(appID, commit) { // finished by a flight that just landed
			return nil, nil
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		c.builds.Add(1)
		c.mu.Unlock()
		defer c.builds.Done()
		err := c.build(appID, commit, image)
		if errors.Is(err, ErrTooLarge) {
			// Pulling it again would give the same tar: remember the
			// failure for the life of the cache (a restarted proxy, maybe
			// with a larger ASSET_MAX_BYTES, tries once more).
			err = notRetried{err}
			c.mu.Lock()
			c.tooLarge[key] = err
			c.mu.Unlock()
			c.metrics.tooLarge.Inc()
			c.log.Error("asset tar over ASSET_MAX_BYTES: this release is not pulled again", "app", appID, "commit", commit,
				"max_bytes", c.opts.MaxBytes)
		}
		return nil, err
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// build pulls image and writes the tar, retrying as opts.Retry allows.
func (c *Cache) build(appID int64, commit, image string) (err error) {
	start := c.now()
	log := c.log.With("app", appID, "commit", commit, "image", image)
	defer func() {
		c.metrics.buildDuration.Observe(c.now().Sub(start).Seconds())
		if err != nil {
			c.metrics.builds.WithLabelValues("failure").Inc()
			log.Error("asset build failed", "err", err)
			return
		}
		c.metrics.builds.WithLabelValues("success").Inc()
	}()
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.BuildTimeout)
	defer cancel()
	ref, err := c.parseRef(image)
	if err != nil {
		return err
	}
	wait := c.opts.Retry.Min
	for attempt := 1; ; attempt++ {
		var st flattenStats
		st, err = c.watchedAttempt(ctx, ref, appID, commit)
		if err == nil {
			for reason, n := range st.DroppedBy {
				c.metrics.dropped.WithLabelValues(reason).Add(float64(n))
			}
			log.Info("assets ready", "entries", st.Entries, "bytes", st.Bytes, "dropped", st.Dropped, "attempts", attempt)
			return nil
		}
		if attempt >= c.opts.Retry.Attempts || !retryable(err) {
			return fmt.Errorf("assets: app %d commit %s: %w", appID, commit, err)
		}
		log.Warn("asset build failed, retrying", "attempt", attempt, "wait", wait, "err", err)
		c.metrics.buildRetries.Inc()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("assets: app %d commit %s: %w (after: %w)", appID, commit, ctx.Err(), err)
		}
		wait = min(2*wait, c.opts.Retry.Max)
	}
}

// parseRef parses image, reaching loopback registries over plain HTTP.
func (c *Cache) parseRef(image string) (name.Reference, error) {
	ref, err := name.ParseReference(image, name.WeakValidation)
	if err != nil {
		return nil, permanent(fmt.Errorf("image reference %q: %w", image, err))
	}
	if c.plainHTTP(ref.Context().RegistryStr()) {
		ref, err = name.ParseReference(image, name.WeakValidation, name.Insecure)
		if err != nil {
			return nil, permanent(fmt.Errorf("image reference %q: %w", image, err))
		}
	}
	return ref, nil
}

// plainHTTP reports whether the registry host[:port] is reached over plain
// HTTP: every registry with Insecure, a loopback one, or one that
// InsecureRegistries names.
func (c *Cache) plainHTTP(hostport string) bool {
	if c.opts.Insecure || isLoopback(hostport) {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	for _, e := range c.opts.InsecureRegistries {
		bare := strings.TrimSuffix(strings.TrimPrefix(e, "["), "]")
		if strings.EqualFold(e, hostport) || strings.EqualFold(bare, host) {
			return true
		}
	}
	return false
}

// isLoopback reports whether a registry host[:port] is on this machine.
func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// progressKey carries an attempt's *progress in request contexts.
type progressKey struct{}

// progress tells whether an attempt is waiting on a silent registry: time
// spent writing or between requests does not count, only time blocked in a
// round trip or a body read.
type progress struct {
	waiting atomic.Int64 // calls blocked on the registry
	last    atomic.Int64 // Unix nanoseconds of the last answer, or of the start of waiting
}

func (p *progress) begin() {
	if p.waiting.Add(1) == 1 {
		p.last.Store(time.Now().UnixNano())
	}
}

func (p *progress) end() {
	p.last.Store(time.Now().UnixNano())
	p.waiting.Add(-1)
}

func (p *progress) stalled(now time.Time, d time.Duration) bool {
	return p.waiting.Load() > 0 && now.Sub(time.Unix(0, p.last.Load())) > d
}

// watchedAttempt runs buildOnce, abandoning it with ErrStalled when it has
// waited opts.StallTimeout for the registry without getting anything.
func (c *Cache) watchedAttempt(ctx context.Context, ref name.Reference, appID int64, commit string) (flattenStats, error) {
	p := &progress{}
	actx, cancel := context.WithCancelCause(context.WithValue(ctx, progressKey{}, p))
	defer cancel(nil)
	done := make(chan struct{})
	defer close(done)
	go func() {
		d := c.opts.StallTimeout
		t := time.NewTicker(max(d/8, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if p.stalled(now, d) {
					cancel(ErrStalled)
					return
				}
			}
		}
	}()
	st, err := c.buildOnce(actx, ref, appID, commit)
	if err != nil && !errors.Is(err, ErrStalled) && errors.Is(context.Cause(actx), ErrStalled) && ctx.Err() == nil {
		return st, fmt.Errorf("%w (%v without data): %w", ErrStalled, c.opts.StallTimeout, err)
	}
	return st, err
}

// buildOnce is one attempt: fetch the manifest, stream the layers into a
// temporary file, then move it and its checksum into place.
func (c *Cache) buildOnce(ctx context.Context, ref name.Reference, appID int64, commit string) (st flattenStats, err error) {
	desc, err := remote.Get(ref,
		remote.WithContext(ctx),
		remote.WithTransport(c.transport),
		// Retries are this package's, around the whole build.
		remote.WithRetryPredicate(func(error) bool { return false }),
		remote.WithRetryStatusCodes(),
	)
	if err != nil {
		return st, err
	}
	if d, ok := ref.(name.Digest); ok && desc.Digest.String() != d.DigestStr() {
		return st, fmt.Errorf("manifest digest %s does not match the reference's %s", desc.Digest, d.DigestStr())
	}
	img, err := desc.Image()
	if err != nil {
		return st, err
	}
	layers, err := img.Layers()
	if err != nil {
		return st, err
	}

	dir := c.appDir(appID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return st, permanent(err)
	}
	tmp, err := os.CreateTemp(dir, tmpPrefix+commit+"-*.tar")
	if err != nil {
		return st, permanent(err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o644); err != nil {
		return st, permanent(err)
	}
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(&limitWriter{w: tmp, left: c.opts.MaxBytes}, sum), 256<<10)
	st, err = flatten(ctx, layers, bw, flattenOptions{
		keepPrefix:      c.opts.Violations.On("assets-keep-prefix"),
		ignoreWhiteouts: c.opts.Violations.On("assets-ignore-whiteouts"),
		lowerWins:       c.opts.Violations.On("assets-lower-layer-wins"),
		dropDotfiles:    c.opts.Violations.On("assets-drop-dotfiles"),
		rootOpaque:      c.opts.Violations.On("assets-root-opaque-ignored"),
		unsafeLinks:     c.opts.Violations.On("assets-unsafe-links"),
		lexicalLinks:    c.opts.Violations.On("assets-lexical-links"),
		keepSetuid:      c.opts.Violations.On("assets-keep-setuid"),
		keepDevices:     c.opts.Violations.On("assets-keep-devices"),
	})
	if err != nil {
		return st, err
	}
	if err := bw.Flush(); err != nil {
		return st, err
	}
	if err := tmp.Sync(); err != nil {
		return st, permanent(err)
	}
	if err := tmp.Close(); err != nil {
		return st, permanent(err)
	}
	// The checksum goes first: a tar under its final name always has one
	// (and a checksum left alone by a crash is rewritten by the next build).
	if err := atomicfile.Write(c.sumPath(appID, commit), []byte(hex.EncodeToString(sum.Sum(nil))+"\n")); err != nil {
		return st, permanent(err)
	}
	if err := os.Rename(tmp.Name(), c.TarPath(appID, commit)); err != nil {
		return st, permanent(err)
	}
	if err := syncDir(dir); err != nil {
		return st, permanent(err)
	}
	return st, nil
}

// syncDir fsyncs a directory so that renames in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// limitWriter writes to w until left bytes are used up, then fails with
// ErrTooLarge. Errors of w are permanent.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, ErrTooLarge
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	if err != nil {
		return n, permanent(err)
	}
	return n, nil
}

// countingTransport counts the bytes of response bodies.
type countingTransport struct {
	inner http.RoundTripper
	n     prometheus.Counter
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	p, _ := r.Context().Value(progressKey{}).(*progress)
	if p != nil {
		p.begin()
	}
	resp, err := t.inner.RoundTrip(r)
	if p != nil {
		p.end()
	}
	if err == nil && resp.Body != nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: t.n, p: p}
	}
	return resp, err
}

// countingBody counts bytes read and reports reads to the attempt's progress.
type countingBody struct {
	io.ReadCloser
	n prometheus.Counter
	p *progress // nil outside builds
}

func (b *countingBody) Read(buf []byte) (int, error) {
	if b.p != nil {
		b.p.begin()
		defer b.p.end()
	}
	n, err := b.ReadCloser.Read(buf)
	if n > 0 {
		b.n.Add(float64(n))
	}
	return n, err
}
