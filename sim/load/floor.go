package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The floor of a phase: the time its HTTP round trips take when nothing but
// HTTP is done. A phase counts the round trips it caused, by kind (hooks,
// the gateway's requests to the supervisor, the supervisor's requests to the
// cloud, image pulls from the registry); MeasureFloor then sends the same
// number of each kind, with the concurrency and body sizes the kind had, to
// a bare net/http handler on loopback in the same process. The phase's time
// over the floor's says how much of the time the system under test adds to
// moving the bytes.

// RoundTrips are the HTTP round trips of one kind a phase caused.
type RoundTrips struct {
	// Kind names the traffic: "hook update", "PUT /v1/devices/{uuid}",
	// "cloud patch", "registry GET"...
	Kind string `json:"kind"`
	// From is who sent them: "supervisor" (hooks, requests to the cloud
	// and registry), "gateway" (supervisor API requests) or "harness"
	// (the scenario's own requests to the cloud's control API).
	From  string `json:"from"`
	Count int64  `json:"count"`
	// Concurrency is the most that were in flight at once, as observed;
	// for kinds the harness cannot observe (the supervisor's requests to
	// the cloud and registry), the supervisor's stated concurrency
	// (Options.SupervisorConcurrency).
	Concurrency int `json:"concurrency"`
	// RequestBytes and ResponseBytes are the mean body sizes, where
	// known.
	RequestBytes  int `json:"request_bytes"`
	ResponseBytes int `json:"response_bytes"`
}

// Floor is what MeasureFloor found for a phase.
type Floor struct {
	// Seconds is the time the phase's round trips took against the bare
	// handler, every kind at once, each with its concurrency.
	Seconds float64 `json:"seconds"`
	// RoundTrips is the number of round trips of the phase.
	RoundTrips int64 `json:"round_trips"`
	// Sent is the number of round trips sent: all of them, or, for a phase
	// of more than MaxFloorRoundTrips, that many in the same mix, the time
	// they took scaled up to all of them.
	Sent int64 `json:"sent"`
	// Ratio is the phase's time over Seconds; 0 when either is 0.
	Ratio float64 `json:"ratio"`
	Error string  `json:"error,omitempty"`
}

// maxFloorBody bounds the bodies MeasureFloor sends and answers: a kind
// whose mean body is larger (a firmware download) is sent with this many
// bytes, which understates its floor.
const maxFloorBody = 64 << 20

// floorTries and floorBudget: MeasureFloor sends a phase's round trips up
// to floorTries times, while the tries so far took less than floorBudget,
// and keeps the fastest; on a shared machine one try may be slowed by
// others.
const (
	floorTries  = 3
	floorBudget = 5 * time.Second
)

// MaxFloorRoundTrips bounds the round trips MeasureFloor sends for one
// phase: a larger phase's are sent in proportion (each kind at least once)
// and the time they took is scaled up, so that the floor of a million
// devices' provisioning does not take longer than a fleet of ten thousand.
const MaxFloorRoundTrips = 200_000

// MeasureFloor sends res.RoundTrips to a bare net/http handler on a
// loopback listener of this process: every kind at once, each with its
// concurrency and its mean request and answer sizes, over kept-alive
// connections; the fastest of up to three tries is the floor (see
// MaxFloorRoundTrips for large phases). It sets res.Floor; the error is
// also in res.Floor.Error.
func MeasureFloor(ctx context.Context, res *Result) error {
	var f Floor
	var err error
	spent := 0.0
	for try := 0; try < floorTries && spent < floorBudget.Seconds(); try++ {
		var t Floor
		t, err = measureFloor(ctx, res.RoundTrips, MaxFloorRoundTrips)
		if err != nil {
			break
		}
		spent += t.Seconds
		if try == 0 || t.Seconds < f.Seconds {
			f = t
		}
	}
	if err != nil {
		f.Error = err.Error()
	} else if f.Seconds > 0 && res.Seconds > 0 {
		f.Ratio = round3(res.Seconds / f.Seconds)
	}
	f.Seconds = math.Round(f.Seconds*1e6) / 1e6
	res.Floor = &f
	return err
}

// measureFloor sends all, or limit of them in the same mix.
func measureFloor(ctx context.Context, all []RoundTrips, limit int64) (Floor, error) {
	var f Floor
	for _, k := range all {
		f.RoundTrips += max(k.Count, 0)
	}
	if f.RoundTrips == 0 {
		return f, nil
	}
	var kinds []RoundTrips
	var body []byte
	conns := 0
	for _, k := range all {
		if k.Count <= 0 {
			continue
		}
		if f.RoundTrips > limit {
			k.Count = max(1, k.Count*limit/f.RoundTrips)
		}
		kinds = append(kinds, k)
		f.Sent += k.Count
		conns += max(k.Concurrency, 1)
		body = growTo(body, min(max(k.RequestBytes, k.ResponseBytes), maxFloorBody))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return f, fmt.Errorf("floor: %w", err)
	}
	// The bare handler: it reads the request's body and answers the size
	// the path asks for.
	var served atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		n, _ := strconv.Atoi(r.URL.Path[1:])
		n = min(max(n, 0), len(body))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(body[:n])
	}), ReadHeaderTimeout: 10 * time.Second}
	serving := make(chan error, 1)
	go func() { serving <- srv.Serve(ln) }()
	defer func() {
		_ = srv.Close()
		<-serving
	}()
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	base := "http://" + ln.Addr().String() + "/"

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	start := time.Now()
	for _, k := range kinds {
		if k.Count <= 0 {
			continue
		}
		url := base + strconv.Itoa(min(k.ResponseBytes, maxFloorBody))
		reqBody := body[:min(k.RequestBytes, maxFloorBody)]
		var next atomic.Int64
		for range min(int64(max(k.Concurrency, 1)), k.Count) {
			wg.Go(func() {
				for next.Add(1) <= k.Count {
					if err := floorRoundTrip(ctx, hc, url, reqBody); err != nil {
						errMu.Lock()
						if firstErr == nil {
							firstErr = fmt.Errorf("floor: %s: %w", k.Kind, err)
						}
						errMu.Unlock()
						cancel()
						return
					}
				}
			})
		}
	}
	wg.Wait()
	f.Seconds = time.Since(start).Seconds() * float64(f.RoundTrips) / float64(f.Sent)
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if n := served.Load(); firstErr == nil && n != f.Sent {
		firstErr = fmt.Errorf("floor: the handler served %d round trips, want %d", n, f.Sent)
	}
	return f, firstErr
}

func floorRoundTrip(ctx context.Context, hc *http.Client, url string, body []byte) error {
	method, rd := http.MethodGet, io.Reader(nil)
	if len(body) > 0 {
		method, rd = http.MethodPut, bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	return err
}

func growTo(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	nb := make([]byte, n)
	for i := range nb {
		nb[i] = 'a' + byte(i%26)
	}
	return nb
}
