package defaults

import (
	"bytes"
	"log/slog"
	"testing"
	"time"
)

func TestPositiveReplacesZeroAndNegativeValuesOnly(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{0, time.Minute},
		{-time.Second, time.Minute},
		{time.Second, time.Second},
	} {
		got := tc.in
		Positive(&got, time.Minute)
		if got != tc.want {
			t.Errorf("Positive(%v, 1m): got %v, want %v", tc.in, got, tc.want)
		}
	}
	n := 0
	Positive(&n, 16)
	f := 0.5
	Positive(&f, 0.1)
	if n != 16 || f != 0.5 {
		t.Errorf("Positive on an int and a float: got %d and %v, want 16 and 0.5", n, f)
	}
}

func TestLoggerAndClockFillOnlyUnsetOptions(t *testing.T) {
	var log *slog.Logger
	var now func() time.Time
	Logger(&log)
	Clock(&now)
	if log == nil || log.Enabled(t.Context(), slog.LevelError) {
		t.Errorf("unset logger: got %v, want one that discards every level", log)
	}
	if now == nil || time.Since(now()) > time.Minute {
		t.Error("unset clock: got none or not the wall clock, want time.Now")
	}

	var buf bytes.Buffer
	mine := slog.New(slog.NewTextHandler(&buf, nil))
	fixed := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	log, now = mine, func() time.Time { return fixed }
	Logger(&log)
	Clock(&now)
	if log != mine || !now().Equal(fixed) {
		t.Errorf("set options: got logger %p and time %v, want %p and %v kept", log, now(), mine, fixed)
	}
}
