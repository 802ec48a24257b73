package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/depharness/depharness/proxy/store"
)

// Benchmarks of the API over a real loopback server. Run with
//
//	go test -run '^$' -bench . -benchtime 3s ./proxy/httpapi
//
// BenchmarkGetDevice64 against BenchmarkBareHandler64 gives the API's cost
// over net/http alone for the same bytes at 64 concurrent clients.
// BenchmarkPutDevice64 and BenchmarkListDevices10kAfterWrite measure their
// floor in the same run: the same requests against a bare net/http handler
// that answers the same bytes, reported beside the API's numbers and as a
// ratio (floor-ratio: the API's rate over the floor's, or the floor's
// latency over the API's; 1 would be no cost over net/http).

// benchClient is an HTTP client that keeps enough idle connections for 64
// concurrent clients.
func benchClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 256
	return &http.Client{Transport: t, Timeout: 30 * time.Second}
}

// runParallel64 runs get from 64 concurrent clients and reports the p99
// latency.
func runParallel64(b *testing.B, get func(c *http.Client) error) {
	runParallel(b, 64, func() func(*http.Client, int) error {
		return func(c *http.Client, _ int) error { return get(c) }
	})
}

// runParallel runs requests from clients concurrent clients and reports
// the latencies: each client calls client once, then the function it
// returns with its request count (0, 1, …) until the benchmark is done.
func runParallel(b *testing.B, clients int, client func() func(c *http.Client, i int) error) {
	c := benchClient()
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((clients + procs - 1) / procs)
	var lat latencies
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		do := client()
		lat.time(b, pb.Next, func(i int) error { return do(c, i) })
	})
	b.StopTimer()
	reportLatency(b, lat.all)
}

// latencies gathers how long the calls of concurrent clients took.
type latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

// time calls do(0), do(1), … while more allows, and adds how long each
// took; the first that fails is reported on b and ends the calls.
func (l *latencies) time(b *testing.B, more func() bool, do func(i int) error) {
	var mine []time.Duration
	for i := 0; more(); i++ {
		start := time.Now()
		if err := do(i); err != nil {
			b.Error(err)
			break
		}
		mine = append(mine, time.Since(start))
	}
	l.mu.Lock()
	l.all = append(l.all, mine...)
	l.mu.Unlock()
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*50/100].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "req/s")
}

func fetch(c *http.Client, url string, want int) ([]byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("status %d %s", resp.StatusCode, body)
	}
	return body, nil
}

func BenchmarkGetDevice64(b *testing.B) {
	f := newDeviceFixture(b)
	url := f.srv.URL + "/v1/devices/" + f.plain + "?apikey=" + testKey
	runParallel64(b, func(c *http.Client) error {
		_, err := fetch(c, url, http.StatusOK)
		return err
	})
}

// BenchmarkGetDevice64WithWrites is BenchmarkGetDevice64 while another
// client PUTs a new status to the same device every millisecond, so that
// reads keep missing the read cache.
func BenchmarkGetDevice64WithWrites(b *testing.B) {
	f := newDeviceFixture(b)
	url := f.srv.URL + "/v1/devices/" + f.plain + "?apikey=" + testKey
	stop := make(chan struct{})
	var writes sync.WaitGroup
	writes.Add(1)
	go func() {
		defer writes.Done()
		c := benchClient()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if err := put(c, url, fmt.Sprintf(`{"status":"s%d"}`, i)); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	defer func() { close(stop); writes.Wait() }()
	runParallel64(b, func(c *http.Client) error {
		_, err := fetch(c, url, http.StatusOK)
		return err
	})
}

func BenchmarkBareHandler64(b *testing.B) {
	f := newDeviceFixture(b)
	body, err := fetch(benchClient(), f.srv.URL+"/v1/devices/"+f.plain+"?apikey="+testKey, http.StatusOK)
	if err != nil {
		b.Fatal(err)
	}
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(body)
	}))
	b.Cleanup(bare.Close)
	url := bare.URL + "/v1/devices/" + f.plain + "?apikey=" + testKey
	runParallel64(b, func(c *http.Client) error {
		_, err := fetch(c, url, http.StatusOK)
		return err
	})
}

