// Package backoff computes the waits of a capped exponential backoff with
// jitter, for the loops that retry after a failure.
//
// It imports only the standard library.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Jittered is the wait after n consecutive failures (n ≥ 1): base·2^(n-1),
// capped at max, jittered uniformly into [½, 1] of that by r. r is not
// safe for concurrent use: callers sharing one hold their lock.
func Jittered(base, max time.Duration, n int, r *rand.Rand) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d/2 + time.Duration(r.Int64N(int64(d/2)+1))
}
