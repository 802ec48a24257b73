package features

import (
	"io"
	"regexp"
	"strings"

	"github.com/depharness/depharness/internal/syncbuf"
)

// featureHeaders passes godog's pretty output through, once per feature:
// the run gives godog one path per scenario (schedule.go), and godog prints
// a feature's header ("Feature: name" and its description) for each path.
// A header already printed is left out, with the blank line before it and
// its description lines (the lines indented by two spaces that follow it).
type featureHeaders struct {
	out   io.Writer
	lines syncbuf.Lines // calls line

	seen     map[string]bool
	blank    bool // a blank line held back: it may precede a repeated header
	skipping bool // inside a repeated header's description
}

func newFeatureHeaders(out io.Writer) *featureHeaders {
	f := &featureHeaders{out: out, seen: map[string]bool{}}
	f.lines.Line = f.line
	return f
}

var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;]*m`)

func (f *featureHeaders) Write(p []byte) (int, error) { return f.lines.Write(p) }

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
	return f.lines.Flush(func(rest []byte) error {
		if err := f.flushBlank(); err != nil {
			return err
		}
		if len(rest) > 0 {
			_, err := f.out.Write(rest)
			return err
		}
		return nil
	})
}
