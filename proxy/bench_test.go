package proxy_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/proxy"
	"github.com/depharness/depharness/proxy/config"
	"github.com/depharness/depharness/proxy/store"
)

// Provisioning through the API: POST /v1/devices from 64 concurrent
// clients to a whole reference proxy (store, sync, hooks, outbox, API),
// whose upstream is the fake cloud in this process, keeping its model in a
// state file as `depharness up` does. One op provisions n devices into a
// fresh proxy and cloud (set up untimed) and ends when the last POST was
// answered 201. The floor is the same n POSTs from the same clients to a
// bare net/http handler in this process that answers a provisioning
// response; it runs in the same op, untimed. Reported: devices/s, the
// floor's, their ratio, and synced-s: how long after the first POST the
// proxy's target state held every device (its sync caught up).
//
//	go test -run '^$' -bench 'Provision100k$' -benchtime 1x ./proxy/
func BenchmarkProvision100k(b *testing.B) { benchProvision(b, 100_000) }

// BenchmarkProvision10k is BenchmarkProvision100k with 10,000 devices.
func BenchmarkProvision10k(b *testing.B) { benchProvision(b, 10_000) }

func benchProvision(b *testing.B, n int) {
	const clients = 64
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConns: 2 * clients, MaxIdleConnsPerHost: 2 * clients}}
	var (
		rate, floor, synced float64
		cpu                 time.Duration
	)
	for b.Loop() {
		b.StopTimer()
		w := startProvisionWorld(b)
		bare := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			rw.Header().Set("Content-Type", "application/json")
			rw.WriteHeader(http.StatusCreated)
			io.WriteString(rw, `{"id":1001,"uuid":"0123456789abcdef0123456789abcdef","name":"device-1001","note":null,"device_type":"generic-amd64","device_name":"device-1001"}`)
		}))
		floor += post64(b, c, bare.URL+"/v1/devices?apikey=k", w.body, n, clients)
		bare.Close()
		start := time.Now()
		b.StartTimer()
		cpu0 := cpuTime()
		rate += post64(b, c, w.url+"/v1/devices?apikey=k", w.body, n, clients)
		cpu += cpuTime() - cpu0
		b.StopTimer()
		synced += w.awaitSynced(b, n, start).Seconds()
		w.stop(b)
		b.StartTimer()
	}
	runs := float64(b.N)
	b.ReportMetric(rate/runs, "devices/s")
	b.ReportMetric(floor/runs, "floor-devices/s")
	b.ReportMetric(rate/floor, "floor-ratio")
	b.ReportMetric(synced/runs, "synced-s")
	// CPU of the whole process (clients, proxy and cloud) while
	// provisioning: less sensitive than the rates to other load.
	b.ReportMetric(cpu.Seconds()/runs, "cpu-s")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// provisionWorld is a fake cloud with one gateway and one dependent app, and
// a reference proxy of that gateway.
type provisionWorld struct {
	cloud  *cloud.Server
	srv    *httptest.Server
	url    string // the proxy's API
	body   string // a provisioning request body
	dir    string // the proxy's data directory
	cancel context.CancelFunc
	done   chan error
}

func startProvisionWorld(b *testing.B) *provisionWorld {
	b.Helper()
	dir := b.TempDir()
	cl, err := cloud.New(cloud.Options{Seed: 1, StateFile: filepath.Join(dir, "cloud.json")})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(cl)
	gw, err := cl.CreateGateway(cloud.GatewaySpec{})
	if err != nil {
		b.Fatal(err)
	}
	app, err := cl.CreateApp(cloud.AppSpec{Gateway: gw.UUID})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p, err := proxy.New(config.Config{
		APIEndpoint: srv.URL, DeviceUUID: gw.UUID, DeviceID: gw.DeviceID, DeviceAPIKey: gw.APIKey,
		APIKey: "k", DataDir: filepath.Join(dir, "proxy"), PollInterval: 500 * time.Millisecond,
		MetricsAddress: "off",
	}, proxy.Options{Listener: ln})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &provisionWorld{cloud: cl, srv: srv, url: "http://" + ln.Addr().String(), dir: filepath.Join(dir, "proxy"),
		body: fmt.Sprintf(`{"appId":%d,"device_type":"generic-amd64"}`, app.ID), cancel: cancel, done: make(chan error, 1)}
	go func() { w.done <- p.Run(ctx) }()
	<-p.Ready()
	return w
}

// awaitSynced waits until the proxy's store holds all n devices as seen
// in a cloud target, and returns how long after start that was.
func (w *provisionWorld) awaitSynced(b *testing.B, n int, start time.Time) time.Duration {
	b.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(w.dir, store.FileName)+"?mode=ro")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var seen int
		if err := db.QueryRow(`SELECT COUNT(*) FROM devices WHERE in_target = 1`).Scan(&seen); err != nil {
			b.Fatal(err)
		}
		if seen == n {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			b.Fatalf("after 10 minutes the proxy's store holds %d of %d devices as seen in the target", seen, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *provisionWorld) stop(b *testing.B) {
	w.cancel()
	if err := <-w.done; err != nil {
		b.Error(err)
	}
	w.srv.Close()
	if err := w.cloud.Close(); err != nil {
		b.Error(err)
	}
}

// post64 POSTs body to url n times from the given number of concurrent
// clients, each POST expecting 201, and returns the rate.
func post64(b *testing.B, c *http.Client, url, body string, n, clients int) float64 {
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				resp, err := c.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Errorf("POST /v1/devices: got %d %s, want 201", resp.StatusCode, got)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}
