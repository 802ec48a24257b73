// Package hookrecv is a scriptable hook receiver: a fake gateway app that
// listens for the hooks a supervisor sends (update PUT <base><uuid>, delete
// DELETE <base><uuid>, restart PUT <base><uuid>/restart), records every
// request with the time it was received and answered, and answers each
// device's hooks from a script (status codes, delays, refused connections,
// requests left hanging until the client gives up).
//
// Tests observe it through Hooks, AwaitHooks and MaxConcurrent, never
// through sleeps. It imports only the standard library and api.
package hookrecv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/broadcast"
	"github.com/depharness/depharness/internal/defaults"
)

// Kind is the kind of a hook.
type Kind string

// The hook kinds of CONTRACT.md, and Unknown for any request that is none of
// them (it is recorded and answered 404).
const (
	Update  Kind = "update"
	Delete  Kind = "delete"
	Restart Kind = "restart"
	Unknown Kind = "unknown"
)

// Outcome says how a recorded request ended.
type Outcome string

// Outcomes of a request.
const (
	// Pending: the request is still being handled.
	Pending Outcome = "pending"
	// Answered: a status was written (Hook.Status).
	Answered Outcome = "answered"
	// Refused: the connection was closed without an answer.
	Refused Outcome = "refused"
	// Abandoned: the client gave up (timeout, cancel) before an answer.
	Abandoned Outcome = "abandoned"
)

// Hook is one recorded request.
type Hook struct {
	// Seq numbers requests in the order they were received, from 1.
	Seq    int
	Method string
	Path   string
	UUID   string
	Kind   Kind
	Body   []byte
	// Update is the decoded body of an update hook, nil otherwise or when
	// the body does not hold the contract's fields with their types
	// (BodyError says why). Additional fields are allowed (CONTRACT.md,
	// Latitude) and ignored.
	Update    *api.UpdateHook
	BodyError string
	Received  time.Time
	// Answered is when the request ended (answer written, connection
	// closed or client gone); zero while Pending.
	Answered time.Time
	Outcome  Outcome
	// Status is the answered status; 0 unless Outcome is Answered.
	Status int
	// Note is what the OnReceive callback returned for this request.
	Note string
	// Script is the answer the receiver was scripted to give this request.
	Script Answer
}

// Abandoned reports whether the client gave up on the request before it
// was answered: such a request was neither received nor acknowledged as a
// hook (HOOK-ERR).
func (h Hook) Abandoned() bool { return h.Outcome == Abandoned }

// Failed reports whether the request ended without delivering the hook: any
// status other than 200 (and 202 for an update hook), a refused connection
// or a request the client abandoned (HOOK-ERR). A pending request has not
// failed yet.
func (h Hook) Failed() bool {
	switch h.Outcome {
	case Refused, Abandoned:
		return true
	case Answered:
		return h.Status != http.StatusOK && !(h.Kind == Update && h.Status == http.StatusAccepted)
	}
	return false
}

// Done reports whether the request has ended.
func (h Hook) Done() bool { return h.Outcome != Pending }

// String is a one-line description for failure messages.
func (h Hook) String() string {
	s := fmt.Sprintf("#%d %s %s (%s %s, received %s", h.Seq, h.Method, h.Path, h.Kind, h.Outcome,
		h.Received.Format("15:04:05.000"))
	if h.Status != 0 {
		s += fmt.Sprintf(", status %d", h.Status)
	}
	if h.Update != nil {
		s += fmt.Sprintf(", commit %q env %v config %v", h.Update.Commit, h.Update.Environment, h.Update.Config)
	}
	if h.Note != "" {
		s += ", note " + h.Note
	}
	return s + ")"
}

// Answer is one step of a script.
type Answer struct {
	// Status is the status to answer; 0 means 200.
	Status int
	// Delay is how long to wait before answering (or refusing).
	Delay time.Duration
	// Refuse closes the connection without an answer.
	Refuse bool
	// Hang never answers: the request stays open until the client gives up
	// or the receiver is closed.
	Hang bool
}

// String describes the answer.
func (a Answer) String() string {
	switch {
	case a.Hang:
		return "hang"
	case a.Refuse:
		return "refuse"
	}
	st := a.Status
	if st == 0 {
		st = http.StatusOK
	}
	if a.Delay > 0 {
		return fmt.Sprintf("%d after %s", st, a.Delay)
	}
	return fmt.Sprint(st)
}

// OnReceive is called for every hook as soon as it is received, before it
// is answered; what it returns is recorded as the hook's Note. ctx ends when
// the client gives up.
type OnReceive func(ctx context.Context, h Hook) (note string)

// Options configures a Receiver.
type Options struct {
	// Prefix is the path under which hooks arrive, ending in "/"; empty
	// means "/v1/devices/" (the default hook address's path).
	Prefix string
	// Now, if nil, is time.Now.
	Now func() time.Time
	// Logger, if nil, discards.
	Logger *slog.Logger
}

