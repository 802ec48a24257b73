package sync

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsStayInTheirLane keeps the package's non-test code off the
// packages it must not depend on (see the package doc).
func TestImportsStayInTheirLane(t *testing.T) {
	forbidden := []string{
		"github.com/depharness/depharness/fakes",
		"github.com/depharness/depharness/sim",
		"github.com/depharness/depharness/features",
		"github.com/depharness/depharness/world",
		"github.com/depharness/depharness/proxy/httpapi",
		"github.com/depharness/depharness/proxy/cloudclient",
		"github.com/depharness/depharness/proxy/assets",
		"github.com/depharness/depharness/proxy/outbox",
		"github.com/depharness/depharness/proxy/hooks",
	}
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("got files %v (err %v), want the package's sources", files, err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range forbidden {
				if path == bad || strings.HasPrefix(path, bad+"/") {
					t.Errorf("%s imports %s, which this package must not depend on", name, path)
				}
			}
		}
	}
}
