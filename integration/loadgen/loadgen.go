// Package loadgen is latch's load generator: closed-loop HTTP clients on
// loopback, bounded in requests and time, reporting throughput and latency
// percentiles. `make bench` drives it through the real stack
// (integration.BenchmarkLoad). RunWrk drives Debian's wrk instead, the
// other supported tool.
package loadgen

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options describe one scenario.
type Options struct {
	URL string
	// URLs, when set, are used in rotation instead of URL (one per request).
	URLs        []string
	Concurrency int           // closed-loop workers (default 32)
	Duration    time.Duration // stop after this long (default 5s)
	MaxRequests int64         // and after this many requests (default 1,000,000)
	// Cookies, when set, are sent in rotation (one per request): sticky
	// clients. Empty: no cookie, every request a new session.
	Cookies []string
	// Warmup requests are sent first and not measured (default 1000;
	// negative: none).
	Warmup int
	// Rate, when set, makes the run open-loop: requests are due at a fixed
	// rate (per second) whether or not earlier ones were answered, and each
	// latency counts from when its request was due, so a stall shows in
	// the percentiles instead of slowing the load down (no coordinated
	// omission). Concurrency bounds the requests in flight.
	Rate float64
	// TLS, when set, is the client config of https URLs (HTTP/1.1 over
	// keep-alive connections; give it a ClientSessionCache and reconnects
	// resume their TLS sessions).
	TLS *tls.Config
}

// Result is what a scenario measured.
type Result struct {
	Requests int64         `json:"requests"`
	Warmup   int64         `json:"warmup_requests"` // sent before, not measured
	Errors   int64         `json:"errors"`          // transport errors and non-2xx
	Cut      int64         `json:"cut"`             // sent, then cut off by the deadline: not measured
	Elapsed  time.Duration `json:"elapsed_ns"`
	RPS      float64       `json:"rps"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
	P999     time.Duration `json:"p999_ns"`
}

// String is the result on one line: throughput, latency percentiles,
// errors.
func (r Result) String() string {
	return fmt.Sprintf("%8.0f req/s  p50 %7s  p99 %7s  p99.9 %7s  errors %d/%d",
		r.RPS, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.P999.Round(time.Microsecond), r.Errors, r.Requests)
}

// withDefaults fills in the closed-loop shape every tool shares.
func (o Options) withDefaults() Options {
	if o.Concurrency <= 0 {
		o.Concurrency = 32
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	return o
}

// Run runs one scenario. Only loopback URLs are accepted.
func Run(ctx context.Context, o Options) (Result, error) {
	o = o.withDefaults()
	if o.MaxRequests <= 0 {
		o.MaxRequests = 1_000_000
	}
	if o.Warmup == 0 {
		o.Warmup = 1000
	}
	tr := &http.Transport{
		MaxIdleConnsPerHost: o.Concurrency, MaxConnsPerHost: o.Concurrency,
		DisableCompression: true, Proxy: nil, TLSClientConfig: o.TLS,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if err := loopbackOnly(host); err != nil {
				return nil, err
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	var next atomic.Int64
	urls := o.URLs
	if len(urls) == 0 {
		urls = []string{o.URL}
	}
	do := func(ctx context.Context, start time.Time) (time.Duration, bool) {
		i := next.Add(1)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, urls[int(i)%len(urls)], nil)
		if len(o.Cookies) > 0 {
			req.Header.Set("Cookie", o.Cookies[int(i)%len(o.Cookies)])
		}
		resp, err := client.Do(req)
		if err != nil {
			return time.Since(start), false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start), resp.StatusCode/100 == 2
	}
	for range o.Warmup {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		do(ctx, time.Now())
	}

	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var count, errs, cut atomic.Int64
	lat := make([][]time.Duration, o.Concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	// due returns when request n (from 1) is due: now in a closed loop, on
	// the schedule in an open one.
	due := func(n int64) time.Time {
		if o.Rate <= 0 {
			return time.Now()
		}
		at := start.Add(time.Duration(float64(n-1) / o.Rate * float64(time.Second)))
		if d := time.Until(at); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		return at
	}
	for w := range o.Concurrency {
		wg.Go(func() {
			own := make([]time.Duration, 0, 1<<14)
			for ctx.Err() == nil {
				n := count.Add(1)
				if n > o.MaxRequests {
					break
				}
				at := due(n)
				if ctx.Err() != nil {
					break
				}
				d, ok := do(ctx, at)
				if ctx.Err() != nil {
					cut.Add(1) // cut off by the deadline: not a server error
					break
				}
				if !ok {
					errs.Add(1)
				}
				own = append(own, d)
			}
			lat[w] = own
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	res := Result{Requests: int64(len(all)), Warmup: int64(max(o.Warmup, 0)), Errors: errs.Load(), Cut: cut.Load(), Elapsed: elapsed}
	if len(all) > 0 {
		res.RPS = float64(len(all)) / elapsed.Seconds()
		res.P50 = all[len(all)*50/100]
		res.P99 = all[len(all)*99/100]
		res.P999 = all[len(all)*999/1000]
	}
	return res, nil
}
