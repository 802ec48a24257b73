package cloud

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsOnlyLeafWirePackages keeps the dependency direction: the fake
// cloud imports no package of this module other than proxy/cloudapi.
func TestImportsOnlyLeafWirePackages(t *testing.T) {
	const module = "github.com/depharness/depharness/"
	allowed := map[string]bool{module + "proxy/cloudapi": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, module) && !allowed[p] {
				t.Errorf("%s imports %s; want only proxy/cloudapi from this module", name, p)
			}
		}
	}
}
