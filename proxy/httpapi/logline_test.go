package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/depharness/depharness/proxy/cloudapi"
)

// A message over LOG_LINE_MAX_BYTES is cut at a character boundary so that
// the line's JSON, escapes included, fits, and ends with the mark.
func TestTruncateLogLineFitsTheLimitAtACharacterBoundary(t *testing.T) {
	for name, msg := range map[string]string{
		"ascii":          strings.Repeat("a", 5000),
		"two-byte runes": strings.Repeat("é", 5000),
		"escapes":        strings.Repeat("\"\n\x01", 2000),
		"invalid utf-8":  strings.Repeat("\xff", 3000),
	} {
		t.Run(name, func(t *testing.T) {
			const limit = 1024
			line := cloudapi.LogLine{UUID: "0123456789abcdef0123456789abcdef", Message: msg, Timestamp: 1700000000000}
			out, err := truncateLogLine(line, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) > limit || len(out) < limit-12 {
				t.Errorf("line of %d bytes, want at most %d and not much less", len(out), limit)
			}
			var back cloudapi.LogLine
			if err := json.Unmarshal(out, &back); err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(back.Message, LogTruncatedMark) || !utf8.ValidString(strings.TrimSuffix(back.Message, LogTruncatedMark)) && name != "invalid utf-8" {
				t.Errorf("message %q, want a valid prefix and the mark", back.Message[max(0, len(back.Message)-30):])
			}
			if back.UUID != line.UUID || back.Timestamp != line.Timestamp {
				t.Errorf("line %+v lost its other fields", back)
			}
		})
	}
}
