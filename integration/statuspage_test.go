package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/latchgw/latch/gateway/statuspage"
	"github.com/latchgw/latch/integration/harness"
)

const pageToken = "page-test-token-5f2a"

// browser is a headless Chromium driven by chromedp, recording console
// errors, uncaught exceptions and browser-logged errors (failed loads,
// CSP violations).
type browser struct {
	t   *testing.T
	ctx context.Context

	mu   sync.Mutex
	errs []string
}

func startBrowser(t *testing.T) *browser {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: `make tools` installs Debian's chromium")
	}
	profile := t.TempDir() // before the browser's cleanup: removed after it exits
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900))
	b := &browser{t: t}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	// WithListener sees the events from the target's start on.
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(b.record))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b.ctx = ctx
	// The first Run starts the browser; it must not have a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return b
}

// record keeps console errors, uncaught exceptions and errors the browser
// logs (failed loads, CSP violations). It runs on chromedp's reader.
func (b *browser) record(ev any) {
	var msg string
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			msg = "console." + string(e.Type) + ": " + strings.Join(parts, " ")
		}
	case *runtime.EventExceptionThrown:
		d := e.ExceptionDetails
		msg = fmt.Sprintf("exception: %s at %s:%d", d.Text, d.URL, d.LineNumber+1)
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
	case *cdplog.EventEntryAdded:
		if e.Entry.Level == cdplog.EntryLevelError {
			msg = "log: " + e.Entry.Text + " " + e.Entry.URL
		}
	}
	if msg != "" {
		b.mu.Lock()
		b.errs = append(b.errs, msg)
		b.mu.Unlock()
	}
}

// run runs actions with a deadline, failing the test on error.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// eval returns the value of a JavaScript expression as a string.
func (b *browser) eval(js string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](`String(`+js+`)`))
	if err != nil {
		b.t.Fatalf("browser: evaluating %s: %v", js, err)
	}
	return out
}

func (b *browser) errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

// rowState is the state the page shows for backend id ("" when absent).
func rowState(id string) string {
	return fmt.Sprintf(`(document.querySelector('tr[data-backend=%q]') || {dataset: {}}).dataset.state || ''`, id)
}

// pageStatus reads /admin/status with the token.
func pageStatus(t *testing.T, adminURL string) statuspage.Status {
	t.Helper()
	req, _ := http.NewRequest("GET", adminURL+"/admin/status", nil)
	req.Header.Set("Authorization", "Bearer "+pageToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st statuspage.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/admin/status: %d %v", resp.StatusCode, err)
	}
	return st
}

func drained(t *testing.T, adminURL, id string) bool {
	t.Helper()
	for _, s := range pageStatus(t, adminURL).Services {
		for _, b := range s.Backends {
			if b.ID == id {
				return b.Drained
			}
		}
	}
	t.Fatalf("backend %s not in /admin/status", id)
	return false
}

