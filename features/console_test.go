package features

import (
	"strings"
	"testing"
)

func TestFeatureHeadersArePrintedOncePerFeature(t *testing.T) {
	var b strings.Builder
	f := newFeatureHeaders(&b)
	for _, chunk := range []string{
		"Feature: Delete hooks\n  A device that leaves\n  the target.\n",
		"\n", "Feature: Hooks\n", "  Other text.\n",
		"\n  Scenario: one # a.feature:3\n    Given x\n",
		"\n", "\x1b[37;1mFeature:\x1b[0m Delete hooks\n", "  A device that leaves\n  the target.\n",
		"\n  Background:\n    Given y\n",
		"\n", "Feature: Hooks\n  Other text.\n",
		"\n3 scenarios (3 passed)", // unterminated
	} {
		if _, err := f.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "Feature: Delete hooks\n  A device that leaves\n  the target.\n" +
		"\nFeature: Hooks\n  Other text.\n" +
		"\n  Scenario: one # a.feature:3\n    Given x\n" +
		"\n  Background:\n    Given y\n" +
		"\n3 scenarios (3 passed)"
	if got := b.String(); got != want {
		t.Errorf("got:\n%q\nwant:\n%q", got, want)
	}
}
