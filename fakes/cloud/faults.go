package cloud

import (
	"bytes"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Routes of the cloud protocol, as fault knobs and metrics name them.
const (
	RouteState     = "state"     // GET /device/v2/<uuid>/state
	RouteProvision = "provision" // POST /v6/device
	RoutePatch     = "patch"     // PATCH /v6/device(<id>)
	RouteGet       = "get"       // GET /v6/device?$filter=…
	RouteLogs      = "logs"      // POST /device/v2/<uuid>/log-stream
	// RouteAll makes a fault knob apply to every protocol route.
	RouteAll     = "*"
	routeUnknown = "unknown"
)

// Routes lists the protocol routes a fault knob accepts, RouteAll included.
var Routes = []string{RouteState, RouteProvision, RoutePatch, RouteGet, RouteLogs, RouteAll}

// OutageMode is how the cloud fails during an Outage.
type OutageMode string

// Outage modes.
const (
	// Outage503 answers every protocol request 503.
	Outage503 OutageMode = "503"
	// OutageClose closes the connection of every protocol request without
	// an answer.
	OutageClose OutageMode = "close"
)

// faults holds the fault knobs. It has its own lock so that fault checks
// never wait for the model.
type faults struct {
	mu       sync.Mutex
	rng      *mrand.Rand
	delays   map[string]delayFault
	failNext map[string]countdown[int] // the status to answer
	hangs    map[string]chan struct{}
	outage   OutageMode
	// refusedLogs are the messages of log lines the log stream refuses.
	refusedLogs map[string]bool
	// dropAnswers and delayAnswers lose or hold back the answers of
	// requests that are handled (DropAnswers, DelayAnswers).
	dropAnswers  map[string]countdown[struct{}]
	delayAnswers map[string]countdown[time.Duration]
}

type delayFault struct{ d, jitter time.Duration }

// countdown is a knob for the next n requests of its route, with what it
// does to them. A map of countdowns holds only those with n > 0.
type countdown[V any] struct {
	n int
	v V
}

// FaultState is a snapshot of the fault knobs.
type FaultState struct {
	Outage OutageMode `json:"outage,omitempty"`
	// Delays by route, as "200ms" or "200ms±50ms".
	Delays map[string]string `json:"delays"`
	// FailNext by route: requests left to fail and their status.
	FailNext map[string][2]int `json:"failNext"`
	Hangs    []string          `json:"hangs"`
	// RefusedLogLines are the messages set by RefuseLogLines.
	RefusedLogLines []string `json:"refusedLogLines"`
	// Held is the number of requests currently held by Hang.
	Held int `json:"held"`
	// DropAnswers by route: requests left to be handled and then dropped
	// unanswered.
	DropAnswers map[string]int `json:"dropAnswers"`
	// DelayAnswers by route: requests left to be handled and then answered
	// late, and the delay ("5s").
	DelayAnswers map[string]DelayAnswersState `json:"delayAnswers"`
}

// DelayAnswersState is what is left of a DelayAnswers knob.
type DelayAnswersState struct {
	N     int    `json:"n"`
	Delay string `json:"delay"`
}

func (f *faults) init(seed uint64) {
	f.rng = mrand.New(mrand.NewPCG(seed^0x5851f42d4c957f2d, seed))
	f.delays = map[string]delayFault{}
	f.failNext = map[string]countdown[int]{}
	f.hangs = map[string]chan struct{}{}
	f.dropAnswers = map[string]countdown[struct{}]{}
	f.delayAnswers = map[string]countdown[time.Duration]{}
}

// setFault changes the knobs, under their lock, and logs the change.
func (s *Server) setFault(change func(f *faults), msg string, args ...any) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	change(&s.faults)
	s.log.Info(msg, args...)
}

// setCountdown arms the knob m[route] for n requests with v, or removes it
// when n is 0.
func setCountdown[V any](m map[string]countdown[V], route string, n int, v V) {
	if n == 0 {
		delete(m, route)
	} else {
		m[route] = countdown[V]{n, v}
	}
}

// knobOf returns m's knob of route, or else of RouteAll.
func knobOf[V any](m map[string]V, route string) (V, bool) {
	if v, ok := m[route]; ok {
		return v, true
	}
	v, ok := m[RouteAll]
	return v, ok
}

