// Package golden pins the wire format of api/ and api/cloud/ with the
// contract's examples: each example is decoded into its wire type, encoded
// again, compared with the example as generic JSON and with the pinned
// re-encoding in testdata/<name>.golden.json. Only their tests import it.
//
// It imports only the standard library.
package golden

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json with the re-encoded examples")

// Case is one example under testdata/.
type Case struct {
	Name string
	File string
	// RoundTrip decodes the example into its wire type and re-encodes it
	// (RoundTrip[T] for a type T).
	RoundTrip func([]byte) ([]byte, error)
	// Expect turns the example, decoded as generic JSON, into the document
	// the re-encoding must equal; nil means "the example itself".
	Expect func(doc any) any
}

// RoundTrip decodes data into a T and encodes it again, indented.
func RoundTrip[T any](data []byte) ([]byte, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return json.MarshalIndent(v, "", "  ")
}

// RunAll runs each of cases as a subtest named after it.
func RunAll(t *testing.T, cases []Case) {
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) { Run(t, tc) })
	}
}

// Example reads the example file of testdata/.
func Example(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Run checks tc: the re-encoding equals the example (as Expect says) and
// the pinned golden file (go test -run Golden -update rewrites it).
func Run(t *testing.T, tc Case) {
	t.Helper()
	data := Example(t, tc.File)
	out, err := tc.RoundTrip(data)
	if err != nil {
		t.Fatalf("decoding %s: %v", tc.File, err)
	}
	var want any
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("example %s is not JSON: %v", tc.File, err)
	}
	if tc.Expect != nil {
		want = tc.Expect(want)
	}
	var got any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("re-encoded %s is not JSON: %v", tc.File, err)
	}
	if !reflect.DeepEqual(got, want) {
		wantJSON, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("re-encoded %s:\ngot  %s\nwant %s", tc.File, out, wantJSON)
	}

	golden := filepath.Join("testdata", strings.TrimSuffix(tc.File, ".json")+".golden.json")
	out = append(out, '\n')
	if *update {
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	pinned, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to create it)", err)
	}
	if !bytes.Equal(out, pinned) {
		t.Errorf("re-encoded %s differs from %s:\ngot  %s\nwant %s", tc.File, golden, out, pinned)
	}
}
