package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/depharness/depharness/fakes/cloud"
)

// workers drive the API; device i belongs to worker i % workers only, so
// that each device's reports and lines are sent in order.
const (
	workers      = 16
	linesPerTurn = 4
)

// outageModes are the ways the cloud fails, in turn: unreachable (its
// listener closed, connections cut), every connection closed unanswered
// before the request is handled, every request handled and then left
// unanswered (its outcome unknown to the proxy), every request handled and
// answered only after CLOUD_TIMEOUT.
var outageModes = []string{"unreachable", "dropping connections", "dropping answers", "answering late"}

// holdAfterSettle is how long the battery keeps watching once the cloud
// holds everything: three times CLOUD_TIMEOUT, the delay after which an
// unanswered delivery is sent again.
const holdAfterSettle = 3 * cloudTimeout

// lateAnswer is how late the cloud answers while "answering late".
const lateAnswer = cloudTimeout + time.Second

// period is a stretch of time a cloud fault lasted.
type period struct {
	from, to time.Time
	what     string
}

// deviceLoad is what one device was sent and what was acknowledged.
type deviceLoad struct {
	uuid string
	// The report to send next; pending while unacknowledged (a report
	// that got no answer is sent again, unchanged, before any newer one).
	next      int
	pending   bool
	ackedN    int // latest acknowledged report, 0 = none
	reports   int // acknowledged PUTs
	seq       int // next log line number
	ackedLogs map[int]bool
	unknown   map[int]bool
	// until is when the device falls silent (half the devices do, at a
	// drawn point of the schedule, half of those during an outage), so that a device's last report or
	// line may land during an outage or just before a kill: merging may
	// skip intermediate values (DEV-PUT-6), only the last one is judged.
	until time.Time
}

func reportBody(n int) string {
	return fmt.Sprintf(`{"status":"chaos-%d","is_online":%t}`, n, n%2 == 0)
}

func logMessage(uuid string, seq int) string { return fmt.Sprintf("chaos %s %d", uuid, seq) }

// parseLogMessage is the inverse of logMessage.
func parseLogMessage(m string) (uuid string, seq int, ok bool) {
	f := strings.Fields(m)
	if len(f) != 3 || f[0] != "chaos" {
		return "", 0, false
	}
	seq, err := strconv.Atoi(f[2])
	return f[1], seq, err == nil
}

func (b *battery) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers * 2}}
}

func (b *battery) do(ctx context.Context, hc *http.Client, method, path, body string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+b.apiAddr+path, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+b.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// turn sends a device's next report (or its unanswered one again) and a
// few log lines.
func (b *battery) turn(ctx context.Context, hc *http.Client, d *deviceLoad) (ok bool) {
	if !d.pending {
		d.next++
		d.pending = true
	}
	t0 := time.Now()
	code, err := b.do(ctx, hc, http.MethodPut, "/v1/devices/"+d.uuid, reportBody(d.next))
	if err != nil || code != http.StatusOK {
		return false
	}
	b.notePut(time.Since(t0))
	d.pending, d.ackedN = false, d.next
	d.reports++
	for range linesPerTurn {
		msg, _ := json.Marshal(map[string]any{"message": logMessage(d.uuid, d.seq), "timestamp": time.Now().UnixMilli()})
		code, err := b.do(ctx, hc, http.MethodPost, "/v1/devices/"+d.uuid+"/logs", string(msg))
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return false
			}
			d.unknown[d.seq] = true // sent; a kill may have come before or after it was stored
			d.seq++
			return false
		case code == http.StatusAccepted:
			d.ackedLogs[d.seq] = true
			d.seq++
		default:
			return false // refused: not stored, the number is used again
		}
	}
	return true
}