// takeCountdown counts one request of route against m's knob of route, or
// else of RouteAll, and returns that knob's value; ok is false when neither
// is armed.
func takeCountdown[V any](m map[string]countdown[V], route string) (v V, ok bool) {
	for _, key := range []string{route, RouteAll} {
		if c, armed := m[key]; armed {
			if c.n <= 1 {
				delete(m, key)
			} else {
				c.n--
				m[key] = c
			}
			return c.v, true
		}
	}
	return v, false
}

func checkRoute(route string) error {
	if !slices.Contains(Routes, route) {
		return invalidf("unknown route %q (want one of %v)", route, Routes)
	}
	return nil
}

// Delay makes every request of route (or RouteAll) wait d plus a random
// jitter in [0, jitter) before it is answered. A request whose client gives
// up stops waiting.
func (s *Server) Delay(route string, d, jitter time.Duration) error {
	if err := checkRoute(route); err != nil {
		return err
	}
	if d < 0 || jitter < 0 {
		return invalidf("delay and jitter must not be negative (got %v, %v)", d, jitter)
	}
	s.setFault(func(f *faults) {
		f.delays[route] = delayFault{d, jitter}
	}, "fault: delay", "route", route, "delay", d, "jitter", jitter)
	return nil
}

// Undelay removes the Delay of route.
func (s *Server) Undelay(route string) {
	s.setFault(func(f *faults) {
		delete(f.delays, route)
	}, "fault: undelay", "route", route)
}

// FailNext makes the next n requests of route (or RouteAll) answer status
// (400–599) without being handled. n = 0 removes the knob.
func (s *Server) FailNext(route string, n, status int) error {
	if err := checkRoute(route); err != nil {
		return err
	}
	if n < 0 {
		return invalidf("n must not be negative (got %d)", n)
	}
	if status < 400 || status > 599 {
		return invalidf("status must be in 400-599 (got %d)", status)
	}
	s.setFault(func(f *faults) {
		setCountdown(f.failNext, route, n, status)
	}, "fault: fail next", "route", route, "n", n, "status", status)
	return nil
}

// Unfail removes what is left of a FailNext of route.
func (s *Server) Unfail(route string) {
	s.setFault(func(f *faults) {
		delete(f.failNext, route)
	}, "fault: unfail", "route", route)
}

// Outage makes every protocol request fail as mode says, until EndOutage.
// The control API and /metrics keep working.
func (s *Server) Outage(mode OutageMode) error {
	if mode != Outage503 && mode != OutageClose {
		return invalidf("unknown outage mode %q (want %q or %q)", mode, Outage503, OutageClose)
	}
	s.setFault(func(f *faults) {
		f.outage = mode
	}, "fault: outage", "mode", mode)
	return nil
}

// EndOutage ends an Outage.
func (s *Server) EndOutage() {
	s.setFault(func(f *faults) {
		f.outage = ""
	}, "fault: end outage")
}

// Hang makes requests of route (or RouteAll) block, unanswered, until
// Unhang(route) or until their client gives up.
func (s *Server) Hang(route string) error {
	if err := checkRoute(route); err != nil {
		return err
	}
	s.setFault(func(f *faults) {
		if f.hangs[route] == nil {
			f.hangs[route] = make(chan struct{})
		}
	}, "fault: hang", "route", route)
	return nil
}

// Unhang releases the requests held by Hang(route); they are then handled.
func (s *Server) Unhang(route string) {
	s.setFault(func(f *faults) {
		if ch := f.hangs[route]; ch != nil {
			close(ch)
			delete(f.hangs, route)
		}
	}, "fault: unhang", "route", route)
}

// DropAnswers makes the next n requests of route (or RouteAll) be handled
// as usual (what they change is changed, what they send is stored) and then
// their connection closed without an answer: a request whose outcome its
// client cannot know. n = 0 removes the knob. Checked after the other knobs:
// a request answered by Outage, FailNext or a Hang its client left is not
// handled and does not count.
func (s *Server) DropAnswers(route string, n int) error {
	if err := checkRoute(route); err != nil {
		return err
	}
	if n < 0 {
		return invalidf("n must not be negative (got %d)", n)
	}
	s.setFault(func(f *faults) {
		setCountdown(f.dropAnswers, route, n, struct{}{})
	}, "fault: drop answers", "route", route, "n", n)
	return nil
}

