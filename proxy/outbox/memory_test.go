package outbox

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/depharness/depharness/proxy/cloudclient"
	"github.com/depharness/depharness/proxy/store"
)

// Issue 10, finding 3: draining 100 buffered lines of 2 MB held them all
// at once (one batch of up to LogBatch lines, read, decoded and encoded
// whole): 542 MB of heap. The batch byte cap (LogBatchBytes) bounds what a
// drain holds. This test drains 100 lines of 2 MB to a cloud that takes
// everything and reports the peak heap growth over the heap before the
// drain (sampled every millisecond). Before the cap: about 600 MB; with
// the default cap (1 MiB, a 2 MB line goes alone) a few times one line.
func TestDrainingLargeLinesHoldsOneBatchAtATime(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200 MB to a temporary database")
	}
	var took atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		took.Add(n)
	}))
	defer srv.Close()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.InsertProvisioned(ctx, store.NewDevice{UUID: "dev-a", AppID: 1, DeviceType: "t", CloudID: 11}); err != nil {
		t.Fatal(err)
	}
	const lines, size = 100, 2 << 20
	{
		payload := []byte(`{"uuid":"dev-a","message":"` + strings.Repeat("x", size) + `","timestamp":1,"isSystem":false}`)
		for range lines {
			if _, err := st.AppendLogBounded(ctx, "dev-a", payload, 0, 1<<40); err != nil {
				t.Fatal(err)
			}
		}
	}
	cc, err := cloudclient.New(cloudclient.Options{BaseURL: srv.URL, GatewayUUID: gwUUID, GatewayID: 1, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	ob, err := New(Options{Store: st, Cloud: cc, IdleCheck: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- ob.Run(rctx) }()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := st.OutboxDepth(ctx, store.OutboxLog); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("drain did not finish in 2 minutes")
		}
	}
	drained := time.Since(start)
	cancel()
	<-done
	close(stop)
	<-sampled
	growth := int64(peak.Load()) - int64(base)
	t.Logf("measured: drained %d lines of %d MB (%d MB sent) in %v; peak heap growth %d MB",
		lines, size>>20, took.Load()>>20, drained.Round(time.Millisecond), growth>>20)
	if took.Load() < lines*size {
		t.Errorf("the cloud took %d bytes, want at least %d", took.Load(), lines*size)
	}
	if limit := int64(64 << 20); growth > limit {
		t.Errorf("peak heap growth %d MB while draining, want at most %d MB (one batch of at most one 2 MB line at a time)", growth>>20, limit>>20)
	}
}
