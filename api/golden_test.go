package api_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/depharness/depharness/api"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json with the re-encoded examples")

// The examples under testdata/ are the JSON documents of the seed page
// (seed/dependent-apps.md), one per endpoint, plus the update hook body in
// the form CONTRACT.md HOOK-UPD-1 fixes. Each is decoded into its wire type
// and encoded again; the result must be the same JSON document (compared as
// generic JSON, so key order and spacing do not matter), except for the
// differences a case states in expect. The re-encoded bytes are also pinned
// in testdata/<name>.golden.json (go test -run Golden -update rewrites them).

type goldenCase struct {
	name string
	file string
	// roundTrip decodes the example into its wire type and re-encodes it.
	roundTrip func([]byte) ([]byte, error)
	// expect turns the example, decoded as generic JSON, into the document
	// the re-encoding must equal; nil means "the example itself".
	expect func(doc any) any
}

func roundTrip[T any](data []byte) ([]byte, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return json.MarshalIndent(v, "", "  ")
}

// seedSingleDevice describes how the seed's single-device examples (GET and
// PUT /v1/devices/:uuid) come out of api.Device: the seed shows env and
// targetEnv, which no Supervisor version returned (CONTRACT.md, "Historical
// deviations"), so they are dropped; the object's fields environment,
// targetEnvironment, config and targetConfig, absent from those examples,
// appear. Decoded from a document without them they are nil maps and
// encode as null: a producer of the API (the proxy) must fill them with {}
// (CONTRACT.md, device object), the type does not do it by itself.
func seedSingleDevice(doc any) any {
	m := doc.(map[string]any)
	delete(m, "env")
	delete(m, "targetEnv")
	for _, k := range []string{"environment", "targetEnvironment", "config", "targetConfig"} {
		m[k] = nil
	}
	return m
}

func TestGoldenSupervisorAPIExamples(t *testing.T) {
	cases := []goldenCase{
		{name: "dependent apps list keeps every field", file: "dependent-apps.json", roundTrip: roundTrip[[]api.App]},
		{name: "devices list keeps every field of every device", file: "devices.json", roundTrip: roundTrip[[]api.Device]},
		{name: "provision request keeps appId and device_type", file: "provision-request.json", roundTrip: roundTrip[api.ProvisionRequest]},
		{name: "provision response keeps id uuid name note device_type", file: "provision-response.json", roundTrip: roundTrip[api.ProvisionResponse]},
		{name: "single device drops env and targetEnv of the seed", file: "device-get.json", roundTrip: roundTrip[api.Device], expect: seedSingleDevice},
		{name: "device update body keeps is_online status commit", file: "device-put-request.json", roundTrip: roundTrip[api.DeviceUpdate]},
		{name: "device update response drops env and targetEnv of the seed", file: "device-put-response.json", roundTrip: roundTrip[api.Device], expect: seedSingleDevice},
		{name: "log line keeps message and timestamp", file: "log-entry.json", roundTrip: roundTrip[api.LogEntry]},
		{name: "update hook keeps appId commit environment config", file: "update-hook.json", roundTrip: roundTrip[api.UpdateHook]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runGolden(t, tc) })
	}
}

// TestGoldenSeedHookPlaceholderIsNotTheWireFormat documents that the seed's
// update-hook example ({"environment": "<environment>"}) is a placeholder:
// the environment on the wire is an object (HOOK-UPD-1), and a string there
// does not decode.
func TestGoldenSeedHookPlaceholderIsNotTheWireFormat(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "update-hook-seed-placeholder.json"))
	if err != nil {
		t.Fatal(err)
	}
	var h api.UpdateHook
	err = json.Unmarshal(data, &h)
	var typeErr *json.UnmarshalTypeError
	if !errors.As(err, &typeErr) {
		t.Fatalf("got error %v, want a *json.UnmarshalTypeError", err)
	}
	if typeErr.Field != "environment" {
		t.Errorf("got type error on field %q, want environment", typeErr.Field)
	}
}

func runGolden(t *testing.T, tc goldenCase) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", tc.file))
	if err != nil {
		t.Fatal(err)
	}
	out, err := tc.roundTrip(data)
	if err != nil {
		t.Fatalf("decoding %s: %v", tc.file, err)
	}
	var want any
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("example %s is not JSON: %v", tc.file, err)
	}
	if tc.expect != nil {
		want = tc.expect(want)
	}
	var got any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("re-encoded %s is not JSON: %v", tc.file, err)
	}
	if !reflect.DeepEqual(got, want) {
		wantJSON, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("re-encoded %s:\ngot  %s\nwant %s", tc.file, out, wantJSON)
	}

	golden := filepath.Join("testdata", strings.TrimSuffix(tc.file, ".json")+".golden.json")
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
		t.Errorf("re-encoded %s differs from %s:\ngot  %s\nwant %s", tc.file, golden, out, pinned)
	}
}
