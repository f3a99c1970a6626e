package forward

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/policy"
)

// settlingPicker offers its first backend (the session's), then holds
// back the next pick as a re-pin would (nil, Waiting) until Settle, which
// names the last backend: the winner another replica chose. It logs what
// the loop asked of it, in order.
type settlingPicker struct {
	r       *rig
	settled *policy.Backend
	waiting bool
	events  []string
}

func (p *settlingPicker) Pick(_ *http.Request, skip *policy.Skip) (*policy.Backend, func(http.Header, *policy.Backend)) {
	bs := p.r.set.Backends
	var b *policy.Backend
	switch {
	case p.settled != nil && !skip.Has(p.settled):
		b = p.settled
	case p.settled == nil && !skip.Has(bs[0]):
		b = bs[0]
	case p.settled == nil:
		p.waiting = true // a pick elsewhere needs a re-pin first
	}
	if b == nil {
		p.events = append(p.events, "pick:-")
		return nil, nil
	}
	p.events = append(p.events, "pick:"+b.ID)
	return b, p.done
}

func (p *settlingPicker) done(h http.Header, b *policy.Backend) {
	p.events = append(p.events, "done:"+b.ID)
	h.Set("X-Committed", b.ID)
}

func (p *settlingPicker) Waiting() bool { return p.waiting }

func (p *settlingPicker) Settle(*http.Request, *policy.Skip) bool {
	p.events = append(p.events, "settle")
	if !p.waiting {
		return false
	}
	p.waiting = false
	p.settled = p.r.set.Backends[len(p.r.set.Backends)-1]
	return true
}

func (*settlingPicker) Upstream(*policy.Backend, time.Duration) {}

// Issue 24: a picker whose next backend waits on I/O (a re-pin's
// compare-and-swap) ends the loop's pass; Settle runs between passes,
// once the attempt before it is over (failed, or its answer dropped: no
// done for it), and the next pass goes to the backend it settled on.
// Both after a backend that refused the connection (a POST: nothing was
// sent, its body goes whole to the next backend) and after a
// retry.on_status answer (dropped because a backend waits: the picker
// said so without blocking, from inside the attempt).
func TestSettleBetweenPasses(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			b1, b2 := echo(t, "b1"), echo(t, "b2")
			for _, tc := range []struct {
				name   string
				first  string // the session's backend
				req    func() *http.Request
				events string
				want   string // in the answer's body
			}{
				{"refused", closedAddr(t), func() *http.Request { return post("/upload", "hello") },
					"pick:b0 pick:- settle pick:b2 done:b2", "b2 POST /upload"},
				{"retry on status", strings.TrimPrefix(b1.URL, "http://"), func() *http.Request { return get("/status/503", nil) },
					"pick:b0 pick:- pick:- settle pick:b2 done:b2", ""},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := newRig(t, p.slow, config.Route{}, func(c *config.Config) {
						c.Defaults.Retry.OnStatus = config.Set([]int{503})
					}, tc.first, strings.TrimPrefix(b1.URL, "http://"), strings.TrimPrefix(b2.URL, "http://"))
					pk := &settlingPicker{r: r}
					w := httptest.NewRecorder()
					res := r.f.Serve(w, tc.req(), r.spec, pk)
					if got := strings.Join(pk.events, " "); got != tc.events {
						t.Fatalf("the loop asked: %s; want %s", got, tc.events)
					}
					if res.Backend == nil || res.Backend.ID != "b2" || w.Header().Get("X-Committed") != "b2" {
						t.Fatalf("answered by %v (committed %q); want b2", res.Backend, w.Header().Get("X-Committed"))
					}
					if tc.want != "" && (w.Code != 200 || !strings.Contains(w.Body.String(), tc.want) || !strings.Contains(w.Body.String(), "body=5")) {
						t.Fatalf("%d %q; want b2's echo of the whole body", w.Code, w.Body.String())
					}
				})
			}
		})
	}
}
