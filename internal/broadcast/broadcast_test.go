package broadcast

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestNotifyClosesTheChannelTakenBeforeIt(t *testing.T) {
	var s Signal
	ch := s.C()
	if again := s.C(); again != ch {
		t.Fatal("got a new channel without a Notify, want the same one")
	}
	select {
	case <-ch:
		t.Fatal("channel closed before Notify")
	default:
	}
	s.Notify()
	select {
	case <-ch:
	default:
		t.Fatal("channel still open after Notify")
	}
	next := s.C()
	select {
	case <-next:
		t.Fatal("the channel taken after Notify is closed, want it open until the next one")
	default:
	}
}

func TestNotifyWithoutWaitersDoesNothing(t *testing.T) {
	var s Signal
	s.Notify()
	s.Notify()
	select {
	case <-s.C():
		t.Fatal("a channel taken after the Notify calls is closed")
	default:
	}
}

func TestAwaitSeesEveryChangeMadeByOtherGoroutines(t *testing.T) {
	var (
		s  Signal
		mu sync.Mutex
		n  int
	)
	const want = 200
	go func() {
		for range want {
			mu.Lock()
			n++
			mu.Unlock()
			s.Notify()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	calls := 0
	err := s.Await(ctx, func() bool {
		calls++
		mu.Lock()
		defer mu.Unlock()
		return n == want
	})
	if err != nil {
		t.Fatalf("got %v after %d checks, want the count to reach %d", err, calls, want)
	}
}

func TestAwaitReturnsTheContextErrorWhenNothingChanges(t *testing.T) {
	var s Signal
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	calls := 0
	err := s.Await(ctx, func() bool { calls++; return false })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	if calls != 1 {
		t.Errorf("got %d checks, want 1 (no Notify happened)", calls)
	}
}

func TestAwaitReturnsAtOnceWhenDoneAlready(t *testing.T) {
	var s Signal
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Await(ctx, func() bool { return true }); err != nil {
		t.Errorf("got %v, want nil: the condition held before the context's end mattered", err)
	}
}
