package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// wrk sends every cookie in rotation, reports what the server saw, and
// counts 5xx as errors. Skipped where Debian's wrk is not installed.
func TestRunWrk(t *testing.T) {
	if !WrkAvailable() {
		t.Skip("wrk not installed (apt-get install wrk)")
	}
	s := &seen{vals: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.add("cookie=" + r.Header.Get("Cookie"))
		if r.Header.Get("Cookie") == "c=fail" {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	cookies := []string{"c=1", "c=2", "c=3", "c=fail"}
	res, err := RunWrk(context.Background(), Options{URL: srv.URL + "/", Cookies: cookies, Concurrency: 4, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if want := "cookie=c=1,cookie=c=2,cookie=c=3,cookie=c=fail"; s.sorted() != want {
		t.Fatalf("server saw %s; want %s", s.sorted(), want)
	}
	// wrk may count a request cut off at its deadline that the server saw.
	s.mu.Lock()
	served := s.count
	s.mu.Unlock()
	if res.Requests == 0 || res.Requests > served || served-res.Requests > 4 {
		t.Fatalf("wrk reported %d requests; the server saw %d", res.Requests, served)
	}
	if lo, hi := res.Requests/4-4, res.Requests/4+4; res.Errors < lo || res.Errors > hi {
		t.Fatalf("errors %d of %d; want about a quarter (one cookie of four fails)", res.Errors, res.Requests)
	}
	if res.RPS <= 0 || res.P50 <= 0 || res.P99 < res.P50 || res.P999 < res.P99 {
		t.Fatalf("figures do not add up: %+v", res)
	}

	// No cookies: none sent. A server of its own: a request the first
	// run's deadline cut off may still arrive at the first one.
	s2 := &seen{vals: map[string]bool{}}
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s2.add("cookie=" + r.Header.Get("Cookie"))
	}))
	defer srv2.Close()
	if _, err := RunWrk(context.Background(), Options{URL: srv2.URL + "/", Concurrency: 3, Duration: time.Second}); err != nil {
		t.Fatal(err)
	}
	if s2.sorted() != "cookie=" {
		t.Fatalf("without cookies the server saw %s", s2.sorted())
	}
}

func TestRunWrkRefuses(t *testing.T) {
	for _, o := range []Options{
		{URL: "http://192.0.2.1/"},
		{URL: "http://127.0.0.1:1/", Rate: 10},
		{URL: "http://127.0.0.1:1/", URLs: []string{"http://127.0.0.1:2/"}},
		{URL: "http://127.0.0.1:1/", MaxRequests: 10},
	} {
		if _, err := RunWrk(context.Background(), o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestParseWrk(t *testing.T) {
	out := "Running 5s test @ http://127.0.0.1:1/\n  2 threads and 32 connections\n" +
		"loadgen-wrk requests=50000 duration_us=5000000 errors=3 p50_us=600 p99_us=4000 p999_us=9000\n"
	r, err := parseWrk([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := Result{Requests: 50000, Errors: 3, Elapsed: 5 * time.Second, RPS: 10000,
		P50: 600 * time.Microsecond, P99: 4 * time.Millisecond, P999: 9 * time.Millisecond}
	if r != want {
		t.Fatalf("got %+v; want %+v", r, want)
	}
	for _, bad := range []string{"", "loadgen-wrk requests=1", "loadgen-wrk requests=x duration_us=1 errors=0 p50_us=1 p99_us=1 p999_us=1"} {
		if _, err := parseWrk([]byte(bad)); err == nil || !strings.Contains(fmt.Sprint(err), "wrk") {
			t.Errorf("%q: err %v; want a wrk error", bad, err)
		}
	}
}
