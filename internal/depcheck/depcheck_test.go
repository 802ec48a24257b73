package depcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/depharness/depharness/"

type pkg struct {
	ImportPath string
	Imports    []string
}

// rule says what the packages under prefixes may import of this module (may,
// by prefix), or that they may import only the standard library (stdOnly).
// The first rule that matches a package applies.
type rule struct {
	prefixes []string
	stdOnly  bool
	may      []string // module-relative prefixes, e.g. "api"
}

var rules = []rule{
	// The floor: the wire types and the leaf helpers (internal/promreg and
	// its internal/promreg/promtest import the Prometheus client too,
	// internal/browsertest chromedp).
	{prefixes: []string{"internal/promreg"}, may: []string{}},
	// The browser driver of the page tests (chromedp), used by tests only.
	{prefixes: []string{"internal/browsertest"}, may: []string{}},
	// The commands' settings: flags (pflag) and their variables.
	{prefixes: []string{"internal/settings"}, may: []string{}},
	{prefixes: []string{"api", "internal", "proxy/violation"}, stdOnly: true},
	// The hook dispatcher and the target sync work on the store alone; the
	// composition (package proxy) wires them to the other parts.
	{prefixes: []string{"proxy/hooks", "proxy/sync"}, may: []string{"api", "proxy/store", "proxy/violation", "proxy/internal", "internal"}},
	// The proxy, the fakes and the simulator stand side by side on the floor.
	{prefixes: []string{"proxy"}, may: []string{"api", "proxy", "internal"}},
	{prefixes: []string{"fakes/cloud"}, may: []string{"api/cloud", "internal"}},
	{prefixes: []string{"fakes"}, may: []string{"api", "fakes", "internal"}},
	// Load scenarios drive the fake cloud through its HTTP control client.
	{prefixes: []string{"sim/load"}, may: []string{"api", "sim", "fakes/cloud", "internal"}},
	// The live fleet view sees the fleet and the gateway, never the proxy.
	{prefixes: []string{"sim/fleetview"}, may: []string{"api", "sim/fleet", "sim/gateway", "internal"}},
	{prefixes: []string{"sim"}, may: []string{"api", "sim", "internal"}},
	// world/chaos (the fault battery) builds on the world it starts.
	{prefixes: []string{"world"}, may: []string{"api", "proxy", "fakes", "sim", "internal", "world"}},
}

// Nothing outside proxy/ imports proxy/ except the composition points; the
// suite's self-check also reads the reference proxy's catalogue of
// violations and allowances.
var (
	composition = []string{"world", "cmd", "features/refproxy"}
	proxyShared = map[string][]string{"features": {"proxy/violation"}}
)

// testSupport are the packages that only test files import: the shared
// test helpers, the metrics checks and the browser driver of the page
// tests.
var testSupport = []string{"internal/testkit", "internal/promreg/promtest", "internal/browsertest"}

// check returns one message per import that breaks the rules, for the
// packages' own (non-test) imports.
func check(pkgs []pkg) []string {
	var bad []string
	for _, p := range pkgs {
		rel := strings.TrimPrefix(p.ImportPath, module)
		i := slices.IndexFunc(rules, func(r rule) bool { return anyUnder(rel, r.prefixes) })
		for _, imp := range p.Imports {
			inModule := strings.HasPrefix(imp, module)
			impRel := strings.TrimPrefix(imp, module)
			std := !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".")
			switch {
			case i >= 0 && rules[i].stdOnly && !std:
				bad = append(bad, fmt.Sprintf("%s imports %s; it may import only the standard library", rel, imp))
			case i >= 0 && inModule && rules[i].may != nil && !anyUnder(impRel, rules[i].may):
				bad = append(bad, fmt.Sprintf("%s imports %s; it may import only %v of this module", rel, impRel, rules[i].may))
			case inModule && anyUnder(impRel, testSupport):
				bad = append(bad, fmt.Sprintf("%s imports %s; only test files import %v", rel, impRel, testSupport))
			case inModule && under(impRel, "proxy") && !under(rel, "proxy") && !anyUnder(rel, composition) &&
				!anyUnder(impRel, proxyShared[rel]):
				bad = append(bad, fmt.Sprintf("%s imports %s; only %v import the proxy", rel, impRel, composition))
			}
		}
	}
	return bad
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

