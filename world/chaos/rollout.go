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
	// drawn point of the schedule), so that a device's last report or
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
	code, err := b.do(ctx, hc, http.MethodPut, "/v1/devices/"+d.uuid, reportBody(d.next))
	if err != nil || code != http.StatusOK {
		return false
	}
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
			length: time.Second + time.Duration(b.rng.Int64N(int64(3*time.Second))),
			mode:   []string{"unreachable", "drop"}[i%2],
		}
	}

	start := time.Now()
	for i, d := range loads {
		d.until = start.Add(24 * time.Hour)
		if (i/workers)%2 == 0 {
			d.until = start.Add(time.Duration(b.rng.Int64N(int64(max(total, time.Second)))))
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
			fmt.Fprintf(b.opts.Out, "chaos: cloud %s for %s\n", o.mode, o.length.Round(time.Millisecond))
			if o.mode == "unreachable" {
				b.cloudDown()
				time.Sleep(o.length)
				if err = b.cloudUp(); err != nil {
					break
				}
			} else {
				b.note("cloud-drop")
				b.fakes.Cloud.Outage(cloud.OutageClose)
				time.Sleep(o.length)
				b.fakes.Cloud.EndOutage()
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
		fmt.Fprintf(b.opts.Out, "chaos: kill %d/%d after %s up\n", i+1, len(ups), up.Round(time.Millisecond))
		if i == len(ups)/2 {
			if err := b.pushRelease(ctx, 2); err != nil {
				runErr = err
				break
			}
			fmt.Fprintln(b.opts.Out, "chaos: release 2 pushed")
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
	stopLoad()
	wg.Wait()
	if runErr != nil {
		return runErr
	}
	fmt.Fprintf(b.opts.Out, "chaos: faults over after %s; settling\n", time.Since(start).Round(time.Millisecond))
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

// inDoubtAt reports whether a request seen from..to (by the cloud or the
// hook receiver) may have lost its answer to a fault: a kill up to inDoubt
// after it, or before it when no new proxy was started in between (the
// request was then sent by the process that died, and handled late); or
// the cloud cut off while or just after it was answered.
func inDoubtAt(events []event, from, to time.Time, kinds ...string) bool {
	for i, e := range events {
		if !slices.Contains(kinds, e.what) || e.at.After(to.Add(inDoubt)) || e.at.Before(from.Add(-inDoubt)) {
			continue
		}
		if !e.at.Before(from) {
			return true
		}
		if e.what != "kill" {
			continue
		}
		restarted := false
		for _, n := range events[i+1:] {
			if n.what == "start" && n.at.Before(from) {
				restarted = true
			}
		}
		if !restarted {
			return true
		}
	}
	return false
}

// account fills the figures of the first part.
func (b *battery) account(fig *Figures, loads []*deviceLoad, release string, missingReports int) {
	b.mu.Lock()
	events := append([]event(nil), b.events...)
	logReqs := append([]logRequest(nil), b.logReqs...)
	hooks := append([]hookSeen(nil), b.hooks...)
	fig.LogLinesDropped = int(b.dropped + b.curDrops)
	b.mu.Unlock()

	fig.ReportsLost = missingReports
	for _, d := range loads {
		fig.ReportsAcked += d.reports
		fig.LogLinesAcked += len(d.ackedLogs)
		fig.LogLinesUnknown += len(d.unknown)
	}

	start := events[0].at
	if len(logReqs) > 0 && logReqs[0].start.Before(start) {
		start = logReqs[0].start
	}
	// Log lines, in the order the cloud holds them per device.
	var missing int
	arrivedAt := map[string][]int{} // message -> indexes of the answered requests that carried it
	for i, r := range logReqs {
		if r.status/100 != 2 {
			continue
		}
		for _, m := range r.messages {
			arrivedAt[m] = append(arrivedAt[m], i)
		}
	}
	for _, d := range loads {
		ls, _ := b.fakes.Cloud.Logs(d.uuid)
		fig.LogLinesArrived += len(ls)
		seen := map[int]int{}
		last := -1
		for _, l := range ls {
			u, seq, ok := parseLogMessage(l.Message)
			if !ok || u != d.uuid {
				continue
			}
			seen[seq]++
			if seen[seq] > 1 {
				// A repeat is explained when the request that carried the
				// line before it may have lost its answer to a fault.
				reqs := arrivedAt[l.Message]
				k := seen[seq] - 2
				if k < len(reqs) && inDoubtAt(events, logReqs[reqs[k]].start, logReqs[reqs[k]].end, "kill", "cloud-down", "cloud-drop") {
					fig.LogLinesInDoubt++
				} else {
					fig.LogLinesDuplicate++
					if fig.LogLinesDuplicate <= 3 {
						fig.Notes = append(fig.Notes, duplicateNote(l.Message, reqs, logReqs, events, start))
					}
				}
				continue
			}
			if seq < last {
				fig.LogLinesReordered++
			}
			last = max(last, seq)
		}
		for seq := range d.ackedLogs {
			if seen[seq] == 0 {
				missing++
			}
		}
	}
	fig.LogLinesLost = max(0, missing-fig.LogLinesDropped)

	// Hooks: an update hook answered 200 for a target must never come
	// again, unless a kill came within inDoubt of its answer (the proxy
	// may have died before it recorded the acknowledgement).
	acked := map[string]hookSeen{}
	for _, h := range hooks {
		key := h.uuid + " " + h.commit
		first, seen := acked[key]
		if !seen {
			acked[key] = h
			fig.HooksAcked++
			continue
		}
		if inDoubtAt(events, first.arrived, first.answered, "kill") {
			fig.HooksInDoubt++
			acked[key] = h // the new answer is the acknowledgement from here on
		} else {
			fig.HooksResent++
		}
	}
	fig.DevicesConverged = len(b.hookAcked(release))
}

// duplicateNote describes an unexplained repeat: the requests that carried
// the line and the faults nearest to them, in seconds from the start.
func duplicateNote(msg string, reqs []int, logReqs []logRequest, events []event, start time.Time) string {
	sec := func(t time.Time) string { return fmt.Sprintf("%.3fs", t.Sub(start).Seconds()) }
	var b strings.Builder
	fmt.Fprintf(&b, "duplicate %q carried by", msg)
	for _, i := range reqs {
		r := logReqs[i]
		fmt.Fprintf(&b, " [%s–%s %d, %d lines]", sec(r.start), sec(r.end), r.status, len(r.messages))
	}
	if len(reqs) > 0 {
		first := logReqs[reqs[0]]
		var near []string
		for _, e := range events {
			if d := e.at.Sub(first.start); d > -5*time.Second && d < 10*time.Second {
				near = append(near, e.what+"@"+sec(e.at))
			}
		}
		fmt.Fprintf(&b, "; faults near: %v", near)
	}
	return b.String()
}
