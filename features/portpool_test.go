package features

import "testing"

func TestPortPoolsOfTwoSuitesNeverHandOutTheSamePort(t *testing.T) {
	// Two pools with the same seed try the same ports in the same order, as
	// two suites in two processes could; the lock files keep them apart.
	a, b := newPortPool(42), newPortPool(42)
	a.lockDir = t.TempDir()
	b.lockDir = a.lockDir
	pa, err := a.take()
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.take()
	if err != nil {
		t.Fatal(err)
	}
	if pa == pb {
		t.Fatalf("both pools handed out port %d", pa)
	}
	a.release(pa)
	b.release(pb)
	// Once released, the first port is free to take again.
	c := newPortPool(42)
	c.lockDir = a.lockDir
	pc, err := c.take()
	if err != nil {
		t.Fatal(err)
	}
	if pc != pa {
		t.Errorf("after release the same sequence gave port %d, want the released %d", pc, pa)
	}
	c.release(pc)
}