// Undrop removes what is left of a DropAnswers of route.
func (s *Server) Undrop(route string) {
	s.setFault(func(f *faults) {
		delete(f.dropAnswers, route)
	}, "fault: undrop answers", "route", route)
}

// DelayAnswers makes the next n requests of route (or RouteAll) be handled
// at once, as usual, and answered only d later. A client that gives up
// before (a timeout shorter than d) gets no answer, though its request was
// handled: its outcome is unknown to it. n = 0 removes the knob. Counted
// like DropAnswers; a request that both knobs match is dropped.
func (s *Server) DelayAnswers(route string, d time.Duration, n int) error {
	if err := checkRoute(route); err != nil {
		return err
	}
	if n < 0 || d < 0 {
		return invalidf("n and delay must not be negative (got %d, %v)", n, d)
	}
	s.setFault(func(f *faults) {
		setCountdown(f.delayAnswers, route, n, d)
	}, "fault: delay answers", "route", route, "delay", d, "n", n)
	return nil
}

// UndelayAnswers removes what is left of a DelayAnswers of route.
func (s *Server) UndelayAnswers(route string) {
	s.setFault(func(f *faults) {
		delete(f.delayAnswers, route)
	}, "fault: undelay answers", "route", route)
}

// answerFault is what happens to the answer of a handled request: dropped,
// or held for delay; neither when zero.
type answerFault struct {
	drop  bool
	delay time.Duration
}

// takeAnswerFault counts one request of route against DropAnswers and
// DelayAnswers and returns what happens to its answer.
func (s *Server) takeAnswerFault(route string) answerFault {
	f := &s.faults
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := takeCountdown(f.dropAnswers, route); ok {
		return answerFault{drop: true}
	}
	d, _ := takeCountdown(f.delayAnswers, route)
	return answerFault{delay: d}
}

// heldAnswer records a handler's answer so that it can be sent later, or
// never.
type heldAnswer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *heldAnswer) Header() http.Header { return h.header }
func (h *heldAnswer) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}
func (h *heldAnswer) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	return h.body.Write(b)
}

// send writes the held answer to w.
func (h *heldAnswer) send(w http.ResponseWriter) {
	for k, v := range h.header {
		w.Header()[k] = v
	}
	if h.status == 0 {
		h.status = http.StatusOK
	}
	w.WriteHeader(h.status)
	_, _ = w.Write(h.body.Bytes())
}

// ResetFaults removes every fault knob of availability (hung requests are
// released). What RefuseLogLines refuses is content, not availability: it
// stays until UnrefuseLogLines.
func (s *Server) ResetFaults() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	for r, ch := range s.faults.hangs {
		close(ch)
		delete(s.faults.hangs, r)
	}
	clear(s.faults.delays)
	clear(s.faults.failNext)
	clear(s.faults.dropAnswers)
	clear(s.faults.delayAnswers)
	s.faults.outage = ""
	s.log.Info("fault: reset")
}

// RefuseLogLines makes the log stream refuse (400, whole, CLOUD-LOGS) every
// request holding a line whose message is message, as a cloud refuses a bad
// line, until UnrefuseLogLines.
func (s *Server) RefuseLogLines(message string) {
	s.setFault(func(f *faults) {
		if f.refusedLogs == nil {
			f.refusedLogs = map[string]bool{}
		}
		f.refusedLogs[message] = true
	}, "fault: refuse log lines", "message", message)
}

// UnrefuseLogLines removes every RefuseLogLines.
func (s *Server) UnrefuseLogLines() {
	s.setFault(func(f *faults) {
		clear(f.refusedLogs)
	}, "fault: unrefuse log lines")
}

// logLineRefused reports whether RefuseLogLines refuses message.
func (s *Server) logLineRefused(message string) bool {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	return s.faults.refusedLogs[message]
}

// Faults returns a snapshot of the fault knobs.
func (s *Server) Faults() FaultState {
	fs := s.faultKnobs()
	fs.Held = s.Held()
	return fs
}

