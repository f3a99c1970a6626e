package accesslog

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/latchgw/latch/gateway/config"
)

// slogLine is what slog's handler for format writes for e: the access log
// as it was written before appendAccess, and the reference it must match.
func slogLine(t testing.TB, e *Entry, format string) []byte {
	var out bytes.Buffer
	h := NewLogger(config.Log{Level: "info", Format: format}, &out).Handler()
	rec := slog.NewRecord(e.Time, slog.LevelInfo, "request", 0)
	rec.AddAttrs(e.attrs()...)
	if err := h.Handle(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// checkSameAsSlog fails unless appendAccess writes e exactly as slog does,
// in both formats.
func checkSameAsSlog(t testing.TB, e *Entry) {
	t.Helper()
	for _, format := range []string{"text", "json"} {
		want := slogLine(t, e, format)
		got := appendAccess([]byte("prefix:"), e, format == "json")
		if !bytes.Equal(got[len("prefix:"):], want) {
			t.Fatalf("%s access line for %+v\n got %q\nwant %q", format, *e, got[len("prefix:"):], want)
		}
	}
}

// awkward are field values that slog's handlers quote or escape, or that
// look as if they should be.
var awkward = []string{
	"", " ", "=", `"`, `\`, `a\b`, "a b", "a=b", `say "hi"`, "tab\there", "nl\nx", "cr\rx",
	"\x00", "\x1f", "\x7f", "<script>&amp;</script>", "'", "héllo", "日本語", "\u00a0", "\u2028", "\u2029",
	"\u200b", "\ufeff", "\ufffd", "\xff", "a\xc3", "\xed\xa0\x80", "\U0001F600", "\u0085", "e\u0301",
	"GET", "example.com:8080", "/a/b?c=d", "[::1]:4321", "-", "null", "{}", "#x", "%41", "a,b",
	strings.Repeat("x", 70000), strings.Repeat("\"=", 5000),
}

// randomField is an awkward value, random bytes, or random runes.
func randomField(r *rand.Rand) string {
	switch r.IntN(4) {
	case 0, 1:
		return awkward[r.IntN(len(awkward))]
	case 2:
		b := make([]byte, r.IntN(24))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	var sb strings.Builder
	for range r.IntN(12) {
		sb.WriteRune(rune(r.IntN(0x30000)))
	}
	return sb.String()
}

var kinds = []string{"", "none", "new", "sticky", "restored", "repinned", "detoured"}

var durations = []time.Duration{
	0, 1, 499, 500, 999, time.Microsecond, 1001, 12345, time.Millisecond, 1500 * time.Millisecond,
	time.Hour, -1, -time.Second, math.MaxInt64, math.MinInt64,
}

func randomEntry(r *rand.Rand) *Entry {
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("", 5*3600+1800), time.FixedZone("X", -8*3600)}
	e := &Entry{
		Time:      time.Unix(r.Int64N(4e9), r.Int64N(1e9)).In(zones[r.IntN(len(zones))]),
		RequestID: randomField(r), Method: randomField(r), Host: randomField(r), Path: randomField(r),
		Remote: randomField(r), Route: randomField(r), Backend: randomField(r),
		Status:  []int{0, 200, 404, 502, -1, math.MaxInt, math.MinInt}[r.IntN(7)],
		Session: kinds[r.IntN(len(kinds))],
	}
	if r.IntN(2) == 0 {
		e.Duration = durations[r.IntN(len(durations))]
	} else {
		e.Duration = time.Duration(r.Int64N(int64(10 * time.Second)))
	}
	if e.Session != "" && r.IntN(3) > 0 {
		e.Hashed = true
		for i := range e.ID {
			e.ID[i] = byte(r.IntN(256))
		}
	}
	return e
}

// TestAccessLineSameAsSlog: the access line encoder writes what slog's
// TextHandler and JSONHandler write for the same values, byte for byte,
// over awkward and random values.
func TestAccessLineSameAsSlog(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 1))
	for range 20000 {
		checkSameAsSlog(t, randomEntry(r))
	}
	// Each awkward value in each field.
	for _, v := range awkward {
		e := Entry{Time: time.Date(2026, 12, 1, 12, 0, 0, 999999999, time.UTC), Session: "sticky", Hashed: true}
		for _, f := range []*string{&e.RequestID, &e.Method, &e.Host, &e.Path, &e.Remote, &e.Route, &e.Backend} {
			*f = v
			checkSameAsSlog(t, &e)
			*f = ""
		}
	}
}

// TestAccessLineAllocs: an access line costs no allocation once the
// scratch buffers are warm.
func TestAccessLineAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts mean nothing under -race")
	}
	b := &batchWriter{out: io.Discard}
	e := benchEntry()
	for _, json := range []bool{false, true} {
		if n := testing.AllocsPerRun(1000, func() { b.writeAccess(e, json) }); n != 0 {
			t.Errorf("json=%v: an access line allocates %v times; want 0", json, n)
		}
	}
}

// FuzzAccessLine: whatever the field values, the encoder agrees with slog.
func FuzzAccessLine(f *testing.F) {
	f.Add("3f2a-1", "GET", "example.com", "/", "127.0.0.1:5000", "web", "a", 200, int64(1500000), int64(1764590400123456789), "sticky", true)
	f.Add("", "", "", "", "", "", "", 0, int64(0), int64(0), "", false)
	f.Add(`"=\`, "a b", "\xff\xfe", "/\u2028<>&", "\x00\x7f", "日本", "\ufffd", -1, int64(-1), int64(-62135596800000000), "new", true)
	f.Add("x", "x", "x", "x", "x", "x", "x", 502, int64(math.MaxInt64), int64(math.MaxInt64), "repinned", false)
	f.Fuzz(func(t *testing.T, requestID, method, host, path, remote, route, backend string, status int, duration, unixNano int64, kind string, hashed bool) {
		e := &Entry{
			Time:      time.Unix(0, unixNano).UTC(),
			RequestID: requestID, Method: method, Host: host, Path: path, Remote: remote, Route: route, Backend: backend,
			Status: status, Duration: time.Duration(duration), Session: kind, Hashed: hashed && kind != "",
		}
		copy(e.ID[:], path)
		checkSameAsSlog(t, e)
	})
}

func benchEntry() *Entry {
	e := &Entry{
		Time: time.Now(), RequestID: "9c1f0e2a4b6d-1234", Method: "GET", Host: "app.example.com",
		Path: "/api/items/42", Remote: "10.0.0.7:51234", Route: "app", Backend: "web-3",
		Status: 200, Duration: 412 * time.Microsecond, Session: "sticky", Hashed: true,
	}
	copy(e.ID[:], "0123456789abcdef")
	return e
}

// BenchmarkAccessLog is one access line into the batch (written out to
// io.Discard when full): through slog's handler as before ("slog") and
// through appendAccess, for both formats; "hash" is the session hash alone.
//
//	go test -run '^$' -bench BenchmarkAccessLog -benchmem ./gateway/accesslog/
func BenchmarkAccessLog(b *testing.B) {
	e := benchEntry()
	for _, format := range []string{"text", "json"} {
		b.Run("slog/"+format, func(b *testing.B) {
			l := NewLogger(config.Log{Level: "info", Format: format}, &batchWriter{out: io.Discard})
			b.ReportAllocs()
			for b.Loop() {
				l.LogAttrs(context.Background(), slog.LevelInfo, "request", e.attrs()...)
			}
		})
		b.Run("encoder/"+format, func(b *testing.B) {
			w := &batchWriter{out: io.Discard}
			b.ReportAllocs()
			for b.Loop() {
				e.Time = time.Now() // as slog stamps its record
				w.writeAccess(e, format == "json")
			}
		})
	}
	b.Run("hash", func(b *testing.B) {
		buf := make([]byte, 0, 16)
		b.ReportAllocs()
		for b.Loop() {
			buf = appendSessionHash(buf[:0], e.ID[:])
		}
	})
}
