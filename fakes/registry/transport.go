package registry

import (
	"net/http"
	"net/http/httptest"
)

// HandlerTransport returns a RoundTripper that serves every request with h
// in-process, whatever its host: for pushing into (or pulling from) a Server
// without a listener. Responses are buffered whole, so throttling shows as
// latency, not as a slow body.
func HandlerTransport(h http.Handler) http.RoundTripper {
	return handlerTransport{h}
}

type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.RequestURI = r.URL.RequestURI()
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}
