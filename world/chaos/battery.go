package chaos

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/internal/httpserver"
	"github.com/depharness/depharness/world"
	_ "modernc.org/sqlite" // the proxy's SQLite driver, for integrity_check
)

// event is a fault at a point in time.
type event struct {
	at time.Time
	// window is how long after a request's answer this fault may still
	// have kept the proxy from recording it (a kill's: see commitLag).
	window time.Duration

	what string // "start", "kill", "cloud-down"
}

// logRequest is a log-stream request the cloud answered.
type logRequest struct {
	start, end time.Time
	status     int
	messages   []string
}

// hookSeen is one update hook the receiver got.
type hookSeen struct {
	uuid, commit string
	arrived      time.Time
	answered     time.Time
}

type battery struct {
	opts  Options
	rng   *rand.Rand
	fakes *world.Fakes
	gw    cloud.Gateway
	app   cloud.App
	uuids []string

	// The cloud as the proxy reaches it: our own listener in front of
	// the fake cloud, closed during an unreachable outage.
	cloudAddr string
	cloudMu   sync.Mutex
	cloudSrv  *httpserver.Server

	hookSrv *httpserver.Server

	mu       sync.Mutex
	events   []event
	logReqs  []logRequest
	hooks    []hookSeen
	periods  []period
	puts     []putDone // PUTs answered 200 in the last few seconds
	dropped  float64   // counted drops of the proxy's incarnations so far
	curDrops float64   // last scrape of the running incarnation
	peakRSS  int64

	apiKey      string
	apiAddr     string
	metricsAddr string
	dataDir     string
	logFile     *os.File
	proc        *exec.Cmd
	procDone    chan struct{}
}

func randomHex(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return hex.EncodeToString(b)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func newBattery(ctx context.Context, opts Options) (_ *battery, err error) {
	b := &battery{opts: opts, rng: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)), apiKey: randomHex(16)}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.fakes, err = world.StartFakes(ctx, world.FakesOptions{Seed: int64(opts.Seed & (1<<62 - 1))}); err != nil {
		return nil, err
	}
	if b.gw, err = b.fakes.Cloud.CreateGateway(cloud.GatewaySpec{}); err != nil {
		return nil, err
	}
	if b.app, err = b.fakes.Cloud.CreateApp(cloud.AppSpec{Name: "chaos-fw", Gateway: b.gw.UUID}); err != nil {
		return nil, err
	}
	if err := b.pushRelease(ctx, 1); err != nil {
		return nil, err
	}
	for range opts.Devices {
		d, err := b.fakes.Cloud.CreateDevice(cloud.DeviceSpec{AppID: b.app.ID, Gateway: b.gw.UUID})
		if err != nil {
			return nil, err
		}
		b.uuids = append(b.uuids, d.UUID)
	}
	if b.cloudAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	if err := b.cloudUp(); err != nil {
		return nil, err
	}
	hookLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.hookSrv = httpserver.Start(hookLn, http.HandlerFunc(b.serveHook), httpserver.Options{})
	if b.apiAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	if b.metricsAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	b.dataDir = filepath.Join(opts.Dir, "data")
	if b.logFile, err = os.Create(filepath.Join(opts.Dir, "proxy.log")); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *battery) pushRelease(ctx context.Context, n int) error {
	fw := make([]byte, 16<<10)
	for i := range fw {
		fw[i] = byte(b.rng.Uint32())
	}
	_, err := b.fakes.Cloud.PushRelease(ctx, b.app.ID, cloud.ReleaseSpec{Layers: []cloud.Layer{{Files: map[string][]byte{
		"assets/firmware.bin":   fw,
		"assets/manifest.json":  fmt.Appendf(nil, `{"version":"%d.0.0"}`, n),
		"assets/calib/zone.hex": []byte(":00000001FF\n"),
	}}}})
	return err
}

func (b *battery) close() {
	if b.proc != nil && b.proc.Process != nil {
		b.proc.Process.Kill()
		<-b.procDone
	}
	if b.hookSrv != nil {
		b.hookSrv.Close()
	}
	b.cloudMu.Lock()
	if b.cloudSrv != nil {
		b.cloudSrv.Close()
	}
	b.cloudMu.Unlock()
	if b.fakes != nil {
		b.fakes.Close()
	}
	if b.logFile != nil {
		b.logFile.Close()
	}
}

func (b *battery) note(what string) {
	b.mu.Lock()
	e := event{at: time.Now(), what: what, window: inDoubt}
	if what == "kill" {
		e.window = max(inDoubt, b.commitLagLocked(e.at))
	}
	b.events = append(b.events, e)
	b.mu.Unlock()
}

// putDone is a PUT the proxy answered 200: when, and how long it took.
type putDone struct {
	at   time.Time
	took time.Duration
}

