// Package buildinfo says which build of a latch command is running: the
// version stamped by `make build` / `make release`, else the module
// version Go recorded, and the VCS revision from runtime/debug.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and Revision are stamped by the Makefile (`git describe --tags
// --always --dirty` and the commit) with -ldflags "-X
// github.com/latchgw/latch/cmd/internal/buildinfo.Version=...". Empty:
// what the go tool recorded: the module version ("v1.2.3" after `go
// install ...@v1.2.3`, "(devel)" for a plain `go build`) and vcs.revision
// (absent in a git worktree or with -buildvcs=false).
var Version, Revision string

// String is one line: command name, version, VCS revision (with "dirty"
// when the tree had uncommitted changes) and commit time, Go version and
// platform, e.g. "latch v0.3.0-2-g1a2b3c4 (revision 1a2b3c4d5e6f..., 2026-12-01T08:00:00Z) go1.26.7 linux/amd64".
func String(name string) string {
	info, _ := debug.ReadBuildInfo()
	return format(name, Version, Revision, info)
}

func format(name, stamped, stampedRevision string, info *debug.BuildInfo) string {
	version, revision, when, dirty := stamped, "", "", false
	if info != nil {
		if version == "" {
			version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if version == "" {
		version = "(devel)"
	}
	if stampedRevision != "" && stampedRevision != revision {
		revision, when, dirty = stampedRevision, "", false // the go tool's record is of another tree
	}
	vcs := "revision unknown: built without VCS stamping (make build, make up and make release stamp it)"
	if revision != "" {
		vcs = "revision " + revision
		if dirty {
			vcs += " dirty"
		}
		if when != "" {
			vcs += ", " + when
		}
	}
	return fmt.Sprintf("%s %s (%s) %s %s/%s", name, version, vcs, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
