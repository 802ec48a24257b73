// Package chaos is a fault battery for the reference proxy (issue 10): a
// rollout to many devices with a storm of reports and log lines while the
// proxy, a real child process (`depharness proxy`), is SIGKILLed at random
// points and the cloud drops off and returns; then a swarm of idle and
// dribbling connections against the proxy's API while the API is measured.
// It counts what a crash or an outage may not cost (acknowledged reports,
// log lines, hook acknowledgements, database integrity, memory, held
// connections) and Figures.Failures names every loss.
//
// All traffic stays on loopback. The schedule of faults (when each kill
// lands, when the cloud is away and how) is drawn from one seed, printed,
// so that a run can be replayed with the same schedule; the interleaving
// with the proxy's own work is the machine's.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/depharness/depharness/internal/defaults"
)

// Options configure Run. Zero values mean the defaults given.
type Options struct {
	// ProxyBin is an executable with the `proxy` command (the depharness
	// binary). Required.
	ProxyBin string
	// Dir holds the proxy's DATA_DIR and its log. Required.
	Dir string
	// Devices in the rollout (1000).
	Devices int
	// Kills is how many times the proxy is SIGKILLed (20).
	Kills int
	// Outages is how many times the cloud drops off and returns (4), in
	// turn unreachable (its listener closed: connection refused,
	// connections in flight cut), closing every connection before
	// handling its request, handling every request and dropping its
	// answer, and answering only after CLOUD_TIMEOUT; then once more,
	// unreachable, while the load stops (not counted here).
	Outages int
	// Conns is the number of idle or dribbling connections of the second
	// part (256).
	Conns int
	// Seed draws the fault schedule; 0 draws a seed (printed either way).
	Seed uint64
	// MaxUp is the longest the proxy runs between two kills (2.5s); each
	// kill lands at a uniformly drawn point of [0, MaxUp] after the
	// proxy answered its first /ping.
	MaxUp time.Duration
	// RSSBound is the peak resident set size the proxy may reach (128 MiB: 3× what a run measures).
	RSSBound int64
	// P99Bound is the API's 99th percentile latency allowed while the
	// connections are held (1s).
	P99Bound time.Duration
	// Out receives progress lines; nil discards.
	Out io.Writer
	// MaxOutage is the longest an outage lasts (4s); each lasts a drawn
	// time of [1s, MaxOutage].
	MaxOutage time.Duration
	// SettleTimeout is how long, after the faults, the cloud has to hold
	// every acknowledged report and line and every device its last
	// release (120s).
	SettleTimeout time.Duration
	// Violations is the proxy's DEPHARNESS_VIOLATIONS: empty in a real run;
	// the battery's own tests set one to see it caught.
	Violations string

	progress *log.Logger // writes to Out; set by defaults
}

// The proxy's settings during the battery: short enough that a run is
// quick, and the server deadlines short so that held connections are cut
// in seconds (SERVER_*_TIMEOUT; SRV-1 allows up to 30 s and 120 s).
const (
	pollInterval  = 500 * time.Millisecond
	hookRetry     = 500 * time.Millisecond
	hookTimeout   = 2 * time.Second
	cloudTimeout  = 2 * time.Second
	headerTimeout = 2 * time.Second
	bodyTimeout   = 2 * time.Second
	idleTimeout   = 3 * time.Second
	// inDoubt is how long after a request was answered a kill or a cloud
	// cut may still have kept that answer from the proxy, or the proxy
	// from committing what it learned, at least: a commit takes
	// milliseconds. For a kill it is widened to the commit lag measured
	// just before it (the slowest PUT answered in the 2 s before: a PUT is
	// answered once committed), so that a loaded machine's slow commits
	// excuse no more than they explain. A log batch or a hook whose answer
	// was so close to a fault may legitimately be sent again (DEV-LOG-2:
	// "a request whose outcome the proxy cannot know"; HOOK-REF-1 counts
	// only what was acknowledged).
	inDoubt = 200 * time.Millisecond
	// closeSlack is the time a held connection may take beyond its
	// deadline to be seen closed, on a loaded 2-core machine.
	closeSlack = time.Second
)

