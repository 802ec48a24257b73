package testkit

import (
	"net"
	"testing"
)

func TestListenIsClosedWhenTheTestEndsAndFreeAddrHasNoListener(t *testing.T) {
	var addr string
	t.Run("listening", func(t *testing.T) {
		addr = Listen(t).Addr().String()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial the listener: %v", err)
		}
		c.Close()
	})
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the listener still accepts after its test ended")
	}
	if c, err := net.Dial("tcp", FreeAddr(t)); err == nil {
		c.Close()
		t.Error("something listens at FreeAddr")
	}
}
