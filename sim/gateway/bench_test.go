package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/sim/client"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/gateway"
)

// benchSupervisor is the least a supervisor can be for the gateway: it
// provisions, serves one release's assets, and counts the reports that
// name the current commit. Its cost is a floor, so that the benchmark
// measures the gateway.
type benchSupervisor struct {
	tar         []byte
	nextID      atomic.Int64
	mu          sync.Mutex
	commit      []byte // `"commit":"<current>"`
	onTheCommit atomic.Int64
}

func (s *benchSupervisor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/ping":
		io.WriteString(w, "OK")
	case r.Method == http.MethodPost && r.URL.Path == "/v1/devices":
		id := s.nextID.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%d,"uuid":"%032x","name":"d%d","device_type":"generic-amd64"}`, id, id, id)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/devices":
		io.WriteString(w, "[]")
	case r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/x-tar")
		w.Write(s.tar)
	case r.Method == http.MethodPut:
		s.mu.Lock()
		on := bytes.Contains(body, s.commit)
		s.mu.Unlock()
		if on {
			s.onTheCommit.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":1,"uuid":"x","appId":13015,"status":"Idle","is_online":true,"environment":{},"config":{}}`)
	default:
		http.Error(w, "Not found", http.StatusNotFound)
	}
}

func (s *benchSupervisor) release(commit string) {
	s.mu.Lock()
	s.commit = []byte(`"commit":"` + commit + `"`)
	s.mu.Unlock()
	s.onTheCommit.Store(0)
}

// rolloutDevices is the fleet of BenchmarkRollout: go test -bench Rollout
// -benchtime 1x -rollout.devices 1000000 ./sim/gateway/ is a rollout of a
// million devices.
var rolloutDevices = flag.Int("rollout.devices", 2000, "devices of BenchmarkRollout")

// BenchmarkRollout is the gateway's cost per device of a rollout: an update
// hook over HTTP, the shared download, a flash of no time, and two reports,
// against a supervisor that does nearly nothing. Hooks are sent 16 at a
// time (the reference proxy's HOOK_CONCURRENCY); the gateway works 256
// devices at a time, as depharness load runs it. It reports the time and
// the bytes of heap per device (the fleet, the gateway and what they hold,
// after a collection).
func BenchmarkRollout(b *testing.B) {
	const hookConcurrency = 16
	devices := *rolloutDevices
	sup := &benchSupervisor{tar: firmwareTar(b, "bench")}
	supSrv := httptest.NewServer(sup)
	defer supSrv.Close()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 512
	defer tr.CloseIdleConnections()
	c, err := client.New(client.Options{BaseURL: supSrv.URL, APIKey: key, HTTPClient: &http.Client{Transport: tr},
		Retry: client.Retry{MaxAttempts: -1, Rand: rand.New(rand.NewPCG(1, 1))}})
	if err != nil {
		b.Fatal(err)
	}
	fl, err := fleet.New(fleet.Profile{Count: devices, Seed: 1}, fleet.Options{})
	if err != nil {
		b.Fatal(err)
	}
	gw, err := gateway.New(gateway.Options{Client: c, Fleet: fl, Apps: []int64{appID}, Concurrency: 256, Rand: rand.New(rand.NewPCG(2, 2))})
	if err != nil {
		b.Fatal(err)
	}
	hookSrv := httptest.NewServer(gw.Handler())
	defer hookSrv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// A minute, and 5 ms more per device.
	wait := time.Minute + time.Duration(devices)*5*time.Millisecond
	for deadline := time.Now().Add(wait); gw.ManagedCount() < devices; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d devices provisioned after %v", gw.ManagedCount(), devices, wait)
		}
	}
	uuids := gw.UUIDs()
	htr := http.DefaultTransport.(*http.Transport).Clone()
	htr.MaxIdleConnsPerHost = hookConcurrency
	defer htr.CloseIdleConnections()
	hc := &http.Client{Transport: htr}

	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		commit := fmt.Sprintf("%040d", i+1)
		sup.release(commit)
		body, _ := json.Marshal(api.UpdateHook{AppID: appID, Commit: commit, Environment: api.Vars{"LOAD_ENV": strconv.Itoa(i)}, Config: api.Vars{}})
		var next atomic.Int64
		var wg sync.WaitGroup
		for range hookConcurrency {
			wg.Go(func() {
				for j := next.Add(1) - 1; j < int64(devices); j = next.Add(1) - 1 {
					req, _ := http.NewRequest(http.MethodPut, hookSrv.URL+"/v1/devices/"+uuids[j], bytes.NewReader(body))
					resp, err := hc.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("update hook answered %d", resp.StatusCode)
					}
				}
			})
		}
		wg.Wait()
		for deadline := time.Now().Add(wait); sup.onTheCommit.Load() < int64(devices); time.Sleep(100 * time.Microsecond) {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d devices reported %s after %v", sup.onTheCommit.Load(), devices, commit, wait)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*devices), "ns/device")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/float64(devices), "heap-bytes/device")
}