func (b *battery) notePut(took time.Duration) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	i := 0
	for i < len(b.puts) && now.Sub(b.puts[i].at) > 3*time.Second {
		i++
	}
	b.puts = append(b.puts[i:], putDone{at: now, took: took})
}

// commitLagLocked is the longest a PUT answered 200 in the two seconds
// before t took: the proxy answers a PUT once it is committed, so this is
// what a commit took on the machine just then (group commit behind other
// writers, scheduling). A kill within that long of an answer may have come
// before the proxy recorded what the answer told it.
func (b *battery) commitLagLocked(t time.Time) time.Duration {
	var lag time.Duration
	for _, p := range b.puts {
		if t.Sub(p.at) <= 2*time.Second {
			lag = max(lag, p.took)
		}
	}
	return lag
}

// cloudUp serves the fake cloud on cloudAddr again.
func (b *battery) cloudUp() error {
	var ln net.Listener
	var err error
	for range 50 { // the port of the closed listener may take a moment
		if ln, err = net.Listen("tcp", b.cloudAddr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("cloud listener back on %s: %w", b.cloudAddr, err)
	}
	b.cloudMu.Lock()
	b.cloudSrv = httpserver.Start(ln, b.recordLogs(b.fakes.Cloud), httpserver.Options{})
	b.cloudMu.Unlock()
	return nil
}

// cloudDown closes the cloud's listener and every connection: requests in
// flight lose their answer, new ones are refused.
func (b *battery) cloudDown() {
	b.note("cloud-down")
	b.cloudMu.Lock()
	b.cloudSrv.Close()
	b.cloudSrv = nil
	b.cloudMu.Unlock()
}

// recordLogs notes every log-stream request the cloud answers: when, its
// status and the messages it carried.
func (b *battery) recordLogs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/log-stream") {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // the proxy went away mid-request
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sw := &httpserver.StatusRecorder{ResponseWriter: w}
		// Deferred: a fault that drops the answer aborts the handler.
		defer func() {
			lr := logRequest{start: start, end: time.Now()}
			if sw.Written() {
				lr.status = sw.Status()
			}
			dec := json.NewDecoder(bytes.NewReader(body))
			for {
				var l cloudapi.LogLine
				if dec.Decode(&l) != nil {
					break
				}
				lr.messages = append(lr.messages, l.Message)
			}
			b.mu.Lock()
			b.logReqs = append(b.logReqs, lr)
			b.mu.Unlock()
		}()
		next.ServeHTTP(sw, r)
	})
}

