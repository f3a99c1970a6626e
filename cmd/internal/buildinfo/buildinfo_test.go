package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "1a2b3c"}, {Key: "vcs.time", Value: "2026-12-01T08:00:00Z"},
		{Key: "vcs.modified", Value: "true"}}
	for _, tt := range []struct {
		name, stamped, rev string
		info               *debug.BuildInfo
		want               string
	}{
		{"stamped wins", "v0.3.0-2-g1a2b3c-dirty", "1a2b3c", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs},
			"latch v0.3.0-2-g1a2b3c-dirty (revision 1a2b3c dirty, 2026-12-01T08:00:00Z) go"},
		{"stamped revision, no go tool record", "v0.3.0", "9f8e7d", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			"latch v0.3.0 (revision 9f8e7d) go"},
		{"go install @version", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"}},
			"latch v0.3.0 (revision unknown: built without VCS stamping"},
		{"no build info", "", "", nil, "latch (devel) (revision unknown"},
	} {
		if got := format("latch", tt.stamped, tt.rev, tt.info); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s: %q; want it to start with %q", tt.name, got, tt.want)
		}
	}
}