// The status page in a real browser against a real latch, Consul, Redis
// and 3 backends: it loads without console errors, shows the backends,
// follows a kill without a reload, drains with the token, refuses a wrong
// token, and leaves screenshots in integration/results/.
func TestStatusPageInBrowser(t *testing.T) {
	start := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	c := harness.StartConsul(t)
	rd := harness.StartRedis(t)
	var backends []*harness.Backend
	for _, id := range []string{"web-1", "web-2", "web-3"} {
		backends = append(backends, harness.StartBackend(t, c, id, "web", time.Second))
	}
	phase("consul, redis, 3 backends up")
	cfg := harness.LatchConfig(c.HTTPAddr, rd.URL, "web")
	cfg.Admin.Token = pageToken
	l := harness.StartLatch(t, cfg)
	harness.WaitFor(t, 20*time.Second, "3 passing backends", func() bool {
		n := 0
		for _, b := range pageStatus(t, l.AdminURL).Services[0].Backends {
			if b.State == "passing" {
				n++
			}
		}
		return n == 3
	})
	// Some sessions, so counts, shares and rates have something to show.
	var client *http.Client
	for range 24 {
		client = harness.Client()
		for range 3 {
			if _, status := backendOf(t, client, l.URL+"/"); status != 200 {
				t.Fatalf("status %d", status)
			}
		}
	}

	phase("latch up, sessions made")
	b := startBrowser(t)
	phase("chromium up")
	b.run("opening the page", chromedp.Navigate(l.AdminURL+"/"), chromedp.WaitVisible("#token-form"),
		chromedp.SendKeys("#token-input", pageToken), chromedp.Click(`#token-form button[type="submit"]`))
	harness.WaitFor(t, 10*time.Second, "the page to show 3 backends", func() bool {
		return b.eval(`document.querySelectorAll('tr[data-backend]').length`) == "3"
	})
	for _, id := range []string{"web-1", "web-2", "web-3"} {
		if s := b.eval(rowState(id)); s != "passing" {
			t.Errorf("row %s shows %q; want passing", id, s)
		}
	}
	if errs := b.errors(); len(errs) > 0 {
		t.Fatalf("console errors while loading the page:\n%s", strings.Join(errs, "\n"))
	}
	if bar := b.eval(`document.querySelectorAll('tr[data-backend] .bar .fill').length`); bar == "0" {
		t.Error("no session share bars drawn")
	}

	phase("page shows the 3 backends")
	// Kill web-3: its row turns critical within 5s, without a reload.
	b.eval(`window.latchTestMark = 'same page'`)
	backends[2].Kill()
	killed := time.Now()
	harness.WaitFor(t, 5*time.Second, "web-3's row to turn critical", func() bool {
		return b.eval(rowState("web-3")) == "critical"
	})
	t.Logf("web-3 killed: its row turned critical after %v", time.Since(killed).Round(10*time.Millisecond))
	if m := b.eval(`window.latchTestMark`); m != "same page" {
		t.Fatalf("the page reloaded (marker %q)", m)
	}

	// Drain web-2 from the page: confirmed, sent with the token.
	b.run("draining web-2", chromedp.Click(`tr[data-backend="web-2"] button[data-action="drain"]`),
		chromedp.WaitVisible("#confirm-ok"), chromedp.Click("#confirm-ok"))
	harness.WaitFor(t, 5*time.Second, "web-2's row to show draining", func() bool {
		return b.eval(rowState("web-2")) == "draining"
	})
	if r := b.eval(`document.querySelector('#result').textContent`); !strings.Contains(r, "web-2 drained") {
		t.Errorf("drain result %q", r)
	}
	if !drained(t, l.AdminURL, "web-2") {
		t.Fatal("the page says draining but latch has not drained web-2")
	}
	// 30 new sessions avoid it (and the dead web-3); each returns once, so
	// it is pinned and counted (a session that never returns costs nothing).
	for i := range 30 {
		c := harness.Client()
		for range 2 {
			if got, status := backendOf(t, c, l.URL+"/"); got == "web-2" || status != 200 {
				t.Fatalf("new session %d: %s answered %d; want web-2 avoided", i, got, status)
			}
		}
	}
	if errs := b.errors(); len(errs) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(errs, "\n"))
	}
	// Screenshots once the page shows those 30 new sessions on web-1 (the
	// counts are written in the background) and has drawn its charts.
	harness.WaitFor(t, 10*time.Second, "the page to count web-1's new sessions", func() bool {
		n := b.eval(`parseInt(document.querySelector('tr[data-backend="web-1"] td[data-col="sessions"]').textContent)`)
		var got int
		_, _ = fmt.Sscan(n, &got)
		return got >= 30
	})
	if n := b.eval(`document.querySelectorAll('.chart polyline').length`); n != "6" {
		t.Errorf("%s chart lines drawn; want 6 (2 charts, 3 backends)", n)
	}
	// Each chart has a y axis: 0, half and a round top at or above its
	// peak, each point of its lines within it.
	axes := b.eval(`JSON.stringify([...document.querySelectorAll('.chart')].map((c) => ({
		ticks: [...c.querySelectorAll('.yaxis .tick')].map((e) => [Number(e.dataset.value), e.textContent]),
		peak: Math.max(0, ...[...c.querySelectorAll('polyline')].flatMap((l) => l.getAttribute('points').split(' ').map((p) => 86 - Number(p.split(',')[1])))),
	})))`)
	var charts []struct {
		Ticks [][2]any
		Peak  float64 // the highest point drawn, in the SVG's units above the x axis (82 = the top tick)
	}
	if err := json.Unmarshal([]byte(axes), &charts); err != nil || len(charts) != 2 {
		t.Fatalf("charts' y axes: %v: %s", err, axes)
	}
	for i, c := range charts {
		if len(c.Ticks) != 3 || c.Ticks[2][0].(float64) != 0 || c.Ticks[0][0].(float64) != 2*c.Ticks[1][0].(float64) ||
			!strings.HasSuffix(c.Ticks[0][1].(string), "/s") {
			t.Errorf("chart %d: y axis ticks %v; want top, half, 0, in /s", i, c.Ticks)
		}
		if c.Peak > 82.01 {
			t.Errorf("chart %d: a line reaches %.1f units up, above the axis's top (82)", i, c.Peak)
		}
	}
	t.Logf("y axes: %s", axes)
	screenshots(t, b)

	// Look up the last client's session by its cookie and unpin it.
	var cookie string
	for _, ck := range client.Jar.Cookies(mustURL(l.URL)) {
		if ck.Name == "latch" {
			cookie = ck.Value
		}
	}
	if cookie == "" {
		t.Fatal("the client has no latch cookie")
	}
	b.run("looking up a session", chromedp.SendKeys("#session-input", cookie),
		chromedp.Click(`#session-form button[type="submit"]`), chromedp.WaitVisible("#session-result button"))
	if r := b.eval(`document.querySelector('#session-result').textContent`); !strings.Contains(r, "web → web-") {
		t.Fatalf("session lookup shows %q; want its pin", r)
	}
	b.run("unpinning it", chromedp.Click("#session-result button"), chromedp.WaitVisible("#confirm-ok"),
		chromedp.Click("#confirm-ok"))
	harness.WaitFor(t, 5*time.Second, "the unpin's result", func() bool {
		return strings.Contains(b.eval(`document.querySelector('#result').textContent`), "unpinned")
	})
	req, _ := http.NewRequest("GET", l.AdminURL+"/admin/sessions/"+cookie+"?source=store", nil)
	req.Header.Set("Authorization", "Bearer "+pageToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("after the unpin, the store lookup answered %s; want 404 (not pinned)", resp.Status)
	}
	if errs := b.errors(); len(errs) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(errs, "\n"))
	}

	// A wrong token: an error shows and nothing changes.
	b.run("entering a wrong token", chromedp.Click("#token-change"), chromedp.WaitVisible("#token-input"),
		chromedp.SendKeys("#token-input", "wrong-token"), chromedp.Click(`#token-form button[type="submit"]`))
	harness.WaitFor(t, 5*time.Second, "the page to report the rejected token", func() bool {
		return strings.Contains(b.eval(`document.querySelector('#banner').textContent`), "rejected")
	})
	b.run("draining web-1 with the wrong token", chromedp.Click(`tr[data-backend="web-1"] button[data-action="drain"]`),
		chromedp.WaitVisible("#confirm-ok"), chromedp.Click("#confirm-ok"))
	harness.WaitFor(t, 5*time.Second, "the drain's error", func() bool {
		return b.eval(`document.querySelector('#result').dataset.kind`) == "error"
	})
	if r := b.eval(`document.querySelector('#result').textContent`); !strings.Contains(r, "401") {
		t.Errorf("wrong-token drain result %q; want the 401 named", r)
	}
	if drained(t, l.AdminURL, "web-1") || !drained(t, l.AdminURL, "web-2") {
		t.Fatal("a request with the wrong token changed a drain")
	}
}

// screenshots saves the page at desktop and phone sizes in
// integration/results/ (git-ignored).
func screenshots(t *testing.T, b *browser) {
	t.Helper()
	dir := filepath.Join(harness.RepoRoot(), "integration", "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, shot := range []struct {
		name          string
		width, height int64
	}{{"statuspage.png", 1280, 900}, {"statuspage-phone.png", 390, 844}} {
		b.run("resizing for "+shot.name, chromedp.EmulateViewport(shot.width, shot.height))
		ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
		cancel()
		if err != nil {
			t.Fatalf("screenshot %s: %v", shot.name, err)
		}
		path := filepath.Join(dir, shot.name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}
	b.run("restoring the viewport", chromedp.EmulateViewport(1280, 900))
}
