package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/backoff"
	"github.com/depharness/depharness/sim/fleet"
)

// The workers: they apply each device's queued work (flash a release, apply
// environment and config, restart) and retry what failed.

// backoff returns the wait before attempt n+1: exponential from RetryBase
// up to RetryMax, with jitter in [d/2, d].
func (g *Gateway) backoff(attempt int) time.Duration {
	g.randMu.Lock()
	defer g.randMu.Unlock()
	return backoff.Jittered(g.opts.RetryBase, g.opts.RetryMax, attempt, g.rand)
}

// worker does the queued devices' work until ctx is done.
func (g *Gateway) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-g.queue:
			g.work(ctx, m)
		}
	}
}

// work does everything m has to do, one thing at a time. It clears
// m.working in the same critical section in which it finds nothing left to
// do, so that work arriving meanwhile is never lost.
func (g *Gateway) work(ctx context.Context, m *managed) {
	g.mu.Lock()
	m.queued, m.working = false, true
	for ctx.Err() == nil && !m.forgotten {
		switch {
		case m.initialReport:
			m.initialReport = false
			g.mu.Unlock()
			st, online := m.dev.Condition()
			status := StatusIdle
			if st == fleet.StateFailed {
				status = StatusFailed
			}
			g.report(ctx, m, api.DeviceUpdate{Status: &status, IsOnline: &online}, nil)
		case m.restarts > 0:
			m.restarts--
			g.mu.Unlock()
			_ = m.dev.Restart(ctx)
		case m.reportOnline:
			m.reportOnline = false
			g.mu.Unlock()
			online := m.dev.Online()
			g.report(ctx, m, api.DeviceUpdate{IsOnline: &online}, nil)
		case m.pending != nil && m.dev.Online():
			t := m.pending
			m.pending = nil
			g.mu.Unlock()
			g.update(ctx, m, t)
		default:
			// Nothing to do, or an update waits for the device to come
			// online: its online event queues m again.
			m.working = false
			g.mu.Unlock()
			return
		}
		g.mu.Lock()
	}
	m.working = false
	g.mu.Unlock()
}

// update brings m to target t and reports the outcome.
func (g *Gateway) update(ctx context.Context, m *managed, t *target) {
	key := t.key
	ft := t.fleetTarget()
	online := true
	switch onCommit, onTarget := m.dev.Runs(ft); {
	case onTarget:
		g.reportRunning(ctx, m, t)
		return
	case onCommit:
		// Only environment or config changed: applied without a download
		// or a flash, as a real gateway would.
		switch err := m.dev.Configure(ctx, ft); {
		case err == nil:
			g.metrics.Reconfigurations.Inc()
			g.reportRunning(ctx, m, t)
			return
		case ctx.Err() != nil:
			return
		}
		// The device left the commit meanwhile: flash it.
	}
	g.mu.Lock()
	bad := m.badTarget == key
	g.mu.Unlock()
	if bad {
		failed := StatusFailed
		g.report(ctx, m, api.DeviceUpdate{Status: &failed, IsOnline: &online}, nil)
		return
	}

	updating := StatusUpdating
	g.report(ctx, m, api.DeviceUpdate{Status: &updating, IsOnline: &online}, nil)
	err := m.dev.Update(ctx, ft, func(ctx context.Context) (fleet.Firmware, error) {
		return g.firmware(ctx, t.AppID, t.Commit)
	})
	var ferr *fleet.FlashError
	switch {
	case err == nil:
		g.metrics.Flashes.WithLabelValues("ok").Inc()
		g.mu.Lock()
		m.flashAttempts = 0
		g.mu.Unlock()
		g.reportRunning(ctx, m, t)
	case ctx.Err() != nil:
	case errors.As(err, &ferr):
		g.failed("flash", m.dev.Index, err)
		g.log.Warn("flash failed", "uuid", m.uuid, "commit", t.Commit, "err", err)
		g.mu.Lock()
		retry := false
		switch {
		case errors.Is(err, fleet.ErrFlashFailed):
			g.metrics.Flashes.WithLabelValues("flash_failed").Inc()
			m.flashAttempts++
			retry = m.flashAttempts < g.opts.MaxFlashAttempts
			if !retry {
				m.flashAttempts = 0
			}
		case errors.Is(err, fleet.ErrChecksumMismatch):
			g.metrics.Flashes.WithLabelValues("checksum_mismatch").Inc()
			m.badTarget = key
		default:
			g.metrics.Flashes.WithLabelValues("bad_firmware").Inc()
			m.badTarget = key
		}
		attempts := m.flashAttempts
		g.mu.Unlock()
		failed := StatusFailed
		g.report(ctx, m, api.DeviceUpdate{Status: &failed, IsOnline: &online}, nil)
		if retry {
			g.retryLater(m, t, attempts)
		}
	default:
		// The download failed: try again later.
		g.failed("download", m.dev.Index, err)
		g.log.Warn("downloading assets", "app", t.AppID, "commit", t.Commit, "err", err)
		g.retryLater(m, t, 1)
	}
}

// retryLater makes t m's pending target again after a backoff, unless a
// newer target arrived meanwhile.
func (g *Gateway) retryLater(m *managed, t *target, attempt int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.timers == nil {
		return // Run has ended
	}
	var tm *time.Timer
	tm = time.AfterFunc(g.backoff(attempt), func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.timers == nil {
			return
		}
		delete(g.timers, tm)
		if m.pending == nil && m.target != nil && m.target.key == t.key {
			m.pending = t
			g.enqueueLocked(m)
		}
	})
	g.timers[tm] = struct{}{}
}
