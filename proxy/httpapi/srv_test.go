package httpapi

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// keylessDribble sends a keyless PUT announcing a body of 100000 bytes and
// dribbles it, one byte every 20 ms; it returns the answer and how long it
// took from the end of the headers, or an error if none came within limit.
func keylessDribble(t *testing.T, e *testEnv, auth string, limit time.Duration) (*http.Response, time.Duration, net.Conn, error) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "PUT /v1/devices/0123456789abcdef0123456789abcdef HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: 100000\r\n\r\n", auth)
	sent := time.Now()
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	c.SetReadDeadline(sent.Add(limit))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, 0, c, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, time.Since(sent), c, nil
}

func TestAKeylessRequestIsAnswered401WithoutWaitingForItsBody(t *testing.T) {
	for _, auth := range []string{"", "Authorization: Bearer wrong\r\n"} {
		e := newEnv(t)
		resp, took, c, err := keylessDribble(t, e, auth, 2*time.Second)
		if err != nil {
			t.Fatalf("auth %q: no answer: %v", auth, err)
		}
		if resp.StatusCode != http.StatusUnauthorized || took > time.Second {
			t.Errorf("auth %q: got %d after %v, want 401 within 1 s", auth, resp.StatusCode, took)
		}
		if !resp.Close {
			t.Errorf("auth %q: the 401 keeps the connection, want Connection: close", auth)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
			t.Errorf("auth %q: after the 401, read got %d bytes, %v; want the connection closed", auth, n, err)
		}
	}
}

func TestKeylessGETKeepsItsConnection(t *testing.T) {
	e := newEnv(t)
	resp, err := http.Get(e.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Close {
		t.Errorf("GET / without a key: got %d close=%v, want 401 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
}

func TestViolationSrvKeylessReadsBodyWaitsForTheBody(t *testing.T) {
	e := newEnv(t, withViolations("srv-keyless-reads-body"))
	if resp, took, _, err := keylessDribble(t, e, "", time.Second); err == nil {
		t.Errorf("got %d after %v, want no answer within 1 s while the body dribbles", resp.StatusCode, took)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
