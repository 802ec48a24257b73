package features

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/cucumber/godog"
	messages "github.com/cucumber/messages/go/v34"

	"github.com/depharness/depharness/fakes/hookrecv"
)

// Scheduling: scenarios run side by side, so a run lasts at least as long
// as its longest scenario, and longer when a long one starts last. The run
// hands godog one path per scenario ("file.feature:line"; an outline's line
// covers its example rows), the longest expected first, so that the long
// ones overlap the many short ones instead of ending the run alone. Godog
// runs paths in the order given.
//
// The expected length of a scenario is read from its steps: the waits the
// contract's bounds impose (negative windows, hook sequences paced by the
// retry interval or backed off, watches of N intervals) in the intervals the
// target is started with. It orders only; no step's own timing depends on
// it.

// scheduleBucket is the granularity of expected lengths: scenarios whose
// expectations fall in the same bucket run in the seed's order.
const scheduleBucket = 500 * time.Millisecond

// stepCost is what an ordinary step is expected to take (a request, an
// await of something already under way).
const stepCost = 20 * time.Millisecond

// scheduledPaths returns the scenarios that tags selects from paths (every
// feature file when empty) as godog paths, one per scenario or outline,
// longest expected first; scenarios in the same bucket of expected length
// are ordered by seed.
func scheduledPaths(fsys fs.FS, tags string, paths []string, t Timing, seed int64) ([]string, error) {
	feats, err := godog.TestSuite{Options: &godog.Options{Tags: tags, FS: fsys, Paths: pathsOr(paths)}}.RetrieveFeatures()
	if err != nil {
		return nil, err
	}
	type job struct {
		path string
		cost time.Duration
	}
	var jobs []job
	index := map[string]int{}
	for _, f := range feats {
		for _, p := range f.Pickles {
			sc := f.FindScenario(p.AstNodeIds[0])
			if sc == nil {
				return nil, fmt.Errorf("%s: no scenario for pickle %q", f.Uri, p.Name)
			}
			if len(p.Steps) == 0 {
				return nil, fmt.Errorf("%s:%d: scenario %q has no steps", fileURI(f.Uri), sc.Location.Line, p.Name)
			}
			path := fmt.Sprintf("%s:%d", fileURI(f.Uri), sc.Location.Line)
			cost := expectedLength(p.Steps, t)
			if i, ok := index[path]; ok {
				jobs[i].cost = max(jobs[i].cost, cost)
				continue
			}
			index[path] = len(jobs)
			jobs = append(jobs, job{path, cost})
		}
	}
	rng := mrand.New(mrand.NewPCG(uint64(seed), 0x5c4ed))
	rng.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].cost/scheduleBucket > jobs[j].cost/scheduleBucket })
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.path
	}
	return out, nil
}

// hookScript is what a scenario scripts for one kind of hook: whether its
// answers fail (a delivery that fails is retried with backoff), whether the
// last one, which repeats, fails, and how long a failing attempt is held.
type hookScript struct {
	fails, lastFails bool
	held             time.Duration
}

var (
	scriptStepRe = regexp.MustCompile(`^the gateway app answers (update|delete|restart) hooks(?: for "[^"]*")? with (.+)$`)
	hooksAwaitRe = regexp.MustCompile(`receives (\d+) (?:more )?(update|delete|restart) hook`)
	windowRe     = regexp.MustCompile(`^no further (update|delete|restart) hook reaches "[^"]*" while the contract would have repeated it$`)
	restartWinRe = regexp.MustCompile(`^no (?:update|delete|restart) hook reaches "[^"]*" again after the restart`)
	releaseWinRe = regexp.MustCompile(`^no update hook for release "[^"]*" reaches "[^"]*" while the contract would have sent it$`)
	retryWatchRe = regexp.MustCompile(`(?:no more within|keeps for) (\d+) retry intervals?`)
	pollWaitRe   = regexp.MustCompile(`^the supervisor has waited (\d+) poll intervals$`)
	pollWatchRe  = regexp.MustCompile(`^the cloud sees a state poll in every window of (\d+) poll intervals$`)
	secondsRe    = regexp.MustCompile(`within (\d+) s\b`)
	mebibytesRe  = regexp.MustCompile(`(\d+) MiB`)
)

