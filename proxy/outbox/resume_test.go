package outbox

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/internal/syncbuf"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy/store"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes and the test.
type syncBuffer = syncbuf.Buffer

// Issue 10, finding 2b: the outbox logged "cloud available again: outbox
// delivery resumed" after any round without an error, also one that found
// nothing to send while the cloud was still down. It may say so only after
// the cloud answered. Before the change this test saw the message while
// the cloud still answered 503.
func TestResumptionIsLoggedOnlyAfterTheCloudAnswered(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	e.cloud.mu.Lock()
	e.cloud.down = true
	e.cloud.mu.Unlock()
	e.run()
	e.logLine("dev-a", "first")
	testkit.Eventually(t, "a failed delivery", func() bool { return strings.Contains(logs.String(), "outbox delivery paused") })
	// The line goes without the cloud taking it (as when the full buffer
	// drops it): the next rounds find nothing to send.
	rows, err := e.store.NextOutbox(context.Background(), store.OutboxLog, 10)
	if err != nil || len(rows) != 1 {
		t.Fatalf("queued rows: %v, %v", rows, err)
	}
	if _, err := e.store.AckOutboxRows(context.Background(), store.OutboxLog, []int64{rows[0].Seq}); err != nil {
		t.Fatal(err)
	}
	// A round ran and found nothing: the depth gauge, set after each
	// round, drops to 0.
	testkit.Eventually(t, "a round that found nothing", func() bool {
		e.ob.Notify()
		return testutil.ToFloat64(e.ob.metrics.depth.WithLabelValues(string(store.OutboxLog))) == 0
	})
	e.ob.Notify()
	sleep(context.Background(), 50*time.Millisecond)
	if strings.Contains(logs.String(), "delivery resumed") {
		t.Fatalf("resumption logged while the cloud was down:\n%s", logs.String())
	}
	e.cloud.mu.Lock()
	e.cloud.down = false
	e.cloud.mu.Unlock()
	e.logLine("dev-a", "second")
	testkit.Eventually(t, "the resumption logged after a delivery", func() bool { return strings.Contains(logs.String(), "kind=log after_failures") })
}
