package features

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"sync"
)

// featureHeaders passes godog's pretty output through, once per feature:
// the run gives godog one path per scenario (schedule.go), and godog prints
// a feature's header ("Feature: name" and its description) for each path.
// A header already printed is left out, with the blank line before it and
// its description lines (the lines indented by two spaces that follow it).
type featureHeaders struct {
	out io.Writer

	mu       sync.Mutex
	partial  []byte
	seen     map[string]bool
	blank    bool // a blank line held back: it may precede a repeated header
	skipping bool // inside a repeated header's description
}

func newFeatureHeaders(out io.Writer) *featureHeaders {
	return &featureHeaders{out: out, seen: map[string]bool{}}
}

var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;]*m`)

func (f *featureHeaders) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.partial = append(f.partial, p...)
	for {
		i := bytes.IndexByte(f.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(f.partial[:i])
		f.partial = f.partial[i+1:]
		if err := f.line(line); err != nil {
			return len(p), err
		}
	}
}

func (f *featureHeaders) line(line string) error {
	plain := ansiEscape.ReplaceAllString(line, "")
	if f.skipping {
		if len(plain) > 2 && strings.HasPrefix(plain, "  ") && plain[2] != ' ' {
			return nil
		}
		f.skipping = false
	}
	if strings.TrimSpace(plain) == "" {
		err := f.flushBlank()
		f.blank = true
		return err
	}
	if strings.HasPrefix(plain, "Feature:") {
		if f.seen[plain] {
			f.blank, f.skipping = false, true
			return nil
		}
		f.seen[plain] = true
	}
	if err := f.flushBlank(); err != nil {
		return err
	}
	_, err := io.WriteString(f.out, line+"\n")
	return err
}

func (f *featureHeaders) flushBlank() error {
	if !f.blank {
		return nil
	}
	f.blank = false
	_, err := io.WriteString(f.out, "\n")
	return err
}

// Flush writes what is held back: a blank line, an unterminated last line.
func (f *featureHeaders) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.flushBlank(); err != nil {
		return err
	}
	if len(f.partial) > 0 {
		_, err := f.out.Write(f.partial)
		f.partial = nil
		return err
	}
	return nil
}
