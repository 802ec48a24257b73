package depcheck

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/depharness/depharness/"

type pkg struct {
	ImportPath string
	Imports    []string
	Standard   bool
}

// rule says which module packages (by prefix) a package may import; stdOnly
// packages may import nothing outside the standard library.
type rule struct {
	prefix  string
	stdOnly bool
	allowed []string // module-relative prefixes, e.g. "proxy/api"
	denied  []string
}

var rules = []rule{
	{prefix: "proxy/api", stdOnly: true},
	{prefix: "proxy/cloudapi", stdOnly: true},
	{prefix: "proxy/violation", stdOnly: true},
	// Leaf helpers the proxy and the fakes share.
	{prefix: "internal/jsonstr", stdOnly: true},
	{prefix: "internal/httpserver", stdOnly: true},
	{prefix: "internal/version", stdOnly: true},
	// The hook dispatcher and the target sync work on the store alone; the
	// composition (package proxy) wires them to the other parts.
	{prefix: "proxy/hooks", denied: []string{"fakes", "sim", "features", "world", "cmd", "e2e",
		"proxy/httpapi", "proxy/cloudclient", "proxy/assets", "proxy/outbox", "proxy/sync"}},
	{prefix: "proxy/sync", denied: []string{"fakes", "sim", "features", "world", "cmd", "e2e",
		"proxy/httpapi", "proxy/cloudclient", "proxy/assets", "proxy/outbox", "proxy/hooks"}},
	{prefix: "proxy", denied: []string{"fakes", "sim", "features", "world", "cmd", "e2e"}},
	{prefix: "fakes/cloud", allowed: []string{"proxy/cloudapi", "internal/jsonstr"}},
	{prefix: "fakes/hookrecv", allowed: []string{"proxy/api"}},
	{prefix: "fakes", allowed: []string{"proxy/api", "proxy/cloudapi", "fakes"}},
	// Load scenarios drive the fake cloud through its HTTP control client.
	{prefix: "sim/load", allowed: []string{"proxy/api", "sim", "fakes/cloud", "internal/httpserver"}},
	{prefix: "sim", allowed: []string{"proxy/api", "sim"}},
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"...").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

func TestDependenciesFlowOneWay(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 5 {
		t.Fatalf("go list found %d packages, want the whole module", len(pkgs))
	}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(p.ImportPath, module)
		for _, r := range rules {
			if !under(rel, r.prefix) {
				continue
			}
			for _, imp := range p.Imports {
				internal := strings.HasPrefix(imp, module)
				impRel := strings.TrimPrefix(imp, module)
				std := !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".")
				switch {
				case r.stdOnly && !std:
					t.Errorf("%s imports %s; it may import only the standard library", rel, imp)
				case internal && len(r.allowed) > 0 && !anyUnder(impRel, r.allowed):
					t.Errorf("%s imports %s; it may import only %v of this module", rel, impRel, r.allowed)
				case internal && anyUnder(impRel, r.denied):
					t.Errorf("%s imports %s; %s must not depend on %v", rel, impRel, r.prefix, r.denied)
				}
			}
			break // the first matching rule is the most specific
		}
	}
}

func anyUnder(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if under(path, p) {
			return true
		}
	}
	return false
}
