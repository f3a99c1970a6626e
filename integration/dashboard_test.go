package integration

import (
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness"
)

// dashboardExprs returns every PromQL expression of a Grafana dashboard:
// panel targets (rows' nested panels included) and query variables.
func dashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr string `json:"expr"`
	}
	type panel struct {
		Title   string   `json:"title"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q has a target without an expression", p.Title)
				}
				out = append(out, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\(\s*([^,()]+)\s*,`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			_ = json.Unmarshal(v.Query, &q.Query) // older dashboards: a plain string
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable query %q is not label_values(metric, label)", q.Query)
			continue
		}
		out = append(out, m[1])
	}
	return out
}

var (
	promStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promBlocks   = regexp.MustCompile(`\{[^{}]*\}|\[[^\[\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promVars     = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	promNumbers  = regexp.MustCompile(`\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:\d*(?:ms|[smhdwy]))*\b`) // numbers, durations (1h30m)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true}
)

// promMetricNames returns the metric names an expression reads: every
// identifier left once strings, label matchers, ranges, grouping clauses,
// Grafana variables and numbers are gone, except function calls and
// keywords.
func promMetricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promVars.ReplaceAllString(s, " ")
	for prev := ""; prev != s; {
		prev, s = s, promBlocks.ReplaceAllString(s, " ")
	}
	s = promGrouping.ReplaceAllString(s, " ")
	s = promNumbers.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promKeywords[strings.ToLower(name)] {
			continue // a function, or an operator keyword
		}
		out = append(out, name)
	}
	return out
}

func TestPromMetricNames(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{`sum by (route) (rate(latch_requests_total{code="5xx",route=~"$route"}[$__rate_interval]))`, "latch_requests_total"},
		{`histogram_quantile(0.99, sum by (le, op) (rate(latch_session_store_duration_seconds_bucket[5m])))`,
			"latch_session_store_duration_seconds_bucket"},
		{`time() - max by (service) (latch_discovery_last_fresh_timestamp_seconds{service=~"${service}"})`,
			"latch_discovery_last_fresh_timestamp_seconds"},
		{`a_total / on (x) group_left (y) b_total > bool 1e3`, "a_total b_total"},
		{`sum(rate(x{l="by (z)"}[1m] offset 1h30m)) unless y`, "x y"},
	} {
		if got := strings.Join(promMetricNames(tc.expr), " "); got != tc.want {
			t.Errorf("%s: got %q; want %q", tc.expr, got, tc.want)
		}
	}
}

// exported reports whether latch's scrape has metric name: a family of
// that name, or a histogram's (summary's) _bucket, _sum or _count series.
func exported(families map[string]*dto.MetricFamily, name string) bool {
	if _, ok := families[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if f, ok := families[base]; ok {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				return true
			case dto.MetricType_SUMMARY:
				return suffix != "_bucket"
			}
		}
	}
	return false
}

// The Grafana dashboard names only metrics latch exports. latch runs with
// real Consul, Redis and backends and is driven through what makes every
// family appear: sessions and fallbacks, a refusing backend (retries, its
// breaker opening) and Redis going away (store errors).
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	path := filepath.Join(harness.RepoRoot(), "integration", "grafana", "latch.json")
	exprs := dashboardExprs(t, path)
	if len(exprs) < 20 {
		t.Fatalf("%s: only %d expressions found", path, len(exprs))
	}

	c := harness.StartConsul(t)
	rd := harness.StartRedis(t)
	good, bad := startSwitchable(t, "web-1"), startSwitchable(t, "web-2")
	c.Register(t, good.id, "web", good.addr())
	c.Register(t, bad.id, "web", bad.addr())
	cfg := harness.LatchConfig(c.HTTPAddr, rd.URL, "web")
	cfg.Routes[0].Policy = config.Set(config.List{"header_hash", "round_robin"}) // no X-User: header_hash hands on
	cfg.Routes[0].Hash.Header = config.Set("X-User")
	l := harness.StartLatch(t, cfg)
	seenAll(t, l.URL+"/", 10*time.Second, "web-1", "web-2")

	bad.srv.Close() // refuses connections: retries, then its breaker opens
	harness.WaitFor(t, 20*time.Second, "web-2's breaker to open", func() bool {
		backendOf(t, &http.Client{Timeout: 5 * time.Second}, l.URL+"/")
		for _, b := range getBackends(t, l.AdminURL).Services[0].Backends {
			if b.ID == "web-2" {
				return b.Breaker == "open"
			}
		}
		return false
	})
	client := harness.Client() // a returning session: a local cache lookup
	backendOf(t, client, l.URL+"/")
	backendOf(t, client, l.URL+"/")
	rd.Stop(t) // the store fails: errors counted, requests still answered
	scrape := func() string { return scrapeMetrics(t, l.AdminURL) }
	harness.WaitFor(t, 15*time.Second, "store errors counted with Redis down", func() bool {
		// A session's second request writes its pin (in the background):
		// that write is what fails.
		c := harness.Client()
		for range 2 {
			if _, status := backendOf(t, c, l.URL+"/"); status != 200 {
				t.Fatalf("status %d with Redis down", status)
			}
		}
		return strings.Contains(scrape(), "latch_session_store_errors_total{")
	})

	metrics := scrape()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(metrics))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	checked := map[string]bool{}
	for _, e := range exprs {
		names := promMetricNames(e)
		if len(names) == 0 {
			t.Errorf("no metric found in %q", e)
		}
		for _, n := range names {
			checked[n] = true
			if !exported(families, n) {
				t.Errorf("the dashboard reads %s (in %q), which latch does not export", n, e)
			}
		}
	}
	names := slices.Sorted(maps.Keys(checked))
	t.Logf("%d expressions, %d metric names checked: %s", len(exprs), len(names), strings.Join(names, " "))
}