type scriptKey struct {
	uuid string // "" for every device
	kind Kind
}

type script struct {
	answers []Answer
	next    int
}

// Receiver is the fake gateway app. It is an http.Handler; the caller picks
// the listener. The zero value is not usable; call New.
type Receiver struct {
	prefix string
	now    func() time.Time
	log    *slog.Logger

	mu        sync.Mutex
	hooks     []*Hook
	scripts   map[scriptKey]*script
	onReceive OnReceive
	changed   broadcast.Signal // notified on every change
	inflight  map[string]int
	maxDev    map[string]int
	inflightN int
	maxAll    int
	closed    chan struct{}
	closeOnce sync.Once
}

// New returns a Receiver that answers 200 to every hook until scripted.
func New(opts Options) *Receiver {
	r := &Receiver{
		prefix:   opts.Prefix,
		now:      opts.Now,
		log:      opts.Logger,
		scripts:  map[scriptKey]*script{},
		inflight: map[string]int{},
		maxDev:   map[string]int{},
		closed:   make(chan struct{}),
	}
	if r.prefix == "" {
		r.prefix = "/v1/devices/"
	}
	if !strings.HasSuffix(r.prefix, "/") {
		r.prefix += "/"
	}
	defaults.Clock(&r.now)
	defaults.Logger(&r.log)
	return r
}

// Prefix returns the path prefix hooks are expected under.
func (r *Receiver) Prefix() string { return r.prefix }

// Script sets the answers to hooks of kind for device uuid: one answer per
// hook, in order; the last answer repeats. No answers resets to the default
// (200).
//
// uuid "" sets a template for every device without a script of its own:
// at its first hook of that kind, such a device gets its own copy of the
// template and steps through it on its own. Changing the template later does
// not change the copies already taken.
func (r *Receiver) Script(uuid string, kind Kind, answers ...Answer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := scriptKey{uuid, kind}
	if len(answers) == 0 {
		delete(r.scripts, k)
		return
	}
	r.scripts[k] = &script{answers: append([]Answer(nil), answers...)}
}

// SetOnReceive installs the callback run on every hook (nil removes it).
func (r *Receiver) SetOnReceive(f OnReceive) {
	r.mu.Lock()
	r.onReceive = f
	r.mu.Unlock()
}

// Close releases hanging requests; later requests are refused.
func (r *Receiver) Close() {
	r.closeOnce.Do(func() { close(r.closed) })
}

// nextAnswerLocked pops the next answer for a hook.
func (r *Receiver) nextAnswerLocked(uuid string, kind Kind) Answer {
	s := r.scripts[scriptKey{uuid, kind}]
	if s == nil {
		tmpl := r.scripts[scriptKey{"", kind}]
		if tmpl == nil {
			return Answer{Status: http.StatusOK}
		}
		s = &script{answers: tmpl.answers}
		r.scripts[scriptKey{uuid, kind}] = s
	}
	a := s.answers[s.next]
	if s.next < len(s.answers)-1 {
		s.next++
	}
	return a
}

func (r *Receiver) notifyLocked() {
	r.changed.Notify()
}

// classify maps a request to its device uuid and hook kind.
func (r *Receiver) classify(req *http.Request) (string, Kind) {
	rest, ok := strings.CutPrefix(req.URL.Path, r.prefix)
	if !ok || rest == "" {
		return "", Unknown
	}
	if u, ok := strings.CutSuffix(rest, "/restart"); ok && !strings.Contains(u, "/") && req.Method == http.MethodPut {
		return u, Restart
	}
	if strings.Contains(rest, "/") {
		return "", Unknown
	}
	switch req.Method {
	case http.MethodPut:
		return rest, Update
	case http.MethodDelete:
		return rest, Delete
	}
	return rest, Unknown
}

// ServeHTTP records and answers one hook.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	received := r.now()
	uuid, kind := r.classify(req)
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	h := &Hook{
		Method: req.Method, Path: req.URL.Path, UUID: uuid, Kind: kind, Body: body,
		Received: received, Outcome: Pending,
	}
	if err != nil {
		h.BodyError = err.Error()
	}
	if kind == Update && err == nil {
		var u api.UpdateHook
		if derr := decodeHook(body, &u); derr != nil {
			h.BodyError = derr.Error()
		} else {
			h.Update = &u
		}
	}

	r.mu.Lock()
	h.Seq = len(r.hooks) + 1
	r.hooks = append(r.hooks, h)
	r.inflight[uuid]++
	r.maxDev[uuid] = max(r.maxDev[uuid], r.inflight[uuid])
	r.inflightN++
	r.maxAll = max(r.maxAll, r.inflightN)
	cb := r.onReceive
	var ans Answer
	if kind == Unknown {
		ans = Answer{Status: http.StatusNotFound}
	} else {
		ans = r.nextAnswerLocked(uuid, kind)
	}
	h.Script = ans
	r.notifyLocked()
	r.mu.Unlock()
	r.log.Debug("hook received", "seq", h.Seq, "method", req.Method, "path", req.URL.Path, "answer", ans.String())

	var note string
	if cb != nil && kind != Unknown {
		note = cb(req.Context(), *h)
	}

	outcome, status := r.answer(w, req, ans)

	r.mu.Lock()
	h.Note = note
	h.Outcome = outcome
	h.Status = status
	h.Answered = r.now()
	r.inflight[uuid]--
	r.inflightN--
	r.notifyLocked()
	r.mu.Unlock()
}