// rollout is the first part: the fault schedule against a rollout with a
// storm of reports and log lines, then the settling and the accounting.
func (b *battery) rollout(ctx context.Context, fig *Figures) error {
	loads := make([]*deviceLoad, len(b.uuids))
	for i, u := range b.uuids {
		loads[i] = &deviceLoad{uuid: u, ackedLogs: map[int]bool{}, unknown: map[int]bool{}}
	}
	if err := b.startProxy(ctx); err != nil {
		return err
	}
	// The schedule, drawn before anything runs.
	ups := make([]time.Duration, b.opts.Kills)
	var total time.Duration
	for i := range ups {
		ups[i] = time.Duration(b.rng.Int64N(int64(b.opts.MaxUp)))
		total += ups[i] + 300*time.Millisecond // a restart's typical time
	}
	type outage struct {
		at, length time.Duration
		mode       string
	}
	outages := make([]outage, b.opts.Outages)
	for i := range outages {
		outages[i] = outage{
			at:     time.Duration(b.rng.Int64N(int64(max(total, time.Second)))),
			length: time.Second + time.Duration(b.rng.Int64N(int64(b.opts.MaxOutage-time.Second))),
			mode:   outageModes[i%len(outageModes)],
		}
	}
	slices.SortFunc(outages, func(a, b outage) int { return int(a.at - b.at) })
	for i := 1; i < len(outages); i++ { // one at a time, as planned
		outages[i].at = max(outages[i].at, outages[i-1].at+outages[i-1].length+200*time.Millisecond)
	}

	start := time.Now()
	for i, d := range loads {
		d.until = start.Add(24 * time.Hour)
		if (i/workers)%2 == 0 {
			// Half of these fall silent during an outage.
			at := time.Duration(b.rng.Int64N(int64(max(total, time.Second))))
			if o := outages[b.rng.IntN(len(outages))]; b.rng.IntN(2) == 0 {
				at = o.at + time.Duration(b.rng.Int64N(int64(o.length)))
			}
			d.until = start.Add(at)
		}
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			hc := b.client()
			for loadCtx.Err() == nil {
				busy := false
				for i := w; i < len(loads) && loadCtx.Err() == nil; i += workers {
					if time.Now().After(loads[i].until) && !loads[i].pending {
						continue
					}
					busy = true
					if !b.turn(loadCtx, hc, loads[i]) && loadCtx.Err() == nil {
						time.Sleep(20 * time.Millisecond)
					}
				}
				if !busy {
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	scrapeCtx, stopScrape := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-scrapeCtx.Done():
				return
			case <-t.C:
				b.scrapeDrops()
			}
		}
	}()
	defer stopScrape()

	// Outages run beside the kills.
	outagesDone := make(chan error, 1)
	go func() {
		var err error
		for _, o := range outages {
			select {
			case <-time.After(time.Until(start.Add(o.at))):
			case <-ctx.Done():
				outagesDone <- ctx.Err()
				return
			}
			b.opts.progress.Printf("chaos: cloud %s for %s\n", o.mode, o.length.Round(time.Millisecond))
			from := time.Now()
			switch o.mode {
			case "unreachable":
				b.cloudDown()
				time.Sleep(o.length)
				err = b.cloudUp()
			case "dropping connections":
				b.fakes.Cloud.Outage(cloud.OutageClose)
				time.Sleep(o.length)
				b.fakes.Cloud.EndOutage()
			case "dropping answers":
				err = b.fakes.Cloud.DropAnswers(cloud.RouteAll, 1<<30)
				time.Sleep(o.length)
				b.fakes.Cloud.Undrop(cloud.RouteAll)
			case "answering late":
				err = b.fakes.Cloud.DelayAnswers(cloud.RouteAll, lateAnswer, 1<<30)
				time.Sleep(o.length)
				b.fakes.Cloud.UndelayAnswers(cloud.RouteAll)
			}
			b.mu.Lock()
			b.periods = append(b.periods, period{from: from, to: time.Now(), what: "cloud " + o.mode})
			b.mu.Unlock()
			if err != nil {
				break
			}
			fig.Outages++
		}
		outagesDone <- err
	}()

	var runErr error
	for i, up := range ups {
		select {
		case <-time.After(up):
		case <-ctx.Done():
			runErr = ctx.Err()
		}
		if runErr != nil {
			break
		}
		if !b.kill() {
			fig.Crashes++
		}
		fig.Kills++
		b.integrity(fig)
		b.opts.progress.Printf("chaos: kill %d/%d after %s up\n", i+1, len(ups), up.Round(time.Millisecond))
		if i == len(ups)/2 {
			if err := b.pushRelease(ctx, 2); err != nil {
				runErr = err
				break
			}
			b.opts.progress.Println("chaos: release 2 pushed")
		}
		if runErr = b.startProxy(ctx); runErr != nil {
			break
		}
	}
	if len(ups) == 0 {
		if err := b.pushRelease(ctx, 2); err != nil {
			runErr = err
		}
	}
	if err := <-outagesDone; err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil {
		// The last outage: the load stops while the cloud is unreachable,
		// so every device's last report and lines wait in the outbox, and
		// are delivered when it returns.
		b.opts.progress.Println("chaos: cloud unreachable while the load stops")
		from := time.Now()
		b.cloudDown()
		time.Sleep(500 * time.Millisecond)
		stopLoad()
		wg.Wait()
		time.Sleep(time.Second)
		runErr = b.cloudUp()
		b.mu.Lock()
		b.periods = append(b.periods, period{from: from, to: time.Now(), what: "cloud unreachable"})
		b.mu.Unlock()
		fig.Outages++
	}
	stopLoad()
	wg.Wait()
	if runErr != nil {
		return runErr
	}
	b.opts.progress.Printf("chaos: faults over after %s; settling\n", time.Since(start).Round(time.Millisecond))
	select {
	case <-b.procDone:
		return fmt.Errorf("the proxy exited by itself after the schedule: see %s", b.logFile.Name())
	default:
	}
	return b.settle(ctx, fig, loads)
}

