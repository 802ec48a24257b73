package load

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Progress draws a progress bar on a terminal, or a line every few seconds
// elsewhere (a log file, a CI console). It is safe for concurrent use.
type Progress struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	lastLine time.Time
	lastBar  time.Time
	// Every is the interval of plain lines when w is not a terminal; zero
	// means 2s.
	Every time.Duration
}

// NewProgress returns a Progress writing to w; it draws a bar when w is a
// character device.
func NewProgress(w io.Writer) *Progress {
	p := &Progress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// Show reports n of total done after el.
func (p *Progress) Show(what string, n, total int, el time.Duration) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		// A terminal redraws at most ten times a second.
		if time.Since(p.lastBar) < 100*time.Millisecond {
			return
		}
		p.lastBar = time.Now()
		const width = 30
		filled := 0
		if total > 0 {
			filled = min(max(n*width/total, 0), width)
		}
		fmt.Fprintf(p.w, "\r%-28s [%s%s] %d/%d devices  %5.1fs", what, strings.Repeat("#", filled), strings.Repeat(".", width-filled), n, total, el.Seconds())
		return
	}
	every := p.Every
	if every <= 0 {
		every = 2 * time.Second
	}
	if time.Since(p.lastLine) >= every {
		p.lastLine = time.Now()
		fmt.Fprintf(p.w, "%s: %d/%d devices converged (%.1fs)\n", what, n, total, el.Seconds())
	}
}

// Done ends a bar: every one of total converged after el.
func (p *Progress) Done(what string, total int, el time.Duration) {
	p.end(fmt.Sprintf("%s: all %d devices converged in %.1fs", what, total, el.Seconds()))
}

// Fail ends a bar that did not complete: n of total after el, and why.
func (p *Progress) Fail(what string, n, total int, el time.Duration, why string) {
	p.end(fmt.Sprintf("%s: %d/%d devices converged in %.1fs: %s", what, n, total, el.Seconds(), why))
}

// end ends a bar with its last line, if any.
func (p *Progress) end(line string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprintln(p.w)
	}
	p.lastLine = time.Time{}
	if line != "" {
		fmt.Fprintln(p.w, line)
	}
}

// Interrupt ends a bar without a verdict (the run was interrupted).
func (p *Progress) Interrupt() { p.end("") }
