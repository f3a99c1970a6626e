// Package gateway wires latch: the listeners, chi and its middleware,
// and Run, which owns every goroutine. The concerns with rules of their
// own live in packages under it: gateway/admission (what latch admits
// before routing: connection caps, backend budgets, the screen),
// gateway/affinity (routes, backends, sessions' decisions),
// gateway/forward (the forwarding pipeline), gateway/h1 (the HTTP/1
// server), gateway/metrics (the Prometheus series), gateway/admin,
// gateway/tlsserve, gateway/accesslog, gateway/config, gateway/tracing.
//
// A sticky request's walk (cookie present, its backend alive) crosses
// each package once on the way in and once on the way out, and nothing
// calls up into gateway:
//
//  1. gateway/h1 (or net/http) reads the request and calls the handler;
//  2. gateway decides whether latch forwards it at all: chi's middleware
//     (request id, gateway/admission's screen, recover), then ServeHTTP
//     (serve.go) finds its route in the table of the moment and starts
//     its affinity.Session on the route's backends (Route.Begin);
//  3. gateway/affinity decides where the session goes, in Resolve: the
//     cookie (session.Codec), the pin from the local cache or the store
//     (session.Affinity.Resolve, the one store call before forwarding),
//     the decision (session.Decide: keep, restore from the cookie's
//     signed hint, re-pin, or new), the backend looked up once, as a
//     *policy.Backend;
//  4. gateway/forward decides how the request gets there, in Serve with
//     the Session as its Picker: Pick hands out the pinned backend (never
//     blocking, never calling the store), then come the backend's breaker
//     ticket (policy), the outbound head, a pooled connection, the
//     attempt's outcome, a retry only where RFC 9110 allows it; Pick's
//     done (affinity's) commits once the backend answered, before the
//     response head goes out: a new or restored pin written (a kept
//     one's TTL was slid in the background at Resolve), the cookie set
//     when it must be reissued;
//  5. gateway counts and logs it: metrics (gateway/metrics) and the
//     access line (access.go, written by gateway/accesslog); h1 writes
//     the rest of the response.
//
// A session whose backend is unusable, or fails mid-loop, is re-pinned
// between two passes of forward's loop (affinity.Session.Settle: the
// store's compare-and-swap), never inside Pick; see gateway/affinity.
//
// Beside the request path: gateway/admin serves the admin API over
// adminstate.go's view of the gateway; gateway/tlsserve owns TLS on the
// public listener; gateway/accesslog writes the access log.
package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/latchgw/latch/discovery"
	"github.com/latchgw/latch/gateway/accesslog"
	"github.com/latchgw/latch/gateway/acme"
	"github.com/latchgw/latch/gateway/admin"
	"github.com/latchgw/latch/gateway/admission"
	"github.com/latchgw/latch/gateway/affinity"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/gateway/forward"
	"github.com/latchgw/latch/gateway/h1"
	"github.com/latchgw/latch/gateway/metrics"
	"github.com/latchgw/latch/gateway/statuspage"
	"github.com/latchgw/latch/gateway/tlsserve"
	"github.com/latchgw/latch/gateway/tracing"
	"github.com/latchgw/latch/session"
)

