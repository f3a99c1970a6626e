// Package buildinfo says which build a binary is: its module version and the
// VCS revision Go stamped into it (runtime/debug.ReadBuildInfo), for the
// commands' -version flags.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// String is "name version (revision[, modified], go version)", e.g.
// "demo-backend v0.3.0 (3f2a9c1e7b4d, go1.26.8)". A binary built from a
// checkout without a tag reports "(devel)"; one built without VCS stamping
// (-buildvcs=false, or outside a repository, as in the Dockerfile) has no
// revision.
func String(name string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return name + " (no build information)"
	}
	return format(name, bi)
}

func format(name string, bi *debug.BuildInfo) string {
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var details []string
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			details = append(details, s.Value[:min(len(s.Value), 12)])
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified {
		details = append(details, "modified")
	}
	details = append(details, bi.GoVersion)
	return name + " " + version + " (" + strings.Join(details, ", ") + ")"
}
