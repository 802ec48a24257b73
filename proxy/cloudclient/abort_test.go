package cloudclient

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/testkit"
)

// A call abandoned without an answer (issue 10, finding 2b) must not leave
// its request to reach the cloud later: the connection is reset (the
// kernel discards what the cloud has not acknowledged) rather than shut
// down in order (where the kernel keeps retransmitting the request and a
// FIN for minutes, and a cloud back on the network takes the old request
// after newer ones). The cloud here reads the request and never answers;
// once the client gave up, its next read must see a reset. Before the
// change it saw an orderly EOF.
func TestAnAbandonedCallResetsItsConnection(t *testing.T) {
	ln := testkit.Listen(t)
	after := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			after <- err
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			after <- err
			return
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1))
		after <- err
	}()
	c, err := New(Options{BaseURL: "http://" + ln.Addr().String(), GatewayUUID: "gw", APIKey: "k", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	status := "x"
	err = c.PatchDevice(context.Background(), 1, cloud.DevicePatch{Status: &status})
	if !OutcomeUnknown(err) {
		t.Errorf("PatchDevice to a cloud that read the request and never answered: %v, want an unknown outcome", err)
	}
	switch err := <-after; {
	case errors.Is(err, syscall.ECONNRESET):
	case errors.Is(err, io.EOF):
		t.Error("the abandoned connection was shut down in order (FIN), want a reset")
	default:
		t.Errorf("the cloud's read after the client gave up: %v, want a reset", err)
	}
}

// A request that could not be sent (nothing listens) is not an unknown
// outcome: the cloud cannot have taken it.
func TestARefusedConnectionIsNotAnUnknownOutcome(t *testing.T) {
	c, err := New(Options{BaseURL: "http://" + testkit.FreeAddr(t), GatewayUUID: "gw", APIKey: "k", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = c.SendLogs(context.Background(), []cloud.LogLine{{UUID: "u", Message: "m"}})
	if err == nil || !IsUnavailable(err) || OutcomeUnknown(err) {
		t.Errorf("SendLogs to a closed port: %v, want unavailable and not an unknown outcome", err)
	}
}
