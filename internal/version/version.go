// Package version says which depharness this is: the Makefile sets Version
// with -ldflags "-X …/internal/version.Version=…"; otherwise it is read
// from the build information Go embeds (module version, VCS revision).
//
// It imports only the standard library.
package version

import (
	"runtime/debug"
	"strings"
)

// Version is set at link time by the Makefile (git describe); empty means
// "read it from the build information".
var Version string

// String returns the version of this binary: Version if set, else the
// main module's version with the VCS revision and "-dirty" for a modified
// tree, else "devel".
func String() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev != "" && !strings.Contains(v, rev[:min(12, len(rev))]) {
		v += " (" + rev[:min(12, len(rev))] + dirty + ")"
	}
	return v
}
