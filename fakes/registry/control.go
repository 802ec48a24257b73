package registry

import (
	"encoding/json"
	"fmt"
	"net/http"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ControlHandler returns the fault knobs and the request log over HTTP, for
// a registry running in another process (depharness fake-registry). Routes,
// relative to where it is mounted (the CLI mounts it at /control/v1/):
//
//	PUT    throttle        {"bytesPerSec": N}         Throttle(N)
//	DELETE throttle                                   Unthrottle()
//	PUT    fail/{kind}     {"n": N, "status": S}      FailNext(kind, N, S); without n, Fail(kind, S)
//	DELETE fail/{kind}                                Unfail(kind)
//	PUT    corrupt         {"next": N} or {"digest": "sha256:…"}   CorruptNext(N) or Corrupt(digest)
//	DELETE corrupt                                    Uncorrupt()
//	POST   heal                                       Heal()
//	GET    requests                                   Requests() as JSON
//	DELETE requests                                   ResetRequests()
//
// Success is 204 (200 with a body for GET); bad input is 400 with a plain
// text reason. With Options.AdminToken every route needs it ("Authorization:
// Bearer <token>"); without it the answer is 401.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /throttle", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			BytesPerSec int64 `json:"bytesPerSec"`
		}
		if err := decodeControl(r, &body); err != nil || body.BytesPerSec <= 0 {
			http.Error(w, "want {\"bytesPerSec\": N} with N > 0", http.StatusBadRequest)
			return
		}
		s.Throttle(body.BytesPerSec)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /throttle", noContent(s.Unthrottle))
	mux.HandleFunc("PUT /fail/{kind}", withKind(func(w http.ResponseWriter, r *http.Request, kind Kind) {
		var body struct {
			N      *int `json:"n"`
			Status int  `json:"status"`
		}
		if err := decodeControl(r, &body); err != nil || body.Status < 400 || body.Status > 599 || (body.N != nil && *body.N <= 0) {
			http.Error(w, "want {\"status\": 400-599} and optionally \"n\" > 0", http.StatusBadRequest)
			return
		}
		if body.N == nil {
			s.Fail(kind, body.Status)
		} else {
			s.FailNext(kind, *body.N, body.Status)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("DELETE /fail/{kind}", withKind(func(w http.ResponseWriter, r *http.Request, kind Kind) {
		s.Unfail(kind)
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("PUT /corrupt", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Next   int    `json:"next"`
			Digest string `json:"digest"`
		}
		err := decodeControl(r, &body)
		switch {
		case err == nil && body.Next > 0 && body.Digest == "":
			s.CorruptNext(body.Next)
		case err == nil && body.Next == 0 && body.Digest != "":
			h, herr := v1.NewHash(body.Digest)
			if herr != nil {
				http.Error(w, herr.Error(), http.StatusBadRequest)
				return
			}
			s.Corrupt(h)
		default:
			http.Error(w, "want {\"next\": N} with N > 0 or {\"digest\": \"sha256:…\"}", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /corrupt", noContent(s.Uncorrupt))
	mux.HandleFunc("POST /heal", noContent(s.Heal))
	mux.HandleFunc("GET /requests", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Requests())
	})
	mux.HandleFunc("DELETE /requests", noContent(s.ResetRequests))
	return s.requireToken(mux)
}

// noContent is a route that calls fn and answers 204.
func noContent(fn func()) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		fn()
		w.WriteHeader(http.StatusNoContent)
	}
}

func decodeControl(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// withKind answers 400 unless the request's {kind} is a known Kind, and
// otherwise calls h with it.
func withKind(h func(http.ResponseWriter, *http.Request, Kind)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		kind, err := parseKind(r.PathValue("kind"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h(w, r, kind)
	}
}

// parseKind accepts the kinds a pull can be of.
func parseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindManifest, KindBlob, KindTags, KindCatalog, KindBase:
		return k, nil
	}
	return "", fmt.Errorf("unknown kind %q (manifest, blob, tags, catalog or base)", s)
}