// Deps are the parts of a Gateway that talk to the world, built by the
// caller (cmd/latch, or a test).
type Deps struct {
	Logger *slog.Logger
	// Source watches backends (discovery.Consul, or discovery.Static).
	Source discovery.Source
	// Catalog, when set, turns Consul services with latch.* tags into routes.
	Catalog *discovery.Catalog
	// Affinity is the session layer (session.NewAffinity over Redis or
	// memory, with the cookie's Codec).
	Affinity *session.Affinity
	// Metrics, when set, is the registry of latch's series (share it with
	// the session layer's observer); nil makes a new one.
	Metrics *metrics.Series
	// AccessLog, when set, receives the access log in batches (see
	// accesslog.New); nil writes access lines through Logger, one by one.
	// An *accesslog.File is also reopened when renamed or removed.
	AccessLog io.Writer
	// ReopenAccessLog, when set, reopens an *accesslog.File AccessLog on each
	// value (cmd/latch relays SIGUSR1); Run's log writer reads it.
	ReopenAccessLog <-chan os.Signal
	// GetCertificate, when set, is asked first for the public listener's
	// certificate (ACME); returning nil, nil falls back to tls.certificates.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// NextProtos are ALPN protocols offered after h2 and http/1.1 (ACME's
	// acme-tls/1; GetCertificate answers those handshakes).
	NextProtos []string
	// Challenge, when set, serves /.well-known/acme-challenge/ on the
	// redirect listener (tls.redirect_listen); nil answers 404 there.
	Challenge http.Handler
	// Tracing, when set, traces each request (a server span, a span per
	// attempt and per session store call); nil: off. Its owner shuts it
	// down after Run (Assemble's close).
	Tracing *tracing.Tracing
}

// Gateway is a running latch. Build it with New, run it with Run.
type Gateway struct {
	cfg       *config.Compiled // the config applied last (guarded by mu once running)
	c         config.Config    // the config at start: settings a reload cannot change
	trusted   []netip.Prefix   // cfg's trusted proxies
	log       *slog.Logger
	source    discovery.Source
	catalog   *discovery.Catalog
	affinity  *session.Affinity
	metrics   *metrics.Series
	fwd       *forward.Forwarder
	tracing   *tracing.Tracing // nil: off
	access    *accesslog.Log
	reopenLog <-chan os.Signal
	sampler   *statuspage.Sampler
	admin     *admin.API
	conns     *admission.Caps // nil: no connection cap

	// routes are the routes, their services and sessions' decisions
	// (gateway/affinity).
	routes *affinity.Routes

	reloadMu sync.Mutex                       // one reload at a time; guards load
	load     func() (*config.Compiled, error) // SetConfigLoader's

	mu sync.Mutex // guards the fields below (state path only)
	// pendingRestart: what the last reload changed that only a restart
	// applies (reload.go).
	pendingRestart []string

	catalogSeen atomic.Bool // the catalog has answered once
	wasReady    atomic.Bool // Ready has said yes once: it stays ready

	reqPrefix string
	reqSeq    atomic.Uint64

	// TLS on the public listener (gateway/tlsserve); certs is nil
	// without tls.certificates, acme without tls.acme (Assemble builds it
	// and plugs it in through Deps' GetCertificate, NextProtos and
	// Challenge; RunOn runs it).
	certs          *tlsserve.Certs
	acme           *acme.Manager
	getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	nextProtos     []string
	challenge      http.Handler
}