func (o *Options) defaults() error {
	if o.ProxyBin == "" || o.Dir == "" {
		return errors.New("chaos: ProxyBin and Dir are required")
	}
	defaults.Positive(&o.Devices, 1000)
	if o.Kills < 0 {
		o.Kills = 0
	} else if o.Kills == 0 {
		o.Kills = 20
	}
	defaults.Positive(&o.Outages, 4)
	defaults.Positive(&o.Conns, 256)
	if o.Seed == 0 {
		o.Seed = rand.Uint64() >> 1
	}
	defaults.Positive(&o.MaxUp, 2500*time.Millisecond)
	defaults.Positive(&o.RSSBound, 128<<20)
	defaults.Positive(&o.P99Bound, time.Second)
	if o.MaxOutage <= time.Second {
		o.MaxOutage = 4 * time.Second
	}
	defaults.Positive(&o.SettleTimeout, 120*time.Second)
	if o.Out == nil {
		o.Out = io.Discard
	}
	// The battery's goroutines print through one logger, which writes each
	// line whole.
	o.progress = log.New(o.Out, "", 0)
	return os.MkdirAll(filepath.Join(o.Dir, "data"), 0o755)
}

// Figures are what a run measured.
type Figures struct {
	Seed    uint64 `json:"seed"`
	Devices int    `json:"devices"`
	Kills   int    `json:"kills"`
	Outages int    `json:"outages"`
	// Crashes are incarnations found exited by themselves at a kill.
	Crashes int `json:"crashes"`

	// Reports: PUTs answered 200, and those whose latest value of a field
	// the cloud does not hold at the end.
	ReportsAcked int `json:"reports_acked"`
	ReportsLost  int `json:"reports_lost"`

	// Log lines: answered 202; sent without an answer (a kill); held by the
	// cloud at the end; acknowledged lines missing beyond the drops the
	// proxy counted; arrivals beyond the first not explained by a request
	// whose answer a fault may have lost; those explained so; lines whose
	// first arrival came after a newer line of the same device.
	LogLinesAcked     int `json:"log_lines_acked"`
	LogLinesUnknown   int `json:"log_lines_unanswered"`
	LogLinesArrived   int `json:"log_lines_arrived"`
	LogLinesDropped   int `json:"log_lines_dropped_counted"`
	LogLinesLost      int `json:"log_lines_lost"`
	LogLinesDuplicate int `json:"log_lines_duplicate"`
	LogLinesInDoubt   int `json:"log_lines_resent_in_doubt"`
	LogLinesReordered int `json:"log_lines_out_of_order"`

	// Hooks: update hooks answered 200; acknowledged hooks sent again;
	// those sent again whose answer came within inDoubt of a kill.
	HooksAcked       int `json:"hooks_acked"`
	HooksResent      int `json:"hooks_resent"`
	HooksInDoubt     int `json:"hooks_resent_in_doubt"`
	DevicesConverged int `json:"devices_on_last_release"`

	// MaxDoubtWindow is the widest window after an answer in which a kill
	// excused a repeat (inDoubt, or the commit lag measured before it).
	MaxDoubtWindow time.Duration `json:"max_doubt_window_ns"`

	IntegrityChecks   int `json:"integrity_checks"`
	IntegrityFailures int `json:"integrity_failures"`

	PeakRSS  int64 `json:"peak_rss_bytes"`
	RSSBound int64 `json:"rss_bound_bytes"`

	// Connections: held, seen closed within their deadline (plus
	// closeSlack), the longest any took past its deadline's start, and the
	// API meanwhile.
	Conns          int           `json:"conns"`
	ConnsClosed    int           `json:"conns_closed_in_time"`
	ConnsOpenLate  []string      `json:"conns_late,omitempty"`
	APIRequests    int           `json:"api_requests_under_conns"`
	APIErrors      int           `json:"api_errors_under_conns"`
	APIP50         time.Duration `json:"api_p50_ns"`
	APIP99         time.Duration `json:"api_p99_ns"`
	P99Bound       time.Duration `json:"api_p99_bound_ns"`
	RolloutWall    time.Duration `json:"rollout_wall_ns"`
	ConnsWall      time.Duration `json:"conns_wall_ns"`
	IntegrityNotes []string      `json:"integrity_notes,omitempty"`
	Notes          []string      `json:"notes,omitempty"`
}

