package features

import (
	"testing"
	"time"
)

func TestLagMeterReportsTheWorstDelayWithinTheInterval(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := &lagMeter{}
	for i, late := range []time.Duration{0, 2 * time.Millisecond, 80 * time.Millisecond, time.Millisecond, 0} {
		m.samples[i] = lagSample{at: base.Add(time.Duration(i) * 100 * time.Millisecond), late: late}
		m.next++
	}
	cases := []struct {
		name     string
		from, to time.Duration
		want     time.Duration
	}{
		{"an interval holding the late wake-up", 150 * time.Millisecond, 250 * time.Millisecond, 80 * time.Millisecond},
		{"an interval the late wake-up's delay reaches into", 100 * time.Millisecond, 130 * time.Millisecond, 80 * time.Millisecond},
		{"an interval after it", 250 * time.Millisecond, 450 * time.Millisecond, time.Millisecond},
		{"an interval before every sample", -time.Second, -time.Millisecond, 0},
	}
	for _, c := range cases {
		if got := m.worst(base.Add(c.from), base.Add(c.to)); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
}

func TestTheLagMeterRunsAndSlackIsAtLeastTheFixedSlack(t *testing.T) {
	start := time.Now()
	schedLag()
	time.Sleep(5 * lagSamplePeriod)
	m := schedLag()
	m.mu.Lock()
	n := m.next
	m.mu.Unlock()
	if n == 0 {
		t.Fatal("the lag meter took no sample in 5 periods")
	}
	if s := slack(start, time.Now()); s < fixedSlack {
		t.Errorf("slack %s is below the fixed slack %s", s, fixedSlack)
	}
}

func TestContractBoundsFollowTheClauses(t *testing.T) {
	b := contractBounds{Timing{Poll: 100 * time.Millisecond, Retry: 300 * time.Millisecond, HookTimeout: time.Second}}
	cases := []struct {
		name      string
		got, want time.Duration
	}{
		{"HOOK-202: 3 retry intervals", b.repeat202(), 900 * time.Millisecond},
		{"HOOK-ERR: 10 retry intervals + HOOK_TIMEOUT", b.retryAfterFailure(), 4 * time.Second},
		{"HOOK-ERR: an answer within half of HOOK_TIMEOUT", b.answerWithin(), 500 * time.Millisecond},
		{"HOOK-ERR: timed out after 2 × HOOK_TIMEOUT", b.timedOut(), 2 * time.Second},
		{"HOOK-UPD-1: 2 polls + 3 retry intervals", b.firstHook(false), 1100 * time.Millisecond},
		{"HOOK-UPD-1: + HOOK_TIMEOUT with a hook in flight", b.firstHook(true), 2100 * time.Millisecond},
		{"CLOUD-STATE: 2 poll intervals", b.pollWindow(), 200 * time.Millisecond},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, c.got, c.want)
		}
	}
}
