// Package broadcast wakes the goroutines that wait for something to
// change: the fakes' and test servers' Await functions, and the fake
// cloud's state-file saver.
//
// It imports only the standard library.
package broadcast

import (
	"context"
	"sync"
)

// Signal tells its waiters that something changed. The zero value is ready
// to use; it is safe for concurrent use and needs no lock of its owner.
type Signal struct {
	mu sync.Mutex
	ch chan struct{} // closed by the next Notify; nil while nobody waits
}

// C returns a channel that the next Notify closes. Take it before looking
// at what it signals the change of: a change after the look then closes it,
// so that none is missed.
func (s *Signal) C() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Notify wakes every waiter: it closes the channel C handed out since the
// last Notify, if any.
func (s *Signal) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// Await calls done now and after every Notify until it returns true, and
// returns nil then; or ctx's error once ctx is done. done takes whatever
// locks the state it reads needs.
func (s *Signal) Await(ctx context.Context, done func() bool) error {
	for {
		ch := s.C()
		if done() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
