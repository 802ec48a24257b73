package features

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/gavv/httpexpect/v2"
)

// What a failing API assertion shows of the bodies exchanged: httpexpect
// prints the request's and the answer's headers only. bodyRecorder keeps
// the beginning of the last requests' and answers' bodies, and
// bodyFormatter adds them to a failure as "request body:" and "response
// body:" sections.

// failureBodyBytes is how much of a body a failure shows.
const failureBodyBytes = 2048

// recordedExchange is the beginning of one request's and its answer's
// bodies.
type recordedExchange struct {
	resp          *http.Response
	req, answer   capped
	reqHasBody    bool
	answerHasBody bool
}

// capped keeps the first failureBodyBytes written to it and counts all.
type capped struct {
	mu sync.Mutex
	b  []byte
	n  int64
}

func (c *capped) add(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += int64(len(p))
	if room := failureBodyBytes - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
}

func (c *capped) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 {
		return "(empty)"
	}
	if !utf8.Valid(c.b) && !utf8.Valid(c.b[:max(0, len(c.b)-utf8.UTFMax)]) {
		return fmt.Sprintf("(%d bytes of binary data)", c.n)
	}
	for _, r := range string(c.b) {
		if r != '\n' && r != '\r' && r != '\t' && !unicode.IsPrint(r) && r != utf8.RuneError {
			return fmt.Sprintf("(%d bytes of binary data)", c.n)
		}
	}
	s := strings.ToValidUTF8(string(c.b), "")
	if c.n > int64(len(c.b)) {
		s += fmt.Sprintf("\n… (%d bytes in all)", c.n)
	}
	return s
}

// teeBody copies what is read from an io.ReadCloser into a capped.
type teeBody struct {
	io.ReadCloser
	to *capped
}

func (t teeBody) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if n > 0 {
		t.to.add(p[:n])
	}
	return n, err
}

// bodyRecorder is a RoundTripper keeping the bodies of its last exchanges.
type bodyRecorder struct {
	base http.RoundTripper

	mu   sync.Mutex
	last []*recordedExchange
}

// bodyRecorderKeeps is how many exchanges a bodyRecorder remembers: an
// assertion looks at an answer of its own step, a few requests back at
// most.
const bodyRecorderKeeps = 64

func (b *bodyRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := &recordedExchange{}
	if req.Body != nil && req.Body != http.NoBody {
		r2 := req.Clone(req.Context())
		r2.Body = teeBody{req.Body, &ex.req}
		ex.reqHasBody = true
		req = r2
	}
	resp, err := b.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	ex.resp = resp
	if resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = teeBody{resp.Body, &ex.answer}
		ex.answerHasBody = true
	}
	b.mu.Lock()
	b.last = append(b.last, ex)
	if len(b.last) > bodyRecorderKeeps {
		b.last = append(b.last[:0], b.last[len(b.last)-bodyRecorderKeeps:]...)
	}
	b.mu.Unlock()
	return resp, nil
}

func (b *bodyRecorder) find(resp *http.Response) *recordedExchange {
	if resp == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.last) - 1; i >= 0; i-- {
		if b.last[i].resp == resp {
			return b.last[i]
		}
	}
	return nil
}

// bodyFormatter is httpexpect's formatter with the bodies of the exchange
// an assertion failed on.
type bodyFormatter struct {
	httpexpect.DefaultFormatter
	rec *bodyRecorder
}

func (f *bodyFormatter) FormatFailure(ctx *httpexpect.AssertionContext, fl *httpexpect.AssertionFailure) string {
	s := f.DefaultFormatter.FormatFailure(ctx, fl)
	if ctx == nil || ctx.Response == nil {
		return s
	}
	ex := f.rec.find(ctx.Response.Raw())
	if ex == nil {
		return s
	}
	var b strings.Builder
	b.WriteString(strings.TrimRight(s, "\n"))
	if ex.reqHasBody {
		b.WriteString("\n\nrequest body:\n" + indent(ex.req.text()))
	}
	if ex.answerHasBody {
		b.WriteString("\n\nresponse body:\n" + indent(ex.answer.text()))
	}
	return b.String()
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }
