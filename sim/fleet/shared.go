package fleet

import (
	"maps"
	"reflect"
	"sync"
)

// What the devices of a fleet share, so that a large fleet holds one copy
// of what is the same for all its devices.

// sharedVars keeps copies of the variables devices were last given, so that
// devices given equal variables (every device of a rollout) hold one copy
// between them; a device's variables are never changed in place, only
// replaced, and Snapshot copies them out.
type sharedVars struct {
	mu   sync.Mutex
	kept [8]map[string]any
	next int
}

// of returns a copy of v that devices may share; nil when v is empty.
func (s *sharedVars) of(v map[string]any) map[string]any {
	if len(v) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.kept {
		if k != nil && sameVars(k, v) {
			return k
		}
	}
	c := maps.Clone(v)
	s.kept[s.next] = c
	s.next = (s.next + 1) % len(s.kept)
	return c
}

func sameVars(a, b map[string]any) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}