// New builds a gateway from a compiled config (config.Load or
// Config.Compile).
func New(cfg *config.Compiled, deps Deps) (*Gateway, error) {
	if cfg == nil {
		return nil, errors.New("gateway: a compiled config is required")
	}
	if deps.Source == nil || deps.Affinity == nil || deps.Affinity.Codec() == nil {
		return nil, errors.New("gateway: Source and Affinity (with its Codec) are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	c := cfg.Config()
	g := &Gateway{
		cfg:       cfg,
		c:         c,
		trusted:   cfg.Trusted(),
		log:       deps.Logger,
		source:    deps.Source,
		catalog:   deps.Catalog,
		affinity:  deps.Affinity,
		metrics:   deps.Metrics,
		reopenLog: deps.ReopenAccessLog,
		access:    accesslog.New(c.Log, deps.AccessLog, deps.Logger),
	}
	if g.metrics == nil {
		g.metrics = metrics.New()
	}
	g.conns = admission.NewCaps(c.Server.MaxConnections.Get(), c.Server.MaxConnectionsPerIP, g.metrics)
	var p [6]byte
	_, _ = rand.Read(p[:])
	g.reqPrefix = hex.EncodeToString(p[:]) + "-"
	if len(c.TLS.Certificates) > 0 {
		var err error
		if g.certs, err = tlsserve.NewCerts(c.TLS.Certificates, g.log, g.metrics.Registry()); err != nil {
			return nil, err
		}
	}
	g.getCertificate, g.nextProtos, g.challenge = deps.GetCertificate, deps.NextProtos, deps.Challenge
	g.fwd = forward.New(c.Transport, g.trusted, g.log, g.metrics)
	if g.tracing = deps.Tracing; g.tracing != nil {
		g.fwd.SetTracer(g.tracing.Tracer())
	}
	if c.Server.ReadTimeout == 0 { // else the read timeout bounds the body as a whole
		g.fwd.SetBodyTimeout(c.Server.BodyTimeout.Get())
	}
	env := affinity.Env{Log: g.log, Source: g.source, Sessions: g.affinity, Metrics: g.metrics, Trusted: g.trusted,
		Transport: g.fwd.TransportFor, Scheme: g.fwd.Scheme, RetireTLS: g.fwd.RetireTLSPools,
		FirstCheckWait: c.Discovery.FirstCheckWait.Get()}
	if g.tracing != nil {
		env.Tracer = g.tracing.Tracer()
	}
	g.routes = affinity.NewRoutes(cfg, env)
	if err := g.metrics.Registry().Register(g.routes.Collector()); err != nil {
		return nil, fmt.Errorf("gateway: Metrics already serve another gateway: %w", err)
	}
	g.sampler = admin.NewSampler(g.metrics.Registry(), adminState{g}, g.log)
	storeKind := "memory"
	if c.Redis.URL != "" {
		storeKind = "redis"
	}
	g.admin = admin.New(admin.Options{State: adminState{g}, Affinity: g.affinity, Metrics: g.metrics.Registry(), OpenMetrics: g.tracing != nil,
		Sampler: g.sampler, Config: c.Admin, StoreKind: storeKind, BackendState: affinity.BackendState, Logger: g.log})
	return g, nil
}

// Handler is the public handler: chi with its middleware around the proxy.
// The proxy is chi's not-found handler: every path is the proxy's to route
// (by host and prefix, tables that change at run time), and a catch-all
// "/*" pattern would make chi record a path value on every request. The
// one pattern registered is what makes chi build its middleware chain.
func (g *Gateway) Handler() http.Handler {
	r := chi.NewRouter()
	screen := admission.Screen(admission.ScreenOptions{Lenient: g.c.Server.Implementation == "net/http",
		AllowTrace: g.c.Server.AllowTrace, MaxFields: g.c.Server.MaxHeaderFields.Get(), Caps: g.conns, Observer: g.metrics,
		Logged: func(req *http.Request, status int) {
			g.accessLog(req, nil, nil, forward.Result{Status: status}, time.Now())
		}})
	r.Use(g.requestID, screen, middleware.Recoverer)
	if g.c.TLS.HSTS.MaxAge > 0 {
		r.Use(tlsserve.HSTS(g.c.TLS.HSTS))
	}
	r.Handle("/", g)
	r.NotFound(g.ServeHTTP)
	r.MethodNotAllowed(g.ServeHTTP)
	return r
}

// Listeners are the sockets Run serves: Public is required, Admin and
// Metrics (metrics.listen: /metrics alone, no token) may be nil, and so may
// Redirect (tls.redirect_listen: plain HTTP redirected to Public's HTTPS,
// and ACME's HTTP-01 challenges). Public speaks TLS when tls.certificates
// or tls.acme are set: pass a TCP listener.
type Listeners struct {
	Public, Admin, Metrics, Redirect net.Listener
}

// Run serves the public and admin listeners (admin may be nil) until ctx
// ends: RunOn with no metrics listener.
func (g *Gateway) Run(ctx context.Context, public, admin net.Listener) error {
	return g.RunOn(ctx, Listeners{Public: public, Admin: admin})
}

// RunOn serves ls until ctx ends. It owns every goroutine latch runs, started here in this order and
// stopped in the reverse one, each awaited before Run returns:
//
//  1. the access log writer (last to stop: it writes what the requests
//     finishing during shutdown log), which also reopens log.access_file
//     on SIGUSR1 (Deps.ReopenAccessLog) or when it was rotated away;
//  2. the session layer's background work and the background components:
//     each service's discovery watch and active checks, the catalog watch
//     that turns Consul tags into routes;
//  3. the servers, which at shutdown stop accepting and let in-flight
//     requests finish within Server.ShutdownTimeout.
func (g *Gateway) RunOn(ctx context.Context, ls Listeners) error {
	// Each stage gets its own context, cancelled when the stage after it
	// has stopped, not when ctx ends; and its own wait.
	var logWriter, owner sync.WaitGroup
	logCtx, stopLog := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLog()
	logWriter.Go(func() { g.access.Run(logCtx, g.reopenLog, g.log) })
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	owner.Go(func() {
		if err := g.affinity.Run(bg); err != nil && !errors.Is(err, context.Canceled) {
			g.log.Error("session layer stopped", "err", err)
		}
	})
	owner.Go(func() { g.sampler.Run(bg) })
	if g.certs != nil {
		owner.Go(func() { g.certs.Run(bg, g.c.TLS.PollInterval.Get()) })
	}
	if g.acme != nil {
		var plain net.Addr
		if ls.Redirect != nil {
			plain = ls.Redirect.Addr()
		}
		acmeLs := acme.Listeners{HTTP: plain, TLS: ls.Public.Addr()}
		owner.Go(func() {
			if err := g.acme.Run(bg, acmeLs); err != nil {
				g.log.Error("acme stopped: no certificates are obtained or renewed", "err", err)
			}
		})
	}
	g.routes.Start(bg)
	if g.catalog != nil && g.c.Consul.RoutesFromTags.Get() {
		owner.Go(func() {
			err := g.catalog.Watch(bg, func(services map[string][]string) {
				g.routes.ApplyTags(bg, services)
				g.catalogSeen.Store(true)
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				g.log.Error("catalog watch stopped", "err", err)
			}
		})
	}

	runErr := g.serve(ctx, ls)

	stopBG()
	owner.Wait()
	g.routes.Stop()
	g.fwd.CloseIdleConnections()
	g.log.Info("stopped")
	stopLog()
	logWriter.Wait()
	return runErr
}

// serve runs the servers until ctx ends (or one fails), then shuts them
// down gracefully.
func (g *Gateway) serve(ctx context.Context, ls Listeners) error {
	sc := g.c.Server
	base := func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	var connContext func(context.Context, net.Conn) context.Context
	var connState func(net.Conn, http.ConnState)
	if g.conns != nil {
		connContext, connState = g.conns.ConnContext, g.conns.ConnState
	}
	connContext = admission.WithBackendBudget(connContext, sc.MaxBackendConnectionsPerConnection.Get())
	h1s := &h1.Server{Handler: g.Handler(), ReadHeaderTimeout: sc.ReadHeaderTimeout.Get(), ReadTimeout: sc.ReadTimeout,
		WriteTimeout: sc.WriteTimeout, IdleTimeout: sc.IdleTimeout.Get(), MaxHeaderBytes: sc.MaxHeaderBytes.Get(),
		MaxHeaderFields: sc.MaxHeaderFields.Get(), MaxHeadMemory: sc.MaxHeaderMemory.Get(), BaseContext: base, Log: g.log, ConnContext: connContext, ConnState: connState,
		Rejected: admission.HeadRejected(g.metrics)}
	std := &http.Server{
		Handler:           g.Handler(),
		ReadHeaderTimeout: sc.ReadHeaderTimeout.Get(),
		ReadTimeout:       sc.ReadTimeout,
		WriteTimeout:      sc.WriteTimeout,
		IdleTimeout:       sc.IdleTimeout.Get(),
		MaxHeaderBytes:    sc.MaxHeaderBytes.Get(),
		// Issue 23: 250 streams (Go's default) each waiting for a body held
		// a backend connection apiece.
		HTTP2:       &http.HTTP2Config{MaxConcurrentStreams: sc.MaxConcurrentStreams.Get()},
		ErrorLog:    accesslog.ErrorLog(g.log),
		BaseContext: base,
		ConnContext: connContext,
		ConnState:   connState,
	}
	var srv server = h1s
	if sc.Implementation == "net/http" {
		srv = std
		if g.c.TLS.Enabled() {
			std.TLSConfig = g.tlsConfig()
			srv = tlsserve.HTTP{Server: std}
		}
	} else if g.c.TLS.Enabled() {
		std.TLSConfig = g.tlsConfig() // HTTP/2 connections only
		split := &tlsserve.SplitServer{Config: g.tlsConfig(), H1: h1s, H2: std, Timeout: tlsserve.HandshakeTimeout(sc.ReadHeaderTimeout.Get()),
			Log: g.log.Warn}
		if g.conns != nil {
			split.Caps = g.conns
		}
		srv = split
	}
	if sc.H2C { // validated: not with TLS
		srv = g.withH2C(srv, h1s, std)
	}
	type served struct {
		name string
		s    server
		l    net.Listener
	}
	servers := []served{{"latch listening", srv, ls.Public}}
	if ls.Redirect != nil {
		servers = append(servers, served{"redirecting to HTTPS", &http.Server{
			Handler:           tlsserve.RedirectHandler(tlsserve.ListenerPort(ls.Public), g.challenge),
			ReadHeaderTimeout: sc.ReadHeaderTimeout.Get(), IdleTimeout: sc.IdleTimeout.Get(),
			MaxHeaderBytes: sc.MaxHeaderBytes.Get(), ErrorLog: accesslog.ErrorLog(g.log),
		}, ls.Redirect})
	}
	if ls.Admin != nil {
		servers = append(servers, served{"admin listening", &http.Server{
			Handler: g.AdminHandler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: sc.IdleTimeout.Get(),
			ErrorLog: accesslog.ErrorLog(g.log),
		}, ls.Admin})
	}
	if ls.Metrics != nil {
		servers = append(servers, served{"metrics listening", &http.Server{
			Handler: g.MetricsHandler(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: sc.IdleTimeout.Get(),
			ErrorLog: accesslog.ErrorLog(g.log),
		}, ls.Metrics})
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(servers))
	for _, sv := range servers {
		wg.Go(func() {
			if rl, ok := sv.l.(*reusePortListener); ok && !g.awaitReady(ctx) {
				_ = rl.Close() // stopped before it served
				return
			}
			if err := sv.s.Serve(sv.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
		g.log.Info(sv.name, "addr", sv.l.Addr().String())
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		runErr = fmt.Errorf("serving: %w", runErr)
	}
	g.log.Info("shutting down", "timeout", sc.ShutdownTimeout.Get().String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sc.ShutdownTimeout.Get())
	defer cancel()
	if l, ok := ls.Public.(*reusePortListener); ok {
		// Another latch shares the port: hand it the new connections
		// before closing, rather than resetting those queued here.
		if err := l.drain(sctx); err != nil {
			g.log.Warn("draining the shared listener", "err", err)
		} else {
			g.log.Info("shared listener drained: new connections go to the other listeners of the port")
		}
	}
	for _, sv := range servers {
		if err := sv.s.Shutdown(sctx); err != nil {
			g.log.Warn("shutdown deadline passed with requests in flight", "err", err)
			_ = sv.s.Close()
		}
	}
	wg.Wait()
	return runErr
}

// server is what Run needs of its listeners' servers:
// *http.Server, *h1.Server or *tlsserve.SplitServer.
type server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

var _ server = (*tlsserve.SplitServer)(nil)

// tlsConfig is the public listener's TLS config.
func (g *Gateway) tlsConfig() *tls.Config {
	return tlsserve.Config(g.c.TLS.MinVersion, tlsserve.Certificate(g.getCertificate, g.certs), g.nextProtos)
}