func anyUnder(path string, prefixes []string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return under(path, p) })
}

func TestDependenciesFlowOneWay(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 5 {
		t.Fatalf("go list found %d packages, want the whole module", len(pkgs))
	}
	for _, msg := range check(pkgs) {
		t.Error(msg)
	}
}

// TestTheRulesCatchABrokenDirection feeds the rules one made-up package per
// rule that breaks it, and one that keeps it.
func TestTheRulesCatchABrokenDirection(t *testing.T) {
	tests := []struct {
		name    string
		pkg     string
		imports []string
		broken  bool
	}{
		{"the wire types import a third-party package", "api", []string{"github.com/x/y"}, true},
		{"the cloud wire types import the proxy", "api/cloud", []string{module + "proxy/store"}, true},
		{"the wire types import the standard library", "api/cloud", []string{"encoding/json"}, false},
		{"a leaf helper imports the wire types", "internal/jsonstr", []string{module + "api"}, true},
		{"the metrics factory imports the proxy", "internal/promreg", []string{module + "proxy/store"}, true},
		{"the metrics factory imports the Prometheus client", "internal/promreg", []string{"github.com/prometheus/client_golang/prometheus"}, false},
		{"the settings binder imports pflag", "internal/settings", []string{"github.com/spf13/pflag"}, false},
		{"the settings binder imports the proxy's configuration", "internal/settings", []string{module + "proxy/config"}, true},
		{"another leaf helper imports pflag", "internal/httpserver", []string{"github.com/spf13/pflag"}, true},
		{"a fake imports a leaf helper", "fakes/cloud", []string{module + "internal/promreg", module + "api/cloud"}, false},
		{"the hook dispatcher imports the cloud client", "proxy/hooks", []string{module + "proxy/cloudclient"}, true},
		{"the sync imports the hook dispatcher", "proxy/sync", []string{module + "proxy/hooks"}, true},
		{"the hook dispatcher imports the store", "proxy/hooks", []string{module + "proxy/store", module + "api"}, false},
		{"the proxy imports a fake", "proxy/httpapi", []string{module + "fakes/cloud"}, true},
		{"the proxy imports the suite", "proxy", []string{module + "features"}, true},
		{"a fake imports the proxy", "fakes/hookrecv", []string{module + "proxy/store"}, true},
		{"the fake cloud imports the fake registry", "fakes/cloud", []string{module + "fakes/registry"}, true},
		{"a fake imports the simulator", "fakes/registry", []string{module + "sim/client"}, true},
		{"the simulator imports the proxy", "sim/client", []string{module + "proxy/config"}, true},
		{"the simulator imports a fake", "sim/gateway", []string{module + "fakes/cloud"}, true},
		{"the load scenarios import the fake cloud", "sim/load", []string{module + "fakes/cloud"}, false},
		{"the load scenarios import the world", "sim/load", []string{module + "world"}, true},
		{"the world imports the suite", "world", []string{module + "features"}, true},
		{"the suite imports the proxy's store", "features", []string{module + "proxy/store"}, true},
		{"the suite reads the violation catalogue", "features", []string{module + "proxy/violation"}, false},
		{"the suite's reference target imports the proxy", "features/refproxy", []string{module + "proxy"}, false},
		{"the end-to-end tests import the proxy", "e2e", []string{module + "proxy/config"}, true},
		{"the CLI imports the proxy", "cmd/depharness", []string{module + "proxy/config"}, false},
		{"the proxy imports the test helpers", "proxy", []string{module + "internal/testkit"}, true},
		{"the world imports the browser driver", "world", []string{module + "internal/browsertest"}, true},
		{"the test helpers import the standard library", "internal/testkit", []string{"testing"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := check([]pkg{{ImportPath: module + tt.pkg, Imports: tt.imports}})
			if broken := len(got) > 0; broken != tt.broken {
				t.Errorf("check(%s imports %v) = %q; broken = %v, want %v", tt.pkg, tt.imports, got, broken, tt.broken)
			}
		})
	}
}