// Failures names every loss or bound exceeded; empty means the battery
// passed.
func (f *Figures) Failures() []string {
	var out []string
	check := func(bad bool, format string, a ...any) {
		if bad {
			out = append(out, fmt.Sprintf(format, a...))
		}
	}
	check(f.Crashes > 0, "the proxy exited by itself %d times", f.Crashes)
	check(f.ReportsLost > 0, "%d acknowledged reports lost", f.ReportsLost)
	check(f.LogLinesLost > 0, "%d acknowledged log lines lost (beyond %d counted drops)", f.LogLinesLost, f.LogLinesDropped)
	check(f.LogLinesDuplicate > 0, "%d duplicate log lines", f.LogLinesDuplicate)
	check(f.LogLinesReordered > 0, "%d log lines out of order", f.LogLinesReordered)
	check(f.HooksResent > 0, "%d acknowledged hooks re-sent", f.HooksResent)
	check(f.DevicesConverged < f.Devices, "%d of %d devices acknowledged the last release", f.DevicesConverged, f.Devices)
	check(f.IntegrityFailures > 0, "%d of %d integrity checks failed: %v", f.IntegrityFailures, f.IntegrityChecks, f.IntegrityNotes)
	check(f.IntegrityChecks < f.Kills, "%d integrity checks for %d kills", f.IntegrityChecks, f.Kills)
	check(f.PeakRSS > f.RSSBound, "peak RSS %d MiB over the bound of %d MiB", f.PeakRSS>>20, f.RSSBound>>20)
	check(f.ConnsClosed < f.Conns, "%d of %d held connections not closed within their deadline: %v", f.Conns-f.ConnsClosed, f.Conns, f.ConnsOpenLate)
	check(f.APIErrors > 0, "%d API requests failed while connections were held", f.APIErrors)
	check(f.APIP99 > f.P99Bound, "API p99 %s over the bound of %s while connections were held", f.APIP99, f.P99Bound)
	return out
}

// Print writes the figures as a table.
func (f *Figures) Print(w io.Writer) {
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	fmt.Fprintf(w, "chaos figures (seed %d, replay with --seed %d)\n", f.Seed, f.Seed)
	rows := [][2]string{
		{"devices", fmt.Sprint(f.Devices)},
		{"proxy SIGKILLs", fmt.Sprint(f.Kills)},
		{"cloud outages", fmt.Sprint(f.Outages)},
		{"proxy crashes (own exits)", fmt.Sprint(f.Crashes)},
		{"reports acknowledged", fmt.Sprint(f.ReportsAcked)},
		{"acknowledged reports lost", fmt.Sprint(f.ReportsLost)},
		{"log lines acknowledged", fmt.Sprint(f.LogLinesAcked)},
		{"log lines unanswered (kill)", fmt.Sprint(f.LogLinesUnknown)},
		{"log lines in the cloud", fmt.Sprint(f.LogLinesArrived)},
		{"log lines dropped (counted)", fmt.Sprint(f.LogLinesDropped)},
		{"log lines lost", fmt.Sprint(f.LogLinesLost)},
		{"log lines duplicated", fmt.Sprint(f.LogLinesDuplicate)},
		{"log lines re-sent in doubt", fmt.Sprint(f.LogLinesInDoubt)},
		{"log lines out of order", fmt.Sprint(f.LogLinesReordered)},
		{"update hooks acknowledged", fmt.Sprint(f.HooksAcked)},
		{"acknowledged hooks re-sent", fmt.Sprint(f.HooksResent)},
		{"hooks re-sent in doubt", fmt.Sprint(f.HooksInDoubt)},
		{"widest doubt window at a kill", ms(f.MaxDoubtWindow)},
		{"devices on the last release", fmt.Sprintf("%d of %d", f.DevicesConverged, f.Devices)},
		{"integrity checks ok", fmt.Sprintf("%d of %d", f.IntegrityChecks-f.IntegrityFailures, f.IntegrityChecks)},
		{"peak RSS of the proxy", fmt.Sprintf("%.1f MiB (bound %d MiB)", float64(f.PeakRSS)/(1<<20), f.RSSBound>>20)},
		{"held connections closed", fmt.Sprintf("%d of %d", f.ConnsClosed, f.Conns)},
		{"API under held connections", fmt.Sprintf("%d requests, %d errors, p50 %s, p99 %s (bound %s)", f.APIRequests, f.APIErrors, ms(f.APIP50), ms(f.APIP99), ms(f.P99Bound))},
		{"rollout phase", ms(f.RolloutWall)},
		{"connections phase", ms(f.ConnsWall)},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-30s %s\n", r[0], r[1])
	}
	for _, n := range f.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

// Run runs the battery and returns its figures; an error means the battery
// could not run (not that it found a loss: see Figures.Failures).
func Run(ctx context.Context, opts Options) (*Figures, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	opts.progress.Printf("chaos: seed %d, %d devices, %d kills, %d outages, %d connections\n",
		opts.Seed, opts.Devices, opts.Kills, opts.Outages, opts.Conns)
	b, err := newBattery(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer b.close()
	fig := &Figures{Seed: opts.Seed, Devices: opts.Devices, RSSBound: opts.RSSBound, P99Bound: opts.P99Bound, Conns: opts.Conns}
	start := time.Now()
	if err := b.rollout(ctx, fig); err != nil {
		return fig, err
	}
	fig.RolloutWall = time.Since(start)
	start = time.Now()
	if err := b.connections(ctx, fig); err != nil {
		return fig, err
	}
	fig.ConnsWall = time.Since(start)
	if err := b.stopProxy(fig); err != nil {
		return fig, err
	}
	return fig, nil
}
