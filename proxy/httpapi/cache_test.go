package httpapi

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// Every kind of write is seen by the next read of a device and of the
// list, whichever component made it: the API (PUT, provisioning), the
// target sync (a new target, a new current commit) or the store directly.
func TestReadsAfterAnyWriteSeeIt(t *testing.T) {
	f := newDeviceFixture(t)
	get := func() (string, string) {
		t.Helper()
		code, one := f.do("GET", "/v1/devices/"+f.plain, "")
		if code != 200 {
			t.Fatalf("GET device: %d %s", code, one)
		}
		code, list := f.do("GET", "/v1/devices", "")
		if code != 200 {
			t.Fatalf("GET list: %d %s", code, list)
		}
		return one, list
	}
	one, list := get()
	if again, againList := get(); again != one || againList != list {
		t.Fatalf("two reads without a write differ:\n%s\n%s", one, again)
	}
	steps := []struct {
		what  string
		write func()
		want  string // in the device body and in the list
	}{
		{"a PUT", func() { f.do("PUT", "/v1/devices/"+f.plain, `{"status":"cache-put"}`) }, `"status":"cache-put"`},
		{"a new target from the sync", func() {
			f.applyTarget(nil, map[string]int64{f.plain: 5}, map[string]string{"E": "2"})
		}, `"targetEnvironment":{"E":"2"}`},
		{"a new current commit", func() { f.setCurrent(5, "c6") }, `"targetCommit":"c6"`},
	}
	for _, s := range steps {
		s.write()
		one, list := get()
		if !strings.Contains(one, s.want) || !strings.Contains(list, s.want) {
			t.Errorf("after %s: device %s, list %s; want both to show %s", s.what, one, list, s.want)
		}
	}
	// Provisioning adds to the list at once.
	n := strings.Count(list, `"uuid"`)
	u := f.provision(5)
	if _, list := get(); strings.Count(list, `"uuid"`) != n+1 || !strings.Contains(list, u) {
		t.Errorf("after provisioning %s the list is %s", u, list)
	}
}

// Each client's GET after its own PUT answered sees that PUT, while other
// clients write and read the same devices (run with -race).
func TestConcurrentClientsReadTheirOwnWrites(t *testing.T) {
	f := newDeviceFixture(t)
	const clients, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan string, clients*rounds)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				status := fmt.Sprintf("client-%d-round-%d", c, i)
				if code, body := f.serve("PUT", "/v1/devices/"+f.plain, `{"status":"`+status+`"}`); code != 200 {
					errs <- fmt.Sprintf("PUT: %d %s", code, body)
					return
				}
				// Others may have written since: the body shows this
				// client's status or a later one, never an earlier one of
				// its own.
				_, body := f.serve("GET", "/v1/devices/"+f.plain, "")
				for j := 0; j < i; j++ {
					if strings.Contains(body, fmt.Sprintf(`"status":"client-%d-round-%d"`, c, j)) {
						errs <- fmt.Sprintf("client %d after round %d read its round %d: %s", c, i, j, body)
					}
				}
				if !strings.Contains(body, `"status":"client-`) {
					errs <- "GET shows no client's status: " + body
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
