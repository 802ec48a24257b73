package httpapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
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
	var (
		mu  sync.Mutex
		all []time.Duration
	)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		do := client()
		var lat []time.Duration
		for i := 0; pb.Next(); i++ {
			start := time.Now()
			if err := do(c, i); err != nil {
				b.Error(err)
				return
			}
			lat = append(lat, time.Since(start))
		}
		mu.Lock()
		all = append(all, lat...)
		mu.Unlock()
	})
	b.StopTimer()
	reportLatency(b, all)
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

func mustFetch(b *testing.B, c *http.Client, url string) []byte {
	body, err := fetch(c, url, http.StatusOK)
	if err != nil {
		b.Fatal(err)
	}
	return body
}
