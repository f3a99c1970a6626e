package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// seen records what a test server was sent.
type seen struct {
	mu    sync.Mutex
	count int64
	vals  map[string]bool
}

func (s *seen) add(vals ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count++
	for _, v := range vals {
		s.vals[v] = true
	}
}

func (s *seen) seen() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

func (s *seen) sorted() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

// An open-loop run never sends ahead of its schedule; a closed-loop run
// rotates over its URLs and cookies; warmup requests are counted apart.
func TestRun(t *testing.T) {
	s := &seen{vals: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.add("path="+r.URL.Path, "cookie="+r.Header.Get("Cookie"))
	}))
	defer srv.Close()

	const rate, d = 200.0, 300 * time.Millisecond
	res, err := Run(context.Background(), Options{URL: srv.URL, Rate: rate, Duration: d, Warmup: 1, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if limit := int64(rate*d.Seconds()) + 1; res.Requests > limit || res.Requests == 0 {
		t.Fatalf("open loop at %v/s for %v sent %d; want 1..%d", rate, d, res.Requests, limit)
	}
	// A request the deadline cut off may or may not have reached the server
	// (on a busy machine it often has): it is counted in Cut, not Requests.
	measured := res.Requests + res.Warmup
	if got := s.seen(); res.Warmup != 1 || got < measured || got > measured+res.Cut {
		t.Fatalf("server saw %d, result says %d+%d (+%d cut off)", got, res.Requests, res.Warmup, res.Cut)
	}

	// A server of its own: a request the first run's deadline cut off may
	// still arrive at the first one.
	s2 := &seen{vals: map[string]bool{}}
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s2.add("path="+r.URL.Path, "cookie="+r.Header.Get("Cookie"))
	}))
	defer srv2.Close()
	res, err = Run(context.Background(), Options{URLs: []string{srv2.URL + "/a", srv2.URL + "/b"},
		Cookies: []string{"c=1", "c=2", "c=3"}, MaxRequests: 60, Duration: 10 * time.Second, Warmup: -1})
	if err != nil || res.Requests != 60 || res.Errors != 0 || res.Warmup != 0 {
		t.Fatalf("closed loop: %+v, %v; want 60 requests, no warmup, no errors", res, err)
	}
	if got := s2.sorted(); got != "cookie=c=1,cookie=c=2,cookie=c=3,path=/a,path=/b" {
		t.Errorf("server saw %s; want every URL and every cookie", got)
	}
}

// Only loopback targets: load must never leave the machine.
func TestRunRefusesRemoteTargets(t *testing.T) {
	res, err := Run(context.Background(), Options{URL: "http://192.0.2.1/", MaxRequests: 3, Warmup: -1, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Errors != res.Requests {
		t.Fatalf("%d of %d requests to a remote address succeeded", res.Requests-res.Errors, res.Requests)
	}
}