// settle sends every unanswered report once more, waits until the cloud
// holds what was acknowledged (or settleTimeout passes), and counts.
func (b *battery) settle(ctx context.Context, fig *Figures, loads []*deviceLoad) error {
	hc := b.client()
	deadline := time.Now().Add(b.opts.SettleTimeout)
	for _, d := range loads {
		for d.pending && time.Now().Before(deadline) {
			code, err := b.do(ctx, hc, http.MethodPut, "/v1/devices/"+d.uuid, reportBody(d.next))
			if err == nil && code == http.StatusOK {
				d.pending, d.ackedN = false, d.next
				d.reports++
			} else {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	release, err := b.lastCommit()
	if err != nil {
		return err
	}
	var missingReports, missingLogs, unconverged int
	for {
		missingReports, missingLogs, unconverged = 0, 0, 0
		for _, d := range loads {
			info, err := b.fakes.Cloud.Device(d.uuid)
			if err != nil {
				return err
			}
			if d.ackedN > 0 && (info.Status != fmt.Sprintf("chaos-%d", d.ackedN) || info.IsOnline != (d.ackedN%2 == 0)) {
				missingReports++
			}
		}
		arrived := b.arrivals()
		for _, d := range loads {
			for seq := range d.ackedLogs {
				if arrived[logMessage(d.uuid, seq)] == 0 {
					missingLogs++
				}
			}
		}
		on := b.hookAcked(release)
		unconverged = len(loads) - len(on)
		if (missingReports == 0 && missingLogs == 0 && unconverged == 0) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	// Hold a while longer, so that a late re-send of what was delivered
	// (after a timeout of CLOUD_TIMEOUT, say) is seen.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(holdAfterSettle):
	}
	b.scrapeDrops()
	b.account(fig, loads, release, missingReports)
	return nil
}

func (b *battery) lastCommit() (string, error) {
	app, err := b.fakes.Cloud.App(b.app.ID)
	if err != nil {
		return "", err
	}
	rels, err := b.fakes.Cloud.Releases(app.ID)
	if err != nil || len(rels) == 0 {
		return "", fmt.Errorf("releases of app %d: %v", app.ID, err)
	}
	return rels[len(rels)-1].Commit, nil
}

// arrivals counts each message the cloud holds for the devices.
func (b *battery) arrivals() map[string]int {
	out := map[string]int{}
	for _, u := range b.uuids {
		ls, _ := b.fakes.Cloud.Logs(u)
		for _, l := range ls {
			out[l.Message]++
		}
	}
	return out
}

// hookAcked is the set of devices whose update hook for commit was
// answered 200.
func (b *battery) hookAcked(commit string) map[string]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	on := map[string]bool{}
	for _, h := range b.hooks {
		if h.commit == commit {
			on[h.uuid] = true
		}
	}
	return on
}