// answer carries out ans and says how the request ended.
func (r *Receiver) answer(w http.ResponseWriter, req *http.Request, ans Answer) (Outcome, int) {
	select {
	case <-r.closed:
		return refuse(w)
	default:
	}
	if ans.Hang {
		select {
		case <-req.Context().Done():
			return Abandoned, 0
		case <-r.closed:
			return refuse(w)
		}
	}
	if ans.Delay > 0 {
		t := time.NewTimer(ans.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-req.Context().Done():
			return Abandoned, 0
		case <-r.closed:
			return refuse(w)
		}
	}
	if ans.Refuse {
		return refuse(w)
	}
	st := ans.Status
	if st == 0 {
		st = http.StatusOK
	}
	w.WriteHeader(st)
	return Answered, st
}

// refuse closes the connection without writing an answer.
func refuse(w http.ResponseWriter) (Outcome, int) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return Refused, 0
		}
	}
	// Without hijacking (HTTP/2), abort the handler: the server resets the
	// stream.
	panic(http.ErrAbortHandler)
}

// hookField is a field every update hook body carries (HOOK-UPD-1) and
// where it decodes to; other fields are allowed.
type hookField struct {
	name string
	dst  any
}

// hookFields are the fields of an update hook, decoding into u.
func hookFields(u *api.UpdateHook) []hookField {
	return []hookField{{"appId", &u.AppID}, {"commit", &u.Commit}, {"environment", &u.Environment}, {"config", &u.Config}}
}

// decodeHook decodes an update hook body: one JSON object holding each of
// hookFields with the contract's type (appId an integer, commit a string,
// environment and config objects), any other fields ignored. Every field
// is checked present and not null before any is decoded.
func decodeHook(b []byte, u *api.UpdateHook) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	var fields map[string]json.RawMessage
	if err := dec.Decode(&fields); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after JSON body")
	}
	if fields == nil {
		return fmt.Errorf("body is null, want an object")
	}
	want := hookFields(u)
	for _, f := range want {
		raw, ok := fields[f.name]
		if !ok {
			return fmt.Errorf("no %s", f.name)
		}
		if string(bytes.TrimSpace(raw)) == "null" {
			return fmt.Errorf("%s is null", f.name)
		}
	}
	for _, f := range want {
		if err := json.Unmarshal(fields[f.name], f.dst); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}

// Hooks returns a copy of every recorded request, in order received.
func (r *Receiver) Hooks() []Hook {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snapshotLocked()
}

func (r *Receiver) snapshotLocked() []Hook {
	out := make([]Hook, len(r.hooks))
	for i, h := range r.hooks {
		out[i] = *h
	}
	return out
}

// Filter returns the hooks for which pred holds.
func Filter(hs []Hook, pred func(Hook) bool) []Hook {
	var out []Hook
	for _, h := range hs {
		if pred == nil || pred(h) {
			out = append(out, h)
		}
	}
	return out
}

// AwaitHooks waits until at least n recorded requests satisfy pred and
// returns all that do. On ctx's end it returns those seen so far and an
// error that lists them.
func (r *Receiver) AwaitHooks(ctx context.Context, pred func(Hook) bool, n int) ([]Hook, error) {
	var got []Hook
	err := r.changed.Await(ctx, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		got = Filter(r.snapshotLocked(), pred)
		return len(got) >= n
	})
	if err != nil {
		return got, fmt.Errorf("got %d matching hooks, want %d: %w", len(got), n, err)
	}
	return got, nil
}

// MaxConcurrent returns the largest number of requests for device uuid that
// were in flight at once ("" counts requests that named no device).
func (r *Receiver) MaxConcurrent(uuid string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxDev[uuid]
}

// MaxConcurrentAll returns the largest number of requests in flight at once
// across all devices.
func (r *Receiver) MaxConcurrentAll() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxAll
}

// Predicates for AwaitHooks and Filter.

// For matches hooks of kind for device uuid.
func For(uuid string, kind Kind) func(Hook) bool {
	return func(h Hook) bool { return h.UUID == uuid && h.Kind == kind }
}

// And matches when every predicate does.
func And(ps ...func(Hook) bool) func(Hook) bool {
	return func(h Hook) bool {
		for _, p := range ps {
			if !p(h) {
				return false
			}
		}
		return true
	}
}

// IsDone matches hooks that have ended.
func IsDone(h Hook) bool { return h.Done() }

// After matches hooks received after t.
func After(t time.Time) func(Hook) bool {
	return func(h Hook) bool { return h.Received.After(t) }
}
