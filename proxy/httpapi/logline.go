package httpapi

import (
	"fmt"
	"unicode/utf8"

	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/jsonstr"
)

// LogTruncatedMark ends the message of a log line cut to fit
// LOG_LINE_MAX_BYTES.
const LogTruncatedMark = "…[truncated]"

// truncateLogLine returns the JSON of line with its message cut, at a
// character boundary, and ended with LogTruncatedMark, so that the JSON is
// at most limit bytes (DEV-LOG-2: the line is still accepted, 202, and
// delivered; a line's size in the buffer, in a batch and at the cloud is
// bounded). limit must leave room for the line without its message.
func truncateLogLine(line cloud.LogLine, limit int) ([]byte, error) {
	msg := line.Message
	line.Message = LogTruncatedMark
	base, err := jsonstr.Marshal(line)
	if err != nil {
		return nil, err
	}
	budget := limit - len(base)
	if budget < 0 {
		return nil, fmt.Errorf("log line limit %d leaves no room for a message", limit)
	}
	// Cut where the escaped message fills the budget, then check: the
	// estimate follows encoding/json's escaping (without HTML escaping).
	cut, used := 0, 0
	for cut < len(msg) {
		r, size := utf8.DecodeRuneInString(msg[cut:])
		n := escapedLen(r, size)
		if used+n > budget {
			break
		}
		used += n
		cut += size
	}
	for {
		line.Message = msg[:cut] + LogTruncatedMark
		out, err := jsonstr.Marshal(line)
		if err != nil || len(out) <= limit || cut == 0 {
			return out, err
		}
		_, size := utf8.DecodeLastRuneInString(msg[:cut])
		cut -= size
	}
}

// escapedLen is the length of rune r (size bytes of the input) in a JSON
// string as encoding/json writes it without HTML escaping.
func escapedLen(r rune, size int) int {
	switch {
	case r == utf8.RuneError && size == 1:
		return 6 // \ufffd
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == '\f':
		return 2
	case r < 0x20 || r == '\u2028' || r == '\u2029':
		return 6
	}
	return size
}
