package hooks

import (
	"net/http"
	"testing"
	"time"

	"github.com/depharness/depharness/proxy/violation"
)

// cadence-2x paces hooks and 202 repeats at 2 retry intervals (HOOK-202
// allows up to 3) and backs off twice as long, never beyond BackoffMax (10
// retry intervals by default: HOOK-ERR's bound). no-keepalive closes every
// hook connection.
func TestAllowancesCadence2xAndNoKeepalive(t *testing.T) {
	w := newWorld(t)
	const ri = 100 * time.Millisecond
	mk := func(allow string) *Dispatcher {
		s, err := violation.ParseAllowances(allow)
		if err != nil {
			t.Fatal(err)
		}
		d, err := New(Options{Store: w.st, BaseAddress: "http://127.0.0.1:1/v1/devices/", RetryInterval: ri, Violations: s})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	ref, slow := mk(""), mk("cadence-2x")
	now := time.Now()
	st := &devState{lastSent: now}
	if got := ref.earliest(st, time.Time{}, now); got.Sub(now) != ri {
		t.Errorf("reference pacing: next after %s, want %s", got.Sub(now), ri)
	}
	if got := slow.earliest(st, time.Time{}, now); got.Sub(now) != 2*ri {
		t.Errorf("cadence-2x pacing: next after %s, want %s", got.Sub(now), 2*ri)
	}
	for n := 1; n <= 6; n++ {
		b := slow.backoff(n)
		if b < ri || b > 10*ri {
			t.Errorf("cadence-2x backoff after %d failures = %s, want within [%s, %s]", n, b, ri, 10*ri)
		}
	}
	if b := slow.backoff(1); b < 2*ri*8/10 {
		t.Errorf("cadence-2x first backoff = %s, want about twice the retry interval", b)
	}
	tr := func(d *Dispatcher) *http.Transport { return d.client.Transport.(*http.Transport) }
	if tr(ref).DisableKeepAlives || !tr(mk("no-keepalive")).DisableKeepAlives {
		t.Error("no-keepalive: want keep-alives off with it only")
	}
}
