package discovery

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

func TestDenied(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"ACL not found", api.StatusError{Code: 403, Body: "ACL not found"}, true},
		{"wrapped", fmt.Errorf("query: %w", api.StatusError{Code: 403, Body: "Permission denied"}), true},
		{"server error", api.StatusError{Code: 500, Body: "No cluster leader"}, false},
		{"connection refused", errors.New("dial tcp 127.0.0.1:8500: connect: connection refused"), false},
	} {
		if got := denied(tt.err); got != tt.want {
			t.Errorf("%s: denied = %v; want %v", tt.name, got, tt.want)
		}
	}
}

// TestACLFilterLogs: a filtered answer is logged once when it starts (an
// error naming the policy for a service, news for the catalog), once when
// it ends, and not on every answer in between.
func TestACLFilterLogs(t *testing.T) {
	for _, tt := range []struct {
		name    string
		catalog bool
		answers []bool
		want    []string // one line each, in order
	}{
		{"service: filtered, then in full", false, []bool{false, true, true, false, false},
			[]string{"level=ERROR msg=\"consul left instances out", "level=INFO msg=\"consul answers in full again"}},
		{"service: never filtered", false, []bool{false, false}, nil},
		{"catalog: filtered from the start", true, []bool{true, true},
			[]string{"level=INFO msg=\"consul's catalog leaves out services"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			f := aclFilter{catalog: tt.catalog}
			for _, filtered := range tt.answers {
				f.note(log, "service web", filtered)
			}
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if buf.Len() == 0 {
				lines = nil
			}
			if len(lines) != len(tt.want) {
				t.Fatalf("%d lines; want %d:\n%s", len(lines), len(tt.want), buf.String())
			}
			for i, w := range tt.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("line %d: %s\nwant %s", i, lines[i], w)
				}
			}
			if !tt.catalog && len(tt.want) > 0 && !strings.Contains(lines[0], `node_prefix`) {
				t.Errorf("the error names no policy: %s", lines[0])
			}
		})
	}
}
