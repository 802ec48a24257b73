package features

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingTarget counts the targets running at once and keeps the most.
type countingTarget struct {
	Target
	running, most *atomic.Int32
	mu            sync.Mutex
	up            bool
}

func (c *countingTarget) Start(ctx context.Context, env map[string]string) error {
	c.mu.Lock()
	c.up = true
	c.mu.Unlock()
	n := c.running.Add(1)
	for {
		m := c.most.Load()
		if n <= m || c.most.CompareAndSwap(m, n) {
			break
		}
	}
	return c.Target.Start(ctx, env)
}

func (c *countingTarget) Stop(ctx context.Context) error {
	err := c.Target.Stop(ctx)
	c.down()
	return err
}

func (c *countingTarget) Kill() error {
	err := c.Target.Kill()
	c.down()
	return err
}

func (c *countingTarget) down() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up {
		c.up = false
		c.running.Add(-1)
	}
}

func TestRunsSharingSlotsNeverRunMoreScenariosAtOnce(t *testing.T) {
	var running, most atomic.Int32
	ping := pingTarget(t)
	cfg := Config{
		Target: func(out io.Writer) Target {
			return &countingTarget{Target: ping(out), running: &running, most: &most}
		},
		Features: threeFailing, Output: io.Discard, Concurrency: 3,
		ports: newPortPool(1), slots: newBusySlots(2),
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			res, err := Run(testCtx(t), cfg)
			if err != nil || len(res.Scenarios) != 3 {
				t.Errorf("a run: %v, %d scenarios, want 3 run", err, len(res.Scenarios))
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m > 2 {
		t.Errorf("%d targets ran at once, want at most the 2 slots the two runs share", m)
	}
	if n := running.Load(); n != 0 {
		t.Errorf("%d targets still running after the runs returned, want 0", n)
	}
}

func TestAScenarioWaitingOutAWindowLetsAnotherTakeItsSlot(t *testing.T) {
	slots := newBusySlots(1)
	if err := slots.take(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	st := &scenario{cfg: Config{slots: slots}, holding: true}
	tryTake := func() bool {
		ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
		defer cancel()
		return slots.take(ctx) == nil
	}
	var during bool
	err := st.idle(testCtx(t), func() error {
		during = tryTake()
		if during {
			slots.give() // the other scenario is done
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !during {
		t.Error("no slot could be taken while the scenario waited out its window, want its own")
	}
	if !st.holding || tryTake() {
		t.Errorf("after the window: holding %v and a slot free, want the scenario to hold the only slot again", st.holding)
	}
}
