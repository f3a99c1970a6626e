// Package accesslog owns latch's access log: the line written for each
// request (Entry, encoded exactly as slog's TextHandler or JSONHandler
// would write it, without slog's cost), the batch writer that writes those
// lines out every 100 ms (Log.Run), and the log file that logrotate may
// move away (File). It also builds the loggers the config's log section
// describes (NewLogger). It knows nothing of the gateway: the gateway
// fills an Entry from a request's result and hands it to Log.Write.
package accesslog

import (
	"context"
	"io"
	"log"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/latchgw/latch/gateway/config"
)

// Log is the access log: one line per request, through a batch writer
// when it has a writer of its own (New's out), else through the process
// logger, line by line. Its methods are safe for concurrent use; Run is
// called once, and owns the batch writer's flushing.
type Log struct {
	on     bool         // log.access
	logger *slog.Logger // decides the level; writes the line when batch is nil
	batch  *batchWriter // nil: lines go straight to logger's writer
	json   bool         // log.format json: batch gets JSON lines
}

// New builds the access log for cfg. With out nil the lines go through
// process, line by line, whatever its handler; with out set they are
// encoded here (as slog's handler for cfg.Format would write them) and
// written to out in batches by Run. An *File out is also reopened when
// renamed or removed, or on Run's reopen channel.
func New(cfg config.Log, out io.Writer, process *slog.Logger) *Log {
	l := &Log{on: cfg.Access.Get(), logger: process}
	if out != nil {
		l.batch = &batchWriter{out: out}
		l.json = cfg.Format == "json"
		l.logger = NewLogger(cfg, l.batch)
	}
	return l
}

// Enabled reports whether a request's line would be written: the access
// log is on and its logger takes info records.
func (l *Log) Enabled(ctx context.Context) bool {
	return l.on && l.logger.Enabled(ctx, slog.LevelInfo)
}

// Write writes e's line. The caller checked Enabled.
func (l *Log) Write(e *Entry) {
	if l.batch != nil {
		l.batch.writeAccess(e, l.json)
		return
	}
	l.logger.LogAttrs(context.Background(), slog.LevelInfo, "request", e.attrs()...)
}

// Run writes the batches out until ctx ends, then once more, reopening an
// *File on each value from reopen (SIGUSR1) and when its path was renamed
// or removed; log gets what it has to say about that. Without a batch
// writer it returns at once.
func (l *Log) Run(ctx context.Context, reopen <-chan os.Signal, log *slog.Logger) {
	if l.batch != nil {
		l.batch.run(ctx, reopen, log)
	}
}

// attrs is e as slog attributes, for an access log written through the
// process logger (no Deps.AccessLog), whose handler may be anything.
func (e *Entry) attrs() []slog.Attr {
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("request_id", e.RequestID),
		slog.String("method", e.Method),
		slog.String("host", e.Host),
		slog.String("path", e.Path),
		slog.String("remote", e.Remote),
		slog.String("route", e.Route),
		slog.String("backend", e.Backend),
		slog.Int("status", e.Status),
		slog.Float64("duration_s", e.Duration.Seconds()),
	)
	if e.Session != "" {
		attrs = append(attrs, slog.String("session", e.Session))
		if e.Hashed {
			attrs = append(attrs, slog.String("session_hash", HashID(e.ID[:])))
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
	// rotateCheck is how often a File is checked for a rename.
	rotateCheck = time.Second
)

// Write appends p (one whole record) to the batch, writing the batch out
// first when p would take it past batchMax.
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
// is a File it reopens it on each value from reopen (SIGUSR1) and,
// checked every rotateCheck, when its path was renamed or removed.
func (b *batchWriter) run(ctx context.Context, reopen <-chan os.Signal, log *slog.Logger) {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	file, _ := b.out.(*File)
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
func (b *batchWriter) reopen(file *File, log *slog.Logger, why string) {
	b.wmu.Lock()
	err := file.Reopen()
	b.wmu.Unlock()
	if err != nil {
		log.Error("reopening the access log", "file", file.path, "why", why, "err", err)
		return
	}
	log.Info("access log reopened", "file", file.path, "why", why)
}

// HashID is a session id's log form: the first 6 bytes of its SHA-256, in
// hex. A session id is never logged raw.
func HashID(id []byte) string {
	return string(appendSessionHash(nil, id))
}

// NewLogger builds a logger from the config's level and format (text or
// json) writing to w: the process logger, and the access log's own.
func NewLogger(cfg config.Log, w interface{ Write([]byte) (int, error) }) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(cfg.Level)))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// ErrorLog adapts http.Server's log.Logger to slog, at warning level.
func ErrorLog(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelWarn)
}
