package gateway

import (
	"context"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchgw/latch/gateway/affinity"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/forward"
)

// accessLog writes one line per request and counts it. The session id is
// never logged raw: a truncated SHA-256 lets an operator follow one session
// through the logs without being able to replay its cookie.
func (g *Gateway) accessLog(r *http.Request, rt *affinity.Route, s *affinity.Session, res forward.Result, start time.Time) {
	now := time.Now()
	d := now.Sub(start)
	status := res.Status
	routeName, backend := "", ""
	if rt != nil {
		routeName = rt.Name()
	}
	if res.Backend != nil {
		backend = res.Backend.ID
	}
	var ex prometheus.Labels
	if g.tracing != nil {
		ex = exemplar(r.Context())
	}
	if s != nil {
		s.Answered(res.Backend, status, d, ex)
	} else if rt != nil {
		g.metrics.Vectors().Request(routeName, backend, status, d, ex)
	}
	if !g.accessLogOn || !g.accessLogger.Enabled(r.Context(), slog.LevelInfo) {
		return
	}
	e := accessEntry{
		time:      now,
		requestID: r.Header.Get("X-Request-Id"),
		method:    r.Method,
		host:      r.Host,
		path:      r.URL.Path,
		remote:    r.RemoteAddr,
		route:     routeName,
		backend:   backend,
		status:    status,
		duration:  d,
	}
	if s != nil {
		e.session = s.Kind().String()
		e.id, e.hashed = s.ID()
	}
	if g.accessBatch != nil {
		g.accessBatch.writeAccess(&e, g.accessJSON)
		return
	}
	g.accessLogger.LogAttrs(context.Background(), slog.LevelInfo, "request", e.attrs()...)
}

// attrs is e as slog attributes, for an access log written through the
// process logger (no Deps.AccessLog), whose handler may be anything.
func (e *accessEntry) attrs() []slog.Attr {
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("request_id", e.requestID),
		slog.String("method", e.method),
		slog.String("host", e.host),
		slog.String("path", e.path),
		slog.String("remote", e.remote),
		slog.String("route", e.route),
		slog.String("backend", e.backend),
		slog.Int("status", e.status),
		slog.Float64("duration_s", e.duration.Seconds()),
	)
	if e.session != "" {
		attrs = append(attrs, slog.String("session", e.session))
		if e.hashed {
			attrs = append(attrs, slog.String("session_hash", hashID(e.id[:])))
		}
	}
	return attrs
}

// batchWriter gathers whole log records (slog hands its writer one record
// per Write) and writes them out together, every flushEvery or when
// batchMax bytes wait: the access log costs a write per batch instead of
// one per request, as NGINX's access_log buffer= does. A crash loses at
// most the last flushEvery of access lines; the process log (warnings,
// errors) is not batched.
type batchWriter struct {
	mu    sync.Mutex // guards buf; held for appends only
	buf   []byte
	spare []byte     // the other buffer: one fills while the other is written
	wmu   sync.Mutex // serialises writes to out, keeping batches in order
	out   io.Writer
}

const (
	batchMax   = 64 << 10
	flushEvery = 100 * time.Millisecond
	// rotateCheck is how often an AccessFile is checked for a rename.
	rotateCheck = time.Second
)

func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	full := len(b.buf)+len(p) > batchMax
	if full {
		b.wmu.Lock() // taken before mu is released: batches go out in order
		b.buf, b.spare = b.spare[:0], b.buf
	}
	b.buf = append(b.buf, p...)
	b.mu.Unlock()
	if full {
		b.writeSpare()
	}
	return len(p), nil
}

// flush writes what is buffered. Requests keep appending meanwhile: the
// write happens outside mu.
func (b *batchWriter) flush() {
	b.mu.Lock()
	if len(b.buf) == 0 {
		b.mu.Unlock()
		return
	}
	b.wmu.Lock()
	b.buf, b.spare = b.spare[:0], b.buf
	b.mu.Unlock()
	b.writeSpare()
}

// writeSpare writes the spare buffer; the caller holds wmu, released here.
func (b *batchWriter) writeSpare() {
	if len(b.spare) > 0 {
		_, _ = b.out.Write(b.spare)
	}
	b.wmu.Unlock()
}

// run flushes every flushEvery until ctx ends, then once more. When out
// is an AccessFile it reopens it on each value from reopen (SIGUSR1) and,
// checked every rotateCheck, when its path was renamed or removed.
func (b *batchWriter) run(ctx context.Context, reopen <-chan os.Signal, log *slog.Logger) {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	file, _ := b.out.(*AccessFile)
	var checked time.Time
	for {
		select {
		case <-ctx.Done():
			b.flush()
			return
		case <-reopen:
			b.flush()
			if file == nil {
				log.Info("SIGUSR1: no log.access_file to reopen")
				continue
			}
			b.reopen(file, log, "signal")
		case now := <-t.C:
			b.flush()
			if file != nil && now.Sub(checked) >= rotateCheck {
				checked = now
				if file.moved() {
					b.reopen(file, log, "renamed or removed")
				}
			}
		}
	}
}

// reopen reopens file between batches (holding wmu, so no batch is
// written meanwhile).
func (b *batchWriter) reopen(file *AccessFile, log *slog.Logger, why string) {
	b.wmu.Lock()
	err := file.Reopen()
	b.wmu.Unlock()
	if err != nil {
		log.Error("reopening the access log", "file", file.path, "why", why, "err", err)
		return
	}
	log.Info("access log reopened", "file", file.path, "why", why)
}

func hashID(id []byte) string {
	return string(appendSessionHash(nil, id))
}

// NewLogger builds the process logger from the config.
func NewLogger(cfg config.Log, w interface{ Write([]byte) (int, error) }) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(cfg.Level)))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// slogErrorLog adapts ReverseProxy's and http.Server's log.Logger to slog.
func slogErrorLog(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelWarn)
}
