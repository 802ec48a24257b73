package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/depharness/depharness/api"
)

// The hook server: the supervisor's update, restart and delete hooks, answered
// at once and queued for the workers.

// Handler serves the hooks the supervisor sends to
// BALENA_DEPENDENT_DEVICES_HOOK_ADDRESS (default
// http://0.0.0.0:1337/v1/devices/):
//
//	PUT    /v1/devices/{uuid}          update: 200 or 202 by Policy
//	PUT    /v1/devices/{uuid}/restart  restart: 200
//	DELETE /v1/devices/{uuid}          delete: the device is forgotten, 200
//
// A hook for a device the gateway does not manage answers 404 (delete:
// 200, it is forgotten already); a malformed update body answers 400.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/devices/{uuid}", g.updateHook)
	mux.HandleFunc("PUT /v1/devices/{uuid}/restart", g.restartHook)
	mux.HandleFunc("DELETE /v1/devices/{uuid}", g.deleteHook)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		g.log.Warn("unexpected request to the hook server", "method", r.Method, "path", r.URL.Path)
		g.metrics.HooksReceived.WithLabelValues("unknown", "404").Inc()
		g.opts.Observer.HookReceived("unknown", -1, http.StatusNotFound, "")
		http.Error(w, "Not found", http.StatusNotFound)
	})
	return mux
}

// answer writes a hook's answer; index is the fleet device's (-1: none) and
// commit the update hook's target commit, for the Observer.
func (g *Gateway) answer(w http.ResponseWriter, kind string, index int, commit string, status int, msg string) {
	g.metrics.HooksReceived.WithLabelValues(kind, strconv.Itoa(status)).Inc()
	g.opts.Observer.HookReceived(kind, index, status, commit)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

func (g *Gateway) updateHook(w http.ResponseWriter, r *http.Request) {
	nt, err := g.hookTarget(r.Body)
	if err != nil {
		g.answer(w, "update", -1, "", http.StatusBadRequest, "Malformed update hook body")
		return
	}
	t := nt.UpdateHook
	uuid := r.PathValue("uuid")
	g.mu.Lock()
	m := g.byUUID[uuid]
	if m == nil {
		g.mu.Unlock()
		g.answer(w, "update", -1, t.Commit, http.StatusNotFound, "Device not found")
		return
	}
	// A resend of a target being worked on is queued too: it is answered
	// by reporting the device's state again once the work is done (a
	// device already at the target is not flashed again).
	if m.target == nil || m.target.key != nt.key {
		m.targetAt = g.opts.Now()
	}
	m.target, m.pending = nt, nt
	g.enqueueLocked(m)
	index := m.dev.Index
	g.mu.Unlock()
	g.log.Debug("update hook", "uuid", uuid, "commit", t.Commit, "env", t.Environment, "config", t.Config, "policy", g.opts.Policy)
	if g.opts.Policy == PolicyAccepted {
		g.answer(w, "update", index, t.Commit, http.StatusAccepted, "Accepted")
		return
	}
	g.answer(w, "update", index, t.Commit, http.StatusOK, "OK")
}

// maxTargets bounds the targets hookTarget remembers.
const maxTargets = 64

// hookTarget reads an update hook's body into its target. A rollout sends
// every device of an app the same body: the target of a body seen lately is
// shared (targets are never changed), so that a hook costs no decoding and
// a large fleet holds one target per release, not one per device.
func (g *Gateway) hookTarget(body io.Reader) (*target, error) {
	buf := hookBodies.Get().(*bytes.Buffer)
	defer hookBodies.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(body, api.MaxBodyBytes)); err != nil {
		return nil, err
	}
	g.targetsMu.Lock()
	t := g.targets[string(buf.Bytes())]
	g.targetsMu.Unlock()
	if t != nil {
		return t, nil
	}
	var h api.UpdateHook
	if err := json.NewDecoder(bytes.NewReader(buf.Bytes())).Decode(&h); err != nil {
		return nil, err
	}
	t = newTarget(&h)
	g.targetsMu.Lock()
	if len(g.targets) >= maxTargets {
		clear(g.targets)
	}
	g.targets[buf.String()] = t
	g.targetsMu.Unlock()
	return t, nil
}

// hookBodies are the buffers hook bodies are read into.
var hookBodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (g *Gateway) restartHook(w http.ResponseWriter, r *http.Request) {
	uuid := r.PathValue("uuid")
	g.mu.Lock()
	m := g.byUUID[uuid]
	index := -1
	if m != nil {
		m.restarts++
		g.enqueueLocked(m)
		index = m.dev.Index
	}
	g.mu.Unlock()
	if m == nil {
		g.answer(w, "restart", -1, "", http.StatusNotFound, "Device not found")
		return
	}
	g.answer(w, "restart", index, "", http.StatusOK, "OK")
}

func (g *Gateway) deleteHook(w http.ResponseWriter, r *http.Request) {
	uuid := r.PathValue("uuid")
	index := g.forget(uuid)
	g.answer(w, "delete", index, "", http.StatusOK, "OK")
}

// forget drops a device: no more work, reports or logs for it. It returns
// the device's fleet index, or -1 if it was not managed.
func (g *Gateway) forget(uuid string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.byUUID[uuid]
	if m == nil {
		return -1
	}
	m.forgotten = true
	g.settleLocked(m)
	delete(g.byUUID, uuid)
	g.byIndex[m.dev.Index] = nil
	g.opts.Observer.DeviceForgotten(m.dev.Index, uuid)
	g.log.Info("device forgotten", "uuid", uuid, "serial", m.dev.Serial)
	return m.dev.Index
}

// enqueueLocked queues m for a worker unless it is queued or being worked
// on already (the worker picks up new work before it lets go).
func (g *Gateway) enqueueLocked(m *managed) {
	if m.queued || m.working || m.forgotten {
		return
	}
	m.queued = true
	g.queue <- m // capacity is the fleet's size: never blocks
}
