package hooks

import (
	"context"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// BenchmarkUpdateHooks10k measures delivering 10,000 pending update hooks to
// a gateway that answers 200, from the first send until every target is
// acknowledged in the store, with the default concurrency and with one hook
// at a time as the baseline (the historical behaviour). The goal is ≤ 5 s
// with the default.
//
//	go test -run '^$' -bench UpdateHooks10k -benchtime 3x ./proxy/hooks/
func BenchmarkUpdateHooks10k(b *testing.B) {
	const n = 10000
	for _, conc := range []int{DefaultConcurrency, 1} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			rv := newReceiver(b, func(hookReq, int) int { return http.StatusOK })
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				uuids := make([]string, n)
				for i := range uuids {
					uuids[i] = fmt.Sprintf("%032x", i)
				}
				w := newWorld(b, uuids...)
				w.downloaded("c1")
				b.StartTimer()
				cpu0 := cpuTime()
				r := start(b, w, Options{BaseAddress: rv.base(), Concurrency: conc})
				deadline := time.Now().Add(5 * time.Minute)
				for {
					ok := testutil.ToFloat64(r.d.metrics.deliveries.WithLabelValues(string(KindUpdate), OutcomeOK))
					left := testutil.ToFloat64(r.d.metrics.pending.WithLabelValues(string(KindUpdate)))
					if ok >= n && left == 0 {
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("got %v acknowledged, %v pending after 5m", ok, left)
					}
					time.Sleep(time.Millisecond)
				}
				b.StopTimer()
				cpu += cpuTime() - cpu0
				r.stop()
				if p, err := w.st.PendingHooks(context.Background()); err != nil || len(p) != 0 {
					b.Fatalf("got %d pending (err %v) after delivery, want 0", len(p), err)
				}
				w.st.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "hooks/s")
			// CPU of the whole process (dispatcher, store and receiver): less
			// sensitive than wall time to other load on the machine.
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