// serveHook acknowledges every hook (200) and notes the update hooks.
func (b *battery) serveHook(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	uuid := strings.TrimPrefix(r.URL.Path, "/v1/devices/")
	var body struct {
		Commit string `json:"commit"`
	}
	isUpdate := r.Method == http.MethodPut && !strings.Contains(uuid, "/")
	if isUpdate && json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body) != nil {
		http.Error(w, "bad hook body", http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
	http.NewResponseController(w).Flush()
	if isUpdate {
		b.mu.Lock()
		b.hooks = append(b.hooks, hookSeen{uuid: uuid, commit: body.Commit, arrived: arrived, answered: time.Now()})
		b.mu.Unlock()
	}
}

// startProxy starts `depharness proxy` on the same DATA_DIR and waits for
// its first /ping 200.
func (b *battery) startProxy(ctx context.Context) error {
	host, port, _ := net.SplitHostPort(b.apiAddr)
	cmd := exec.Command(b.opts.ProxyBin, "proxy")
	cmd.Env = append(os.Environ(),
		"API_ENDPOINT=http://"+b.cloudAddr,
		"DEVICE_UUID="+b.gw.UUID, "DEVICE_ID="+strconv.FormatInt(b.gw.DeviceID, 10), "DEVICE_API_KEY="+b.gw.APIKey,
		"BALENA_SUPERVISOR_API_KEY="+b.apiKey,
		"DEPHARNESS_LISTEN_HOST="+host, "BALENA_SUPERVISOR_PORT="+port,
		"BALENA_DEPENDENT_DEVICES_HOOK_ADDRESS="+b.hookSrv.URL+"/v1/devices/",
		"DATA_DIR="+b.dataDir, "METRICS_ADDRESS="+b.metricsAddr,
		"TARGET_POLL_INTERVAL="+pollInterval.String(), "HOOK_RETRY_INTERVAL="+hookRetry.String(),
		"HOOK_TIMEOUT="+hookTimeout.String(), "HOOK_CONCURRENCY=32", "CLOUD_TIMEOUT="+cloudTimeout.String(),
		"SERVER_HEADER_TIMEOUT="+headerTimeout.String(), "SERVER_BODY_TIMEOUT="+bodyTimeout.String(),
		"SERVER_IDLE_TIMEOUT="+idleTimeout.String(),
		"DEPHARNESS_LOG_LEVEL=warn", "DEPHARNESS_VIOLATIONS="+b.opts.Violations,
	)
	cmd.Stdout, cmd.Stderr = b.logFile, b.logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	b.note("start")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start proxy: %w", err)
	}
	b.proc, b.procDone = cmd, make(chan struct{})
	done := b.procDone
	go func() { cmd.Wait(); close(done) }()
	go b.sampleRSS(cmd.Process.Pid, done)
	deadline := time.Now().Add(30 * time.Second)
	hc := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("proxy exited at start (%v): see %s", cmd.ProcessState, b.logFile.Name())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := hc.Get("http://" + b.apiAddr + "/ping"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("proxy: no /ping 200 within 30s")
}

// sampleRSS keeps the peak of the process's VmHWM (its own peak RSS).
func (b *battery) sampleRSS(pid int, done <-chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if hwm := readHWM(pid); hwm > 0 {
			b.mu.Lock()
			b.peakRSS = max(b.peakRSS, hwm)
			b.mu.Unlock()
		}
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

func readHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// scrapeDrops reads the running proxy's documented drops of log lines:
// the buffer's (full: LOG_BUFFER_LINES or LOG_BUFFER_BYTES, oldest first)
// and the lines the cloud refused alone (400, 413). A line dropped for any
// other reason (the cloud unavailable, say) is not a documented drop: it
// counts as lost.
func (b *battery) scrapeDrops() {
	hc := &http.Client{Timeout: time.Second}
	resp, err := hc.Get("http://" + b.metricsAddr + "/metrics")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		series, _, _ := strings.Cut(name, "{")
		buffer := series == "depharness_proxy_log_buffer_dropped_total"
		refused := series == "depharness_proxy_outbox_dropped_total" && strings.Contains(name, `kind="log"`) && strings.Contains(name, `reason="refused_`)
		if !buffer && !refused {
			continue
		}
		fs := strings.Fields(line)
		v, err := strconv.ParseFloat(fs[len(fs)-1], 64)
		if err == nil {
			sum += v
		}
	}
	b.mu.Lock()
	b.curDrops = max(b.curDrops, sum)
	b.mu.Unlock()
}

// kill SIGKILLs the proxy and waits for it to be gone. It reports whether
// the proxy was still running (false: it had exited by itself).
func (b *battery) kill() (wasRunning bool) {
	select {
	case <-b.procDone:
	default:
		wasRunning = true
	}
	b.scrapeDrops()
	if hwm := readHWM(b.proc.Process.Pid); hwm > 0 {
		b.mu.Lock()
		b.peakRSS = max(b.peakRSS, hwm)
		b.mu.Unlock()
	}
	b.note("kill")
	syscall.Kill(-b.proc.Process.Pid, syscall.SIGKILL)
	<-b.procDone
	b.mu.Lock()
	b.dropped += b.curDrops
	b.curDrops = 0
	b.mu.Unlock()
	b.proc = nil
	return wasRunning
}

// integrity runs PRAGMA integrity_check on the stopped proxy's database.
func (b *battery) integrity(fig *Figures) {
	fig.IntegrityChecks++
	path := filepath.Join(b.dataDir, "depharness-proxy.sqlite")
	res, err := integrityCheck(path)
	if err != nil || res != "ok" {
		fig.IntegrityFailures++
		fig.IntegrityNotes = append(fig.IntegrityNotes, fmt.Sprintf("check %d: %q %v", fig.IntegrityChecks, res, err))
	}
}

func integrityCheck(path string) (string, error) {
	if _, err := os.Stat(path); err != nil {
		return "", err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return "", err
	}
	defer db.Close()
	rows, err := db.Query("PRAGMA integrity_check")
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return "", err
		}
		out = append(out, s)
	}
	return strings.Join(out, "; "), rows.Err()
}

// stopProxy ends the last incarnation with SIGTERM and checks the database
// once more.
func (b *battery) stopProxy(fig *Figures) error {
	if b.proc == nil {
		return nil
	}
	b.scrapeDrops()
	syscall.Kill(-b.proc.Process.Pid, syscall.SIGTERM)
	select {
	case <-b.procDone:
	case <-time.After(20 * time.Second):
		syscall.Kill(-b.proc.Process.Pid, syscall.SIGKILL)
		<-b.procDone
		fig.Notes = append(fig.Notes, "the proxy did not stop within 20 s of SIGTERM")
	}
	b.proc = nil
	b.integrity(fig)
	b.mu.Lock()
	fig.PeakRSS = b.peakRSS
	b.mu.Unlock()
	return nil
}
