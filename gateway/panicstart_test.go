package gateway

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/affinity"
	"github.com/latchgw/latch/gateway/internal/recorder"
)

// Panic mode is judged only once the backends' checks have answered:
// Consul reports a check it has not run yet as critical, so every start
// warned "panic mode: too few backends look healthy" before the first
// check ran (issue 29). Once they have answered, panic mode works as
// before.
func TestNoPanicModeBeforeChecksAnswer(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	with := func(tb *testBackend, h discovery.Health, unchecked bool) discovery.Backend {
		d := tb.backend()
		d.Health, d.Unchecked = h, unchecked
		return d
	}
	logs := &recorder.Writes{}
	tg := startGatewayLog(t, nil, slog.New(slog.NewTextHandler(logs, nil)),
		[]discovery.Backend{with(a, discovery.Critical, true), with(b, discovery.Critical, true)})
	panicLogged := func() bool {
		for _, w := range logs.All() {
			if strings.Contains(w, "panic mode:") {
				return true
			}
		}
		return false
	}
	svc := func() *affinity.Service { return tg.g.routes.Service("web") }
	// set waits until the service's backends read as given (and the gauge
	// agrees with the set), and reports whether it is in panic mode.
	set := func(backends ...discovery.Backend) bool {
		t.Helper()
		if backends != nil {
			tg.static.Set("web", backends)
		} else {
			backends = []discovery.Backend{with(a, discovery.Critical, true), with(b, discovery.Critical, true)}
		}
		var panicking bool
		waitUntil(t, "the snapshot applied", func() bool {
			s := svc()
			if s == nil || s.Set() == nil {
				return false
			}
			cur := s.Set()
			for _, want := range backends {
				got := cur.Lookup(want.ID)
				if got == nil || got.Health != want.Health || got.Unchecked != want.Unchecked {
					return false
				}
			}
			panicking = cur.Panic
			// The gauge is set just after the set is published.
			gauge, _ := tg.gauge(t, "latch_panic_mode", map[string]string{"service": "web"})
			return (gauge == 1) == panicking
		})
		return panicking
	}

	steps := []struct {
		name      string
		backends  []discovery.Backend
		wantPanic bool
	}{
		{"start: no check has run", nil, false},
		{"one check ran and failed, one not yet", []discovery.Backend{with(a, discovery.Critical, false), with(b, discovery.Critical, true)}, false},
		{"both answered: healthy", []discovery.Backend{with(a, discovery.Passing, false), with(b, discovery.Passing, false)}, false},
		{"both failing: panic mode", []discovery.Backend{with(a, discovery.Critical, false), with(b, discovery.Critical, false)}, true},
		{"a re-registered (not checked yet), b failing: still judged", []discovery.Backend{with(a, discovery.Critical, true), with(b, discovery.Critical, false)}, true},
		{"recovered", []discovery.Backend{with(a, discovery.Passing, false), with(b, discovery.Passing, false)}, false},
	}
	for i, st := range steps {
		if got := set(st.backends...); got != st.wantPanic {
			t.Fatalf("step %d (%s): panic mode %v; want %v", i, st.name, got, st.wantPanic)
		}
		if i < 3 && panicLogged() {
			t.Fatalf("step %d (%s): panic mode logged before the checks answered:\n%s", i, st.name, strings.Join(logs.All(), ""))
		}
	}
	if !panicLogged() {
		t.Fatal("panic mode was never logged, though both backends failed their checks")
	}
}
