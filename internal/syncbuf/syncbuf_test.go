package syncbuf

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestConcurrentWritesAreAllKept(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Write([]byte("x"))
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("x", 800) {
		t.Errorf("got %d bytes, want 800", len(got))
	}
}

func TestLinesHandsOnCompleteLinesAndFlushesTheRest(t *testing.T) {
	var got []string
	l := &Lines{Line: func(s string) error { got = append(got, s); return nil }}
	for _, w := range []string{"a", "b\nc", "\n\nd\ne"} {
		if n, err := l.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
		}
	}
	if want := []string{"ab", "c", "", "d"}; !slices.Equal(got, want) {
		t.Errorf("got lines %q, want %q", got, want)
	}
	var rest string
	_ = l.Flush(func(b []byte) error { rest = string(b); return nil })
	_ = l.Flush(func(b []byte) error { rest += "|" + string(b); return nil })
	if rest != "e|" {
		t.Errorf("flushed %q, want %q then nothing", rest, "e")
	}
}

func TestLinesStopsAtLinesError(t *testing.T) {
	boom := errors.New("boom")
	var got []string
	l := &Lines{Line: func(s string) error {
		got = append(got, s)
		if s == "bad" {
			return boom
		}
		return nil
	}}
	if _, err := l.Write([]byte("ok\nbad\nlater\n")); !errors.Is(err, boom) {
		t.Errorf("got %v, want the Line error", err)
	}
	if !slices.Equal(got, []string{"ok", "bad"}) {
		t.Errorf("got lines %q, want ok and bad only", got)
	}
}
