// Package ctxtime holds waits that a context cuts short.
//
// It imports only the standard library.
package ctxtime

import (
	"context"
	"time"
)

// Sleep waits for d, or until ctx is done: then it returns ctx.Err(). A
// d <= 0 returns ctx.Err() at once.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
