package version

import "testing"

func TestStringPrefersTheLinkTimeVersion(t *testing.T) {
	old := Version
	defer func() { Version = old }()
	Version = "v1.2.3-4-gabc"
	if got := String(); got != "v1.2.3-4-gabc" {
		t.Errorf("got %q, want the link-time version", got)
	}
	Version = ""
	if got := String(); got == "" {
		t.Error("got an empty version without a link-time one, want the build information's or devel")
	}
}
