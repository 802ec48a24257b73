package hookrecv

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsOnlyTheStandardLibraryAndTheWireTypes keeps the fake a leaf:
// the standard library and proxy/api, nothing of the proxy, the simulator
// or the suite.
func TestImportsOnlyTheStandardLibraryAndTheWireTypes(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			stdlib := !strings.Contains(strings.SplitN(p, "/", 2)[0], ".")
			if !stdlib && p != "github.com/depharness/depharness/proxy/api" {
				t.Errorf("%s imports %s; want only the standard library and proxy/api", f, p)
			}
		}
	}
}
