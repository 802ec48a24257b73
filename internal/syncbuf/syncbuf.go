// Package syncbuf is a bytes.Buffer safe for concurrent use: a logger's
// writes from many goroutines and a test reading what was logged; and
// Lines, a writer that hands on what is written to it line by line.
//
// It imports only the standard library.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer behind a mutex. The zero value is empty and
// ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Lines is a writer that calls Line with each complete line written to it,
// without its newline, one call at a time. What follows the last newline
// waits for the rest of its line, or for Flush. Line must be set before the
// first Write.
type Lines struct {
	Line func(string) error

	mu      sync.Mutex
	partial []byte
}

// Write hands on every line p completes; an error from Line stops it.
func (l *Lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		if err := l.Line(line); err != nil {
			return len(p), err
		}
	}
}

// Flush calls end with what follows the last newline (empty if nothing
// does) and forgets it; no Line call runs meanwhile.
func (l *Lines) Flush(end func(rest []byte) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	rest := l.partial
	l.partial = nil
	return end(rest)
}