func (s *Server) faultKnobs() FaultState {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	fs := FaultState{Outage: s.faults.outage, Delays: map[string]string{}, FailNext: map[string][2]int{}, Hangs: []string{}}
	for r, d := range s.faults.delays {
		if d.jitter > 0 {
			fs.Delays[r] = fmt.Sprintf("%v±%v", d.d, d.jitter)
		} else {
			fs.Delays[r] = d.d.String()
		}
	}
	for r, c := range s.faults.failNext {
		fs.FailNext[r] = [2]int{c.n, c.v}
	}
	for r := range s.faults.hangs {
		fs.Hangs = append(fs.Hangs, r)
	}
	slices.Sort(fs.Hangs)
	fs.DropAnswers = map[string]int{}
	for r, c := range s.faults.dropAnswers {
		fs.DropAnswers[r] = c.n
	}
	fs.DelayAnswers = map[string]DelayAnswersState{}
	for r, c := range s.faults.delayAnswers {
		fs.DelayAnswers[r] = DelayAnswersState{N: c.n, Delay: c.v.String()}
	}
	fs.RefusedLogLines = []string{}
	for m := range s.faults.refusedLogs {
		fs.RefusedLogLines = append(fs.RefusedLogLines, m)
	}
	slices.Sort(fs.RefusedLogLines)
	return fs
}

// faultOutcome is what the fault knobs did to one request.
type faultOutcome struct {
	fault  string // "" if the request goes on to its handler
	status int    // answered status; 0 when closed or abandoned
	// drop means the caller must close the connection (after recording).
	drop bool
}

// applyFaults runs the fault knobs for one request of route, in order:
// outage, hang, delay, fail-next. It reports whether the request was
// answered (or dropped) by a fault.
func (s *Server) applyFaults(route string, w http.ResponseWriter, r *http.Request) (faultOutcome, bool) {
	f := &s.faults
	f.mu.Lock()
	outage := f.outage
	hang, _ := knobOf(f.hangs, route)
	f.mu.Unlock()
	if outage == Outage503 || outage == OutageClose {
		// The request was sent whole: the journal keeps what it carried.
		prereadBody(r)
	}
	switch outage {
	case Outage503:
		http.Error(w, "cloud outage (injected)", http.StatusServiceUnavailable)
		return faultOutcome{fault: "outage", status: http.StatusServiceUnavailable}, true
	case OutageClose:
		return faultOutcome{fault: "outage", drop: true}, true
	}
	ctx := r.Context()
	f.mu.Lock()
	_, delayed := knobOf(f.delays, route)
	f.mu.Unlock()
	if hang != nil || delayed {
		prereadBody(r)
	}
	if hang != nil {
		s.heldDelta(+1)
		select {
		case <-hang:
			s.heldDelta(-1)
		case <-ctx.Done():
			s.heldDelta(-1)
			return faultOutcome{fault: "hang"}, true
		}
	}
	f.mu.Lock()
	d, ok := knobOf(f.delays, route)
	wait := d.d
	if ok && d.jitter > 0 {
		wait += time.Duration(f.rng.Int64N(int64(d.jitter)))
	}
	f.mu.Unlock()
	if ok && wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return faultOutcome{fault: "delay"}, true
		}
	}
	f.mu.Lock()
	status, fail := takeCountdown(f.failNext, route)
	f.mu.Unlock()
	if fail {
		http.Error(w, fmt.Sprintf("injected failure %d", status), status)
		return faultOutcome{fault: "fail-next", status: status}, true
	}
	return faultOutcome{}, false
}

// closeConn drops the request's connection without an answer: hijack and
// close where the connection allows it, else abort the handler.
func closeConn(w http.ResponseWriter) {
	if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = c.Close()
		return
	}
	panic(http.ErrAbortHandler)
}

// heldDelta counts requests held by Hang and wakes the waiters.
func (s *Server) heldDelta(d int) {
	s.mu.Lock()
	s.held += d
	s.wakeLocked()
	s.mu.Unlock()
}

// Held returns the number of requests currently held by Hang.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// maxPreread bounds the body read ahead of a hang or delay.
const maxPreread = 16 << 20

// prereadBody reads r's body (up to maxPreread) into memory before the
// request is held, and puts it back for the handler. Only once the body is
// read does the server watch the connection, so this is what lets a held
// request end when its client gives up. A longer body is held unread.
func prereadBody(r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, maxPreread))
	rest := r.Body
	if err != nil {
		rest = io.NopCloser(errReader{err})
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), rest), rest}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
