package registry

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/internal/testkit"
)

// do sends one request to the fixture's registry with an optional
// Authorization header and returns the answer, body read.
func (f *fixture) do(t *testing.T, method, path, auth string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req := testkit.NewRequest(t, method, f.http.URL+path, body)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, b := testkit.Do(t, f.http.Client(), req)
	return resp, string(b)
}

func TestTheAdminTokenGuardsPushesAndTheControlAPI(t *testing.T) {
	const token = "registry-admin-token"
	f := newFixture(t, Options{AdminToken: token})
	mux := http.NewServeMux()
	mux.Handle("/control/v1/", http.StripPrefix("/control/v1", f.srv.ControlHandler()))
	ctl := testkit.Server(t, mux)
	control := func(auth string) int {
		req, _ := http.NewRequest(http.MethodPut, ctl.URL+"/control/v1/throttle", strings.NewReader(`{"bytesPerSec":1000}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := ctl.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", "Basic " + basic("admin", "wrong"), "Token " + token} {
		if got := control(auth); got != http.StatusUnauthorized {
			t.Errorf("PUT /control/v1/throttle with %q: got %d, want 401", auth, got)
		}
	}
	if f.srv.throttleRate() != 0 {
		t.Fatal("a refused control request changed the throttle")
	}
	if got := control("Bearer " + token); got != http.StatusNoContent || f.srv.throttleRate() != 1000 {
		t.Errorf("PUT /control/v1/throttle with the token: got %d, want 204 and the throttle set", got)
	}
	f.srv.Unthrottle()

	// A push without the token is refused, with a challenge for Docker.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, _, err := f.builder.Build(ctx, "apps/1", releaseLayers()...); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("push without the token: got %v, want an UNAUTHORIZED refusal", err)
	}
	for _, req := range [][2]string{{"POST", "/v2/apps/1/blobs/uploads/"}, {"PUT", "/v2/apps/1/manifests/latest"}, {"DELETE", "/v2/apps/1/manifests/latest"}} {
		resp, _ := f.do(t, req[0], req[1], "", strings.NewReader("{}"))
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s %s without the token: got %d %q, want 401 with a Basic challenge", req[0], req[1], resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	// With it (Bearer from the builder, or a Docker login's Basic) the
	// push works, and pulls need nothing.
	withToken := NewBuilder(BuilderOptions{Registry: f.host, Token: token})
	ref, _, err := withToken.Build(ctx, "apps/1", releaseLayers()...)
	if err != nil {
		t.Fatalf("push with the token: %v", err)
	}
	if _, err := pullImage(t, ref, noRetry()...); err != nil {
		t.Errorf("pull without a token: %v", err)
	}
	if resp, _ := f.do(t, "POST", "/v2/apps/2/blobs/uploads/", "Basic "+basic("admin", token), nil); resp.StatusCode != http.StatusAccepted {
		t.Errorf("POST an upload with Basic and the token: got %d, want 202", resp.StatusCode)
	}
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "http://x/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// startUpload POSTs a new upload to repo and returns its location.
func (f *fixture) startUpload(t *testing.T, repo string) string {
	t.Helper()
	resp, body := f.do(t, "POST", "/v2/"+repo+"/blobs/uploads/", "", nil)
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Location") == "" {
		t.Fatalf("POST upload: got %d %s, want 202 with a Location", resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

func TestABlobOverThePushLimitIs413(t *testing.T) {
	const limit = 4096
	for _, dir := range []string{"", "disk"} {
		t.Run("dir="+dir, func(t *testing.T) {
			opts := Options{MaxBlobBytes: limit}
			if dir != "" {
				opts.Dir = t.TempDir()
			}
			f := newFixture(t, opts)

			// Declared too large: answered at once, the body never sent.
			for _, method := range []string{"PATCH", "PUT"} {
				loc := f.startUpload(t, "apps/1")
				if method == "PUT" {
					loc += "?digest=sha256:" + strings.Repeat("0", 64)
				}
				c, err := net.Dial("tcp", f.host)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 300000000\r\n\r\n", method, loc, f.host)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				c.Close()
				if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
					t.Errorf("%s of a declared 300 MB blob: got %v %v, want 413 without the body", method, resp, err)
				}
			}
			// Without a declared length (chunked), refused once over.
			loc := f.startUpload(t, "apps/1")
			resp, _ := f.do(t, "PATCH", loc, "", struct{ io.Reader }{strings.NewReader(strings.Repeat("x", limit+1))})
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("chunked PATCH over the limit: got %d, want 413", resp.StatusCode)
			}
			if resp, _ := f.do(t, "GET", loc, "", nil); resp.StatusCode != http.StatusNotFound {
				t.Errorf("the refused upload: got %d, want 404 (gone)", resp.StatusCode)
			}
			// Two chunks that together go over.
			loc = f.startUpload(t, "apps/1")
			if resp, _ := f.do(t, "PATCH", loc, "", strings.NewReader(strings.Repeat("x", limit-10))); resp.StatusCode != http.StatusAccepted {
				t.Fatalf("first chunk under the limit: got %d, want 202", resp.StatusCode)
			}
			if resp, _ := f.do(t, "PUT", loc+"?digest=sha256:"+strings.Repeat("0", 64), "", strings.NewReader(strings.Repeat("x", 11))); resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("closing chunk over the limit: got %d, want 413", resp.StatusCode)
			}
			// At the limit exactly: stored and served.
			blob := []byte(strings.Repeat("y", limit))
			sum := sha256.Sum256(blob)
			digest := "sha256:" + hex.EncodeToString(sum[:])
			loc = f.startUpload(t, "apps/1")
			if resp, _ := f.do(t, "PATCH", loc, "", strings.NewReader(string(blob))); resp.StatusCode != http.StatusAccepted {
				t.Fatalf("PATCH at the limit: got %d, want 202", resp.StatusCode)
			}
			if resp, body := f.do(t, "PUT", loc+"?digest="+digest, "", nil); resp.StatusCode != http.StatusCreated {
				t.Fatalf("PUT at the limit: got %d %s, want 201", resp.StatusCode, body)
			}
			if resp, body := f.do(t, "GET", "/v2/apps/1/blobs/"+digest, "", nil); resp.StatusCode != 200 || body != string(blob) {
				t.Errorf("GET the blob: got %d with %d bytes, want 200 with the %d pushed", resp.StatusCode, len(body), limit)
			}
			// A wrong digest is refused and stores nothing.
			loc = f.startUpload(t, "apps/1")
			bad := "sha256:" + strings.Repeat("1", 64)
			if resp, _ := f.do(t, "PUT", loc+"?digest="+bad, "", strings.NewReader("z")); resp.StatusCode < 400 {
				t.Errorf("PUT with a wrong digest: got %d, want a refusal", resp.StatusCode)
			}
			if resp, _ := f.do(t, "HEAD", "/v2/apps/1/blobs/"+bad, "", nil); resp.StatusCode != http.StatusNotFound {
				t.Errorf("HEAD of the wrongly digested blob: got %d, want 404", resp.StatusCode)
			}
			// A push through the builder of a layer over the limit fails.
			big := map[string][]byte{"big.bin": randomBytes(3 * limit)}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, _, err := f.builder.Build(ctx, "apps/2", Layer{Files: big}); err == nil || !strings.Contains(err.Error(), "SIZE_INVALID") {
				t.Errorf("builder push of a layer over the limit: got %v, want SIZE_INVALID (413)", err)
			}
		})
	}
}

func randomBytes(n int) []byte {
	r := rand.NewChaCha8([32]byte{1})
	b := make([]byte, n)
	r.Read(b)
	return b
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestADiskRegistrySpoolsAnUploadToDiskNotToMemory(t *testing.T) {
	const size = 64 << 20
	f := newFixture(t, Options{Dir: t.TempDir()})
	loc := f.startUpload(t, "apps/big")
	before := heapInUse()
	// Streamed from a generator: the test itself holds none of it.
	h := sha256.New()
	body := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{2}), size), h)
	resp, _ := f.do(t, "PATCH", loc, "", struct{ io.Reader }{body})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH of %d bytes: got %d, want 202", size, resp.StatusCode)
	}
	// Held between the PATCH and the PUT, the upload is on disk.
	if grew := int64(heapInUse()) - int64(before); grew > 16<<20 {
		t.Errorf("the heap grew by %d MB holding a %d MB upload, want it spooled to disk", grew>>20, size>>20)
	}
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if resp, body := f.do(t, "PUT", loc+"?digest="+digest, "", nil); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: got %d %s, want 201", resp.StatusCode, body)
	}
	if grew := int64(heapInUse()) - int64(before); grew > 16<<20 {
		t.Errorf("the heap grew by %d MB after storing a %d MB blob, want it on disk", grew>>20, size>>20)
	}
	resp, err := f.http.Client().Get(f.http.URL + "/v2/apps/big/blobs/" + digest)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	g := sha256.New()
	if n, err := io.Copy(g, resp.Body); err != nil || n != size || "sha256:"+hex.EncodeToString(g.Sum(nil)) != digest {
		t.Errorf("GET the blob: %d bytes, err %v; want the %d bytes pushed", n, err, size)
	}
}