// BenchmarkPutDevice is durable PUTs per second from one client: each
// answer comes after the change and its outbox row are committed.
func BenchmarkPutDevice(b *testing.B) {
	f := newDeviceFixture(b)
	c := benchClient()
	url := f.srv.URL + "/v1/devices/" + f.plain + "?apikey=" + testKey
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if err := put(c, url, fmt.Sprintf(`{"status":"s%d","is_online":%v}`, i, i%2 == 0)); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// BenchmarkPutDevice16 is durable PUTs per second from 16 concurrent
// clients, each on its own device.
func BenchmarkPutDevice16(b *testing.B) {
	e := newEnv(b)
	uuids := make(chan string, 64)
	for i := 0; i < 64; i++ {
		uuids <- e.provision(5)
	}
	runParallel(b, 16, func() func(*http.Client, int) error {
		url := e.srv.URL + "/v1/devices/" + <-uuids + "?apikey=" + testKey
		return func(c *http.Client, i int) error { return put(c, url, fmt.Sprintf(`{"status":"s%d"}`, i)) }
	})
}

func put(c *http.Client, url, body string) error {
	req, err := http.NewRequest("PUT", url, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// BenchmarkListDevices10k is GET /v1/devices with 10,000 devices, over
// loopback, body read in full: "cached" lists again what nothing changed
// since (the read cache answers), "after-a-write" lists after a status
// report changed one device (SQLite and the encoder answer; the write is
// not timed).
func BenchmarkListDevices10k(b *testing.B) {
	e := newEnv(b)
	seedList10k(b, e)
	c := benchClient()
	url := e.srv.URL + "/v1/devices?apikey=" + testKey
	one := e.srv.URL + "/v1/devices/" + fmt.Sprintf("%032x", 0) + "?apikey=" + testKey
	for _, write := range []bool{false, true} {
		name := "cached"
		if write {
			name = "after-a-write"
		}
		b.Run(name, func(b *testing.B) {
			var (
				lat  []time.Duration
				size int
			)
			for i := 0; b.Loop(); i++ {
				if write {
					if err := put(c, one, fmt.Sprintf(`{"status":"s%d"}`, i)); err != nil {
						b.Fatal(err)
					}
				}
				start := time.Now()
				body, err := fetch(c, url, http.StatusOK)
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				size = len(body)
			}
			if n := strings.Count(string(mustFetch(b, c, url)), `"uuid":`); n != 10000 {
				b.Fatalf("list has %d devices, want 10000", n)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(size), "body-bytes")
		})
	}
}

// seedList10k stores 10,000 devices of app 5 with small target objects,
// app 5 on a downloaded commit.
func seedList10k(b *testing.B, e *testEnv) {
	t := store.Target{Apps: []store.TargetApp{{ID: 5, Name: "app5", Commit: "c5", Image: "reg/app5@sha256:00"}}}
	for i := 0; i < 10000; i++ {
		t.Devices = append(t.Devices, store.TargetDevice{
			UUID: fmt.Sprintf("%032x", i), AppID: 5, Name: fmt.Sprintf("device-%d", i),
			Environment: map[string]string{"A": "1", "LONGER_VARIABLE": "some value"},
			Config:      map[string]string{"RESIN_SUPERVISOR_DELTA": "1"},
			Cloud:       &store.CloudDevice{ID: int64(1000 + i), DeviceType: "generic-amd64", Name: "n"},
		})
	}
	if _, err := e.store.ApplyTarget(context.Background(), t, time.Now()); err != nil {
		b.Fatal(err)
	}
	e.setCurrent(5, "c5")
}

func mustFetch(b *testing.B, c *http.Client, url string) []byte {
	body, err := fetch(c, url, http.StatusOK)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// putLoad runs rounds of PUTs from 64 concurrent clients, client i on
// urls[i%len(urls)], until n PUTs were answered 200, and returns their
// rate and latencies.
func putLoad(b *testing.B, c *http.Client, urls []string, n int) (float64, []time.Duration) {
	const clients = 64
	var (
		wg   sync.WaitGroup
		lat  latencies
		next atomic.Int64
	)
	start := time.Now()
	for i := range clients {
		url := urls[i%len(urls)]
		wg.Go(func() {
			var k int64
			more := func() bool { k = next.Add(1); return k <= int64(n) }
			lat.time(b, more, func(int) error {
				return put(c, url, fmt.Sprintf(`{"status":"s%d","is_online":%v}`, k, k%2 == 0))
			})
		})
	}
	wg.Wait()
	return float64(len(lat.all)) / time.Since(start).Seconds(), lat.all
}

// percentile is the p-th percentile (0-100) of sorted lat.
func percentile(lat []time.Duration, p int) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	return lat[min(len(lat)*p/100, len(lat)-1)]
}

// BenchmarkPutDevice64 is durable PUTs per second from 64 concurrent
// clients, each on its own device: each answer comes after the change and
// its outbox row are committed. Its floor is the same PUTs, from the same
// clients, against a bare net/http handler in this process that reads the
// body and answers the device object the API answers; both run in every
// iteration, the floor first. One op is one PUT through the API.
//
//	go test -run '^$' -bench PutDevice64 -benchtime 20000x ./proxy/httpapi
func BenchmarkPutDevice64(b *testing.B) {
	e := newEnv(b)
	const clients = 64
	urls := make([]string, clients)
	for i := range urls {
		urls[i] = e.srv.URL + "/v1/devices/" + e.provision(5) + "?apikey=" + testKey
	}
	c := benchClient()
	if err := put(c, urls[0], `{"status":"s0","is_online":true}`); err != nil {
		b.Fatal(err)
	}
	body, err := fetch(c, urls[0], http.StatusOK)
	if err != nil {
		b.Fatal(err)
	}
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(body)
	}))
	b.Cleanup(bare.Close)
	bareURLs := make([]string, clients)
	for i, u := range urls {
		bareURLs[i] = bare.URL + strings.TrimPrefix(u, e.srv.URL)
	}
	// Warm both servers' connections.
	putLoad(b, c, bareURLs, 2*clients)
	putLoad(b, c, urls, 2*clients)
	b.ResetTimer()
	b.StopTimer()
	cpu0 := cpuTime()
	floor, _ := putLoad(b, c, bareURLs, b.N)
	floorCPU := cpuTime() - cpu0
	b.StartTimer()
	cpu0 = cpuTime()
	rate, lat := putLoad(b, c, urls, b.N)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(rate, "puts/s")
	b.ReportMetric(float64(percentile(lat, 50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 99).Microseconds()), "p99-µs")
	b.ReportMetric(floor, "floor-puts/s")
	b.ReportMetric(rate/floor, "floor-ratio")
	// CPU of the whole process (clients and server) per PUT: less
	// sensitive than the rates to other load on the machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/put")
	b.ReportMetric(float64(floorCPU.Microseconds())/float64(b.N), "floor-cpu-µs/put")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkListDevices10kAfterWrite is GET /v1/devices with 10,000 devices
// right after a write: each iteration PUTs a new status to one device (not
// timed), then GETs the whole list (timed, body read in full). Its floor is
// the same GET against a bare net/http handler answering the same bytes,
// timed in the same iteration. One op is one PUT and one GET.
//
//	go test -run '^$' -bench ListDevices10kAfterWrite -benchtime 200x ./proxy/httpapi
func BenchmarkListDevices10kAfterWrite(b *testing.B) {
	e := newEnv(b)
	seedList10k(b, e)
	c := benchClient()
	url := e.srv.URL + "/v1/devices?apikey=" + testKey
	list := mustFetch(b, c, url)
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(list)
	}))
	b.Cleanup(bare.Close)
	bareURL := bare.URL + "/v1/devices?apikey=" + testKey
	var lat, floor []time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		one := e.srv.URL + "/v1/devices/" + fmt.Sprintf("%032x", (i*7919)%10000) + "?apikey=" + testKey
		if err := put(c, one, fmt.Sprintf(`{"status":"s%d"}`, i)); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		mustFetch(b, c, bareURL)
		floor = append(floor, time.Since(start))
		b.StartTimer()
		start = time.Now()
		body := mustFetch(b, c, url)
		lat = append(lat, time.Since(start))
		if !bytes.Contains(body, fmt.Appendf(nil, `"status":"s%d"`, i)) {
			b.Fatalf("the list after PUT %d lacks its status", i)
		}
	}
	if n := bytes.Count(mustFetch(b, c, url), []byte(`"uuid":`)); n != 10000 {
		b.Fatalf("list has %d devices, want 10000", n)
	}
	slices.Sort(lat)
	slices.Sort(floor)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
	b.ReportMetric(ms(percentile(floor, 50)), "floor-p50-ms")
	b.ReportMetric(ms(percentile(floor, 99)), "floor-p99-ms")
	b.ReportMetric(ms(percentile(floor, 50))/ms(percentile(lat, 50)), "floor-ratio")
}
