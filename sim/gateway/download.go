package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/depharness/depharness/sim/fleet"
)

// Downloading each release's assets once.

// firmware returns the release (appID, commit), downloading it at most
// once however many devices ask at the same time; the result is kept in
// memory for the devices that ask later (only the latest commit of each
// app is kept).
func (g *Gateway) firmware(ctx context.Context, appID int64, commit string) (fleet.Firmware, error) {
	key := firmwareKey(appID, commit)
	if fw, ok := g.cached(key); ok {
		return fw, nil
	}
	g.mu.Lock()
	runCtx := g.runCtx
	g.mu.Unlock()
	if runCtx == nil {
		runCtx = ctx
	}
	ch := g.sf.DoChan(key, func() (any, error) {
		// The download serves every waiting device: it is bound to Run's
		// context, not to the first caller's.
		return g.download(runCtx, appID, commit)
	})
	select {
	case <-ctx.Done():
		return fleet.Firmware{}, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return fleet.Firmware{}, r.Err
		}
		return r.Val.(fleet.Firmware), nil
	}
}

// firmwareKey is the cache key of release (appID, commit).
func firmwareKey(appID int64, commit string) string {
	return strconv.FormatInt(appID, 10) + "/" + commit
}

// cached is the release of key if the cache holds it.
func (g *Gateway) cached(key string) (fleet.Firmware, bool) {
	g.cacheMu.Lock()
	defer g.cacheMu.Unlock()
	fw, ok := g.cache[key]
	return fw, ok
}

func (g *Gateway) download(ctx context.Context, appID int64, commit string) (fleet.Firmware, error) {
	key := firmwareKey(appID, commit)
	if fw, ok := g.cached(key); ok {
		return fw, nil
	}
	a, err := g.opts.Client.Assets(ctx, appID, commit, nil)
	if err != nil {
		return fleet.Firmware{}, err
	}
	defer a.Close()
	tar, err := io.ReadAll(io.LimitReader(a, g.opts.MaxAssetBytes+1))
	if err != nil {
		return fleet.Firmware{}, fmt.Errorf("downloading assets of %s: %w", key, err)
	}
	if int64(len(tar)) > g.opts.MaxAssetBytes {
		return fleet.Firmware{}, fmt.Errorf("assets of %s are larger than %d bytes", key, g.opts.MaxAssetBytes)
	}
	g.metrics.AssetDownloads.Inc()
	g.metrics.AssetBytes.Add(float64(len(tar)))
	fw := fleet.Firmware{AppID: appID, Commit: commit, Tar: tar}
	// An unreadable tar keeps an empty checksum: every device flashing it
	// then fails verification (fleet.ErrBadFirmware).
	if sum, err := fleet.Checksum(bytes.NewReader(tar)); err == nil {
		fw.Checksum = sum
	} else {
		g.log.Warn("assets are not a readable tar", "app", appID, "commit", commit, "err", err)
	}
	if g.opts.ExpectedChecksum != nil {
		if want, ok := g.opts.ExpectedChecksum(appID, commit); ok {
			fw.Expected = want
		}
	}
	g.log.Info("assets downloaded", "app", appID, "commit", commit, "bytes", len(tar), "checksum", fw.Checksum)
	g.cacheMu.Lock()
	for k, old := range g.cache {
		if old.AppID == appID {
			delete(g.cache, k)
		}
	}
	g.cache[key] = fw
	g.cacheMu.Unlock()
	return fw, nil
}
