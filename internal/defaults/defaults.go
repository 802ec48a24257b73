// Package defaults fills the unset fields of an options struct with their
// defaults, for the constructors whose options' zero values mean "the
// default".
//
// It imports only the standard library.
package defaults

import (
	"log/slog"
	"time"
)

// number is what Positive takes: counts, sizes and durations.
type number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~float32 | ~float64
}

// Positive sets *p to d unless *p is positive: the zero value of the
// option (or a negative one, which would make no sense) means its default.
func Positive[T number](p *T, d T) {
	if *p <= 0 {
		*p = d
	}
}

// Logger sets *p, unless set, to a logger that discards everything: an
// unset logger option means silence.
func Logger(p **slog.Logger) {
	if *p == nil {
		*p = slog.New(slog.DiscardHandler)
	}
}

// Clock sets *p, unless set, to time.Now: an unset clock option means the
// wall clock.
func Clock(p *func() time.Time) {
	if *p == nil {
		*p = time.Now
	}
}