// expectedLength is how long a scenario with steps is expected to take with
// the target's intervals t.
func expectedLength(steps []*messages.PickleStep, t Timing) time.Duration {
	b := contractBounds{t}
	scripts := map[string]hookScript{}
	for _, s := range steps {
		m := scriptStepRe.FindStringSubmatch(s.Text)
		if m == nil {
			continue
		}
		as, err := parseAnswers(m[2], t.HookTimeout)
		if err != nil || len(as) == 0 {
			continue
		}
		var sc hookScript
		for i, a := range as {
			f := answerFails(a, m[1], t)
			sc.fails = sc.fails || f
			if f {
				sc.held = max(sc.held, min(a.Delay, t.HookTimeout))
				if a.Hang {
					sc.held = t.HookTimeout
				}
			}
			if i == len(as)-1 {
				sc.lastFails = f
			}
		}
		scripts[m[1]] = sc
	}
	d := 2 * stepCost // starting and stopping the target
	for _, s := range steps {
		d += stepCost
		text := s.Text
		switch {
		case windowRe.MatchString(text):
			if scripts[windowRe.FindStringSubmatch(text)[1]].lastFails {
				d += 3 * b.retryAfterFailure()
			} else {
				d += 3 * b.repeat202()
			}
		case restartWinRe.MatchString(text):
			d += 3 * b.repeat202()
		case releaseWinRe.MatchString(text):
			_, busy := scripts["update"]
			d += 3 * b.firstHook(busy)
		case retryWatchRe.MatchString(text):
			d += time.Duration(atoi(retryWatchRe.FindStringSubmatch(text)[1])) * t.Retry
		case pollWaitRe.MatchString(text):
			d += time.Duration(atoi(pollWaitRe.FindStringSubmatch(text)[1])) * t.Poll
		case pollWatchRe.MatchString(text):
			d += 4 * time.Duration(atoi(pollWatchRe.FindStringSubmatch(text)[1])) * t.Poll
		case hooksAwaitRe.MatchString(text):
			m := hooksAwaitRe.FindStringSubmatch(text)
			d += hookSequence(atoi(m[1]), scripts[m[2]], t)
		case secondsRe.MatchString(text):
			d += time.Duration(atoi(secondsRe.FindStringSubmatch(text)[1])) * time.Second
		case mebibytesRe.MatchString(text):
			d += time.Duration(atoi(mebibytesRe.FindStringSubmatch(text)[1])) * 250 * time.Millisecond
		}
	}
	return d
}

// answerFails reports whether a hook of kind answered a counts as not
// delivered: refused, hung, answered after the hook timeout, or with a
// status that does not acknowledge it.
func answerFails(a hookrecv.Answer, kind string, t Timing) bool {
	if a.Refuse || a.Hang || a.Delay >= t.HookTimeout {
		return true
	}
	st := a.Status
	return st != 0 && st != 200 && !(kind == "update" && st == 202)
}

// hookSequence is how long n attempts of a hook take: a retry interval
// apart, or backed off (doubling up to 10 retry intervals) and held for the
// failing answers' time when the script fails.
func hookSequence(n int, sc hookScript, t Timing) time.Duration {
	var d time.Duration
	step := t.Retry
	for i := 1; i < n; i++ {
		d += step
		if sc.fails {
			d += sc.held
			step = min(2*step, 10*t.Retry)
		}
	}
	return d
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// cucumberFeature is a feature of godog's cucumber JSON, its fields in
// godog's order, its elements kept as written.
type cucumberFeature struct {
	URI         string            `json:"uri"`
	ID          string            `json:"id"`
	Keyword     string            `json:"keyword"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Line        int               `json:"line"`
	Comments    json.RawMessage   `json:"comments,omitempty"`
	Tags        json.RawMessage   `json:"tags,omitempty"`
	Elements    []json.RawMessage `json:"elements,omitempty"`
}

// mergeCucumberJSON rewrites the cucumber JSON at path, which godog wrote
// with a feature per scheduled path ("file.feature:line"), as one feature
// per file (uri "file.feature"), its scenarios in file order, the features
// ordered by name as godog orders them.
func mergeCucumberJSON(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var in []cucumberFeature
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	var out []*cucumberFeature
	byFile := map[string]*cucumberFeature{}
	for _, f := range in {
		uri := fileURI(f.URI)
		m := byFile[uri]
		if m == nil {
			f := f
			f.URI, f.Elements = uri, nil
			m = &f
			byFile[uri] = m
			out = append(out, m)
		}
		m.Elements = append(m.Elements, f.Elements...)
	}
	for _, f := range out {
		type element struct {
			line int
			raw  json.RawMessage
		}
		els := make([]element, len(f.Elements))
		for i, raw := range f.Elements {
			var el struct {
				Line int `json:"line"`
			}
			if err := json.Unmarshal(raw, &el); err != nil {
				return fmt.Errorf("reading %s: %w", path, err)
			}
			els[i] = element{el.Line, raw}
		}
		sort.SliceStable(els, func(i, j int) bool { return els[i].line < els[j].line })
		for i, el := range els {
			f.Elements[i] = el.raw
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "    ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
