package gateway

import (
	"context"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/sim/client"
)

// Reporting devices' state and forwarding their logs to the supervisor.

func (g *Gateway) forwardLogs(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case l := <-g.logs:
			g.mu.Lock()
			gone := l.m.forgotten
			g.mu.Unlock()
			if gone {
				continue
			}
			if err := g.opts.Client.Log(ctx, l.m.uuid, l.entry); err != nil {
				if ctx.Err() != nil {
					return
				}
				g.failed("log", l.m.dev.Index, err)
				g.log.Warn("forwarding a log line", "uuid", l.m.uuid, "err", err)
				if client.IsGone(err) {
					g.forget(l.m.uuid)
				}
				continue
			}
			g.metrics.LogsForwarded.Inc()
		}
	}
}

// reportRunning reports that m runs target t.
func (g *Gateway) reportRunning(ctx context.Context, m *managed, t *target) {
	idle, online, commit := StatusIdle, true, t.Commit
	// The report is encoded before Report returns, and the hook's
	// variables are never changed: they need no copy.
	env, cfg := api.Vars(t.Environment), api.Vars(t.Config)
	if env == nil {
		env = api.Vars{}
	}
	if cfg == nil {
		cfg = api.Vars{}
	}
	g.report(ctx, m, api.DeviceUpdate{Status: &idle, IsOnline: &online, Commit: &commit, Environment: env, Config: cfg}, t)
}

// report sends PUT /v1/devices/{uuid}; the client retries what can be
// retried. A 410 or 404 answer means the supervisor dropped the device:
// the gateway forgets it.
func (g *Gateway) report(ctx context.Context, m *managed, u api.DeviceUpdate, t *target) {
	err := g.opts.Client.Report(ctx, m.uuid, u)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		g.metrics.Reports.WithLabelValues("error").Inc()
		g.failed("report", m.dev.Index, err)
		g.log.Warn("reporting device state", "uuid", m.uuid, "err", err)
		if client.IsGone(err) || client.IsNotFound(err) {
			g.forget(m.uuid)
		}
		return
	}
	g.metrics.Reports.WithLabelValues("ok").Inc()
	g.opts.Observer.Reported(m.dev.Index)
	g.mu.Lock()
	defer g.mu.Unlock()
	if u.Status != nil {
		m.reported.ok = true
		m.reported.status = *u.Status
		if *u.Status == StatusFailed {
			g.settleLocked(m) // its update ended, if not well
		}
	}
	if t != nil {
		g.settleLocked(m)
		first := !m.reported.matches(t)
		m.reported.commit = t.Commit
		m.reported.environment = t.env
		m.reported.config = t.cfg
		if first && m.target != nil && m.target.key == t.key && !m.targetAt.IsZero() {
			g.metrics.UpdateDuration.Observe(g.opts.Now().Sub(m.targetAt).Seconds())
		}
	}
}

// settleLocked gives back m's token of the provisioning window
// (Options.ProvisionAhead), if it holds one: it reported a commit or a
// failed update, or it is forgotten.
func (g *Gateway) settleLocked(m *managed) {
	if m.holdsAhead {
		m.holdsAhead = false
		<-g.ahead
	}
}
