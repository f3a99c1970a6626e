package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"tagged", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "false"}}},
			"x v1.2.3 (0123456789ab, go1.26.8)"},
		{"dirty checkout", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}},
			"x (devel) (abc, modified, go1.26.8)"},
		{"no vcs", debug.BuildInfo{GoVersion: "go1.26.8"}, "x (devel) (go1.26.8)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := format("x", &tt.bi); got != tt.want {
				t.Errorf("format = %q; want %q", got, tt.want)
			}
		})
	}
}

// The test binary has build information; String must name the Go version.
func TestString(t *testing.T) {
	if got := String("x"); !strings.HasPrefix(got, "x ") || !strings.Contains(got, "go1.") {
		t.Errorf("String = %q", got)
	}
}
