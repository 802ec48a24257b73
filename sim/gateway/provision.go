package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/ctxtime"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/fleet"
)

// Provisioning the fleet's devices, or adopting those the supervisor already
// has.

// provisionAll waits for the supervisor and the apps, adopts the devices
// the supervisor already has for them (see adoptAll) and provisions the
// fleet devices left over, Concurrency at a time.
func (g *Gateway) provisionAll(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := g.opts.Client.Ping(ctx)
		if err == nil {
			break
		}
		g.log.Info("waiting for the supervisor", "err", err)
		if ctxtime.Sleep(ctx, g.backoff(attempt)) != nil {
			return ctx.Err()
		}
	}
	apps := g.opts.Apps
	for attempt := 1; len(apps) == 0; attempt++ {
		list, err := g.opts.Client.Apps(ctx)
		if err != nil && client.StatusCode(err) != 0 && !client.IsUnavailable(err) {
			return fmt.Errorf("listing dependent apps: %w", err)
		}
		for _, a := range list {
			apps = append(apps, a.ID)
		}
		if len(apps) == 0 {
			g.log.Info("waiting for a dependent app", "err", err)
			if ctxtime.Sleep(ctx, g.backoff(attempt)) != nil {
				return ctx.Err()
			}
		}
	}
	devices, err := g.adoptAll(ctx, apps)
	if err != nil {
		return err
	}
	adopted := len(g.opts.Fleet.Devices()) - len(devices)
	sem := make(chan struct{}, g.opts.Concurrency)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	for _, d := range devices {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		if g.ahead != nil {
			select {
			case g.ahead <- struct{}{}: // given back when the device reports a commit
			case <-ctx.Done():
				<-sem
				wg.Wait()
				return ctx.Err()
			}
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := g.provision(ctx, d, apps[d.Index%len(apps)]); err != nil {
				if g.ahead != nil {
					<-g.ahead // not provisioned: nothing to wait for
				}
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		g.log.Info("fleet provisioned", "adopted", adopted, "provisioned", len(devices), "apps", apps)
	}
	return firstErr
}

// adoptAll makes the gateway manage again the devices the supervisor
// already has for its apps (those a previous run of the gateway
// provisioned), so that a restarted gateway neither leaves them without
// anyone answering their hooks nor provisions the fleet a second time. It
// returns the fleet devices left without a device to adopt, which are to
// be provisioned. The package documentation states the rule.
func (g *Gateway) adoptAll(ctx context.Context, apps []int64) ([]*fleet.Device, error) {
	byApp, err := g.adoptable(ctx, apps)
	if err != nil {
		return nil, err
	}
	var rest []*fleet.Device
	for _, d := range g.opts.Fleet.Devices() {
		app := apps[d.Index%len(apps)]
		q := byApp[app]
		if len(q) == 0 {
			rest = append(rest, d)
			continue
		}
		byApp[app] = q[1:]
		g.adopt(d, q[0])
	}
	for _, app := range apps {
		left := byApp[app]
		if len(left) == 0 {
			continue
		}
		uuids := make([]string, 0, min(len(left), 10))
		for _, d := range left[:min(len(left), 10)] {
			uuids = append(uuids, d.UUID)
		}
		g.log.Warn("devices beyond the fleet's size are left alone", "app", app, "devices", len(left), "uuids", uuids)
		delete(byApp, app)
	}
	return rest, nil
}

// adoptable returns the adoptable devices of each of apps, by ascending
// local id, retrying what may succeed later.
func (g *Gateway) adoptable(ctx context.Context, apps []int64) (map[int64][]api.Device, error) {
	ours := map[int64]bool{}
	for _, a := range apps {
		ours[a] = true
	}
	for attempt := 1; ; attempt++ {
		byApp, err := g.listAdoptable(ctx, ours)
		if err == nil {
			return byApp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		g.failed("adopt", -1, err)
		if code := client.StatusCode(err); code >= 400 && code < 500 {
			return nil, fmt.Errorf("listing the devices to adopt: %w", err)
		}
		g.log.Warn("listing the devices to adopt", "err", err)
		if ctxtime.Sleep(ctx, g.backoff(attempt)) != nil {
			return nil, ctx.Err()
		}
	}
}

func (g *Gateway) listAdoptable(ctx context.Context, ours map[int64]bool) (map[int64][]api.Device, error) {
	list, err := g.opts.Client.Devices(ctx)
	if err != nil {
		return nil, err
	}
	var cands []api.Device
	for _, d := range list {
		if ours[d.AppID] && d.UUID != "" {
			cands = append(cands, d)
		}
	}
	slices.SortStableFunc(cands, func(a, b api.Device) int { return cmp.Compare(a.ID, b.ID) })
	// The list includes devices awaiting a delete acknowledgement and does
	// not say which: ask for each.
	fresh := make([]*api.Device, len(cands))
	errs := make([]error, len(cands))
	sem := make(chan struct{}, g.opts.Concurrency)
	var wg sync.WaitGroup
	for i, d := range cands {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			dev, err := g.opts.Client.Device(ctx, d.UUID)
			switch {
			case err == nil:
				fresh[i] = dev
			case client.IsGone(err):
				g.log.Info("device awaiting deletion is not adopted", "uuid", d.UUID, "app", d.AppID)
			case client.IsNotFound(err):
				// Deleted since the list was read.
			default:
				errs[i] = fmt.Errorf("device %s: %w", d.UUID, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	byApp := map[int64][]api.Device{}
	for i, d := range fresh {
		if d == nil {
			continue
		}
		dev := *d
		dev.UUID, dev.AppID = cands[i].UUID, cands[i].AppID
		byApp[dev.AppID] = append(byApp[dev.AppID], dev)
	}
	return byApp, nil
}

// adopt makes d the fleet device behind the supervisor's device dev. Its
// first work is an initial report, as for a provisioned device. The fleet
// device holds no firmware yet (the fleet starts empty), so if dev has a
// target commit, that target, as an update hook would give it (the
// device's targetCommit, targetEnvironment and targetConfig), is its
// pending update: it is flashed and reported at once, even when the
// supervisor already shows it on that commit and will send no hook (a
// 200-acknowledged target is not sent again), and a hook with a newer
// target supersedes it.
func (g *Gateway) adopt(d *fleet.Device, dev api.Device) {
	m := &managed{uuid: dev.UUID, appID: dev.AppID, dev: d, initialReport: true}
	if dev.TargetCommit != nil && *dev.TargetCommit != "" {
		t := newTarget(&api.UpdateHook{AppID: dev.AppID, Commit: *dev.TargetCommit, Environment: dev.TargetEnvironment, Config: dev.TargetConfig})
		m.target, m.pending, m.targetAt = t, t, g.opts.Now()
	}
	g.manage(m)
	g.metrics.Adopted.Inc()
	commit := ""
	if dev.Commit != nil {
		commit = *dev.Commit
	}
	g.log.Info("device adopted", "serial", d.Serial, "uuid", dev.UUID, "app", dev.AppID, "name", dev.Name, "commit", commit)
}

// manage starts managing m: its device takes hooks, and its queued work
// (the initial report first) is done.
func (g *Gateway) manage(m *managed) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.byUUID[m.uuid] = m
	g.byIndex[m.dev.Index] = m
	g.enqueueLocked(m)
	g.opts.Observer.DeviceManaged(m.dev.Index, m.uuid, m.appID)
}

// provision provisions one device, retrying what may succeed later, then
// reports its initial state.
func (g *Gateway) provision(ctx context.Context, d *fleet.Device, appID int64) error {
	var p *api.ProvisionResponse
	for attempt := 1; ; attempt++ {
		var err error
		p, err = g.opts.Client.Provision(ctx, appID, g.opts.Fleet.Profile().DeviceType)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		g.failed("provision", d.Index, err)
		if client.IsBadRequest(err) || client.IsUnauthorized(err) {
			return fmt.Errorf("provisioning device %s into app %d: %w", d.Serial, appID, err)
		}
		g.log.Warn("provisioning", "serial", d.Serial, "app", appID, "err", err)
		if ctxtime.Sleep(ctx, g.backoff(attempt)) != nil {
			return ctx.Err()
		}
	}
	// The device takes hooks at once; its initial report is its first
	// piece of work, so that it never lands after the report of an update.
	m := &managed{uuid: p.UUID, appID: appID, dev: d, initialReport: true, holdsAhead: g.ahead != nil}
	g.manage(m)
	g.metrics.Provisioned.Inc()
	g.log.Info("device provisioned", "serial", d.Serial, "uuid", p.UUID, "app", appID, "name", p.Name)
	return nil
}
