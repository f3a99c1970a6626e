// Package demo is the demo backend of latch: a small server that says who
// it is, registers itself in Consul with an HTTP check, registers again
// whenever that registration disappears (a Consul agent that lost its state),
// and deregisters on shutdown. cmd/demo-backend runs it; tests read its
// configuration (the DEMO_* variables the compose file sets).
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/consul/api"
)

// Config of one demo backend.
type Config struct {
	Addr          string        // listen address (default :8081)
	ID            string        // Consul service ID (default service-port)
	Service       string        // Consul service name (default web)
	Consul        string        // Consul address; "" = consul/api defaults (CONSUL_HTTP_ADDR); "-" = do not register
	AdvertiseAddr string        // host registered in Consul (default: the listen host, or 127.0.0.1)
	CheckInterval time.Duration // Consul HTTP check interval (default 2s)
	Tags          []string      // e.g. latch.route=/api
	Weight        int           // Consul Weights.Passing (default 1)
	// Healthcheck, when set, makes the command GET it and exit (containers).
	Healthcheck string
	// Version makes the command print its build and exit.
	Version bool
}

// Environment variables the demo backend reads (besides consul/api's CONSUL_*).
const (
	EnvAddr          = "DEMO_ADDR"
	EnvID            = "DEMO_ID"
	EnvService       = "DEMO_SERVICE"
	EnvAdvertise     = "DEMO_ADVERTISE"
	EnvTags          = "DEMO_TAGS"
	EnvWeight        = "DEMO_WEIGHT"
	EnvCheckInterval = "DEMO_CHECK_INTERVAL"
)

// EnvVars lists the DEMO_* variables.
func EnvVars() []string {
	return []string{EnvAddr, EnvID, EnvService, EnvAdvertise, EnvTags, EnvWeight, EnvCheckInterval}
}

// ParseFlags reads flags, with environment variables as defaults. On -help
// it writes the flags to usage and returns flag.ErrHelp.
func ParseFlags(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("demo-backend", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c Config
	var tags, interval, weight string
	fs.StringVar(&c.Addr, "addr", env(EnvAddr, ":8081"), "listen address ("+EnvAddr+")")
	fs.StringVar(&c.ID, "id", env(EnvID, ""), "Consul service ID ("+EnvID+"; default service-port)")
	fs.StringVar(&c.Service, "service", env(EnvService, "web"), "Consul service name ("+EnvService+")")
	fs.StringVar(&c.Consul, "consul", "", "Consul address (default CONSUL_HTTP_ADDR); - to not register")
	fs.StringVar(&c.AdvertiseAddr, "advertise", env(EnvAdvertise, ""), "host registered in Consul ("+EnvAdvertise+")")
	fs.StringVar(&tags, "tags", env(EnvTags, ""), "comma-separated Consul tags ("+EnvTags+")")
	fs.StringVar(&weight, "weight", env(EnvWeight, "1"), "Consul weight ("+EnvWeight+")")
	fs.StringVar(&interval, "check-interval", env(EnvCheckInterval, "2s"), "HTTP check interval ("+EnvCheckInterval+")")
	fs.StringVar(&c.Healthcheck, "healthcheck", "", "GET this URL, exit 0 on 2xx")
	fs.BoolVar(&c.Version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(usage, "usage: demo-backend [flags]\n\n"+
				"A demo HTTP backend for latch: answers who it is and registers itself in Consul.\n\nFlags:")
			fs.SetOutput(usage)
			fs.PrintDefaults()
		}
		return c, err
	}
	if c.Healthcheck != "" || c.Version {
		return c, nil
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return c, fmt.Errorf("-addr: %q is not host:port", c.Addr)
	}
	d, err := time.ParseDuration(interval)
	if err != nil || d <= 0 {
		return c, fmt.Errorf("-check-interval: %q is not a positive duration", interval)
	}
	c.CheckInterval = d
	if c.Weight, err = strconv.Atoi(weight); err != nil || c.Weight < 1 {
		return c, fmt.Errorf("-weight: %q is not a positive integer", weight)
	}
	for _, tg := range strings.Split(tags, ",") {
		if tg = strings.TrimSpace(tg); tg != "" {
			c.Tags = append(c.Tags, tg)
		}
	}
	if c.Service == "" {
		return c, errors.New("-service: must not be empty")
	}
	return c, nil
}

// Server is a running demo backend.
type Server struct {
	cfg      Config
	log      *slog.Logger
	srv      *http.Server
	ln       net.Listener
	consul   *api.Client
	stop     context.CancelFunc // stops the registration loop
	loopDone chan struct{}
	requests atomic.Int64
	healthy  atomic.Bool
	failing  atomic.Int32
}

// New returns a server for cfg.
func New(cfg Config, log *slog.Logger) *Server {
	s := &Server{cfg: cfg, log: log}
	s.healthy.Store(true)
	return s
}

// Handler serves the demo endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		if !s.healthy.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/ws", s.websocket)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n := s.requests.Add(1)
		w.Header().Set("X-Backend-Id", s.cfg.ID)
		if code := s.failing.Load(); code != 0 {
			http.Error(w, "failing on purpose", int(code))
			return
		}
		switch r.URL.Path {
		case "/slow":
			ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
			select {
			case <-time.After(time.Duration(min(max(ms, 0), 5000)) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		case "/stream":
			count, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Header().Set("Content-Type", "text/plain")
			for i := range min(max(count, 0), 1000) {
				fmt.Fprintf(w, "%s chunk %d\n", s.cfg.ID, i)
				_ = http.NewResponseController(w).Flush()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": s.cfg.ID, "service": s.cfg.Service, "requests": n, "path": r.URL.Path, "host": r.Host,
		})
	})
	return mux
}

// websocket echoes each message prefixed with the backend id.
func (s *Server) websocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	defer c.CloseNow()
	for {
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if err := c.Write(r.Context(), typ, append([]byte(s.cfg.ID+": "), msg...)); err != nil {
			return
		}
	}
}

// Start listens, serves and registers in Consul.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	s.ln = ln
	host, portStr, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portStr)
	if s.cfg.ID == "" {
		s.cfg.ID = fmt.Sprintf("%s-%d", s.cfg.Service, port)
	}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	if s.cfg.Consul == "-" {
		return nil
	}
	ccfg := api.DefaultConfig()
	if s.cfg.Consul != "" {
		ccfg.Address = s.cfg.Consul
	}
	if s.consul, err = api.NewClient(ccfg); err != nil {
		return fmt.Errorf("consul client: %w", err)
	}
	adv := s.cfg.AdvertiseAddr
	if adv == "" {
		adv = host
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			adv = "127.0.0.1"
		}
	}
	reg := &api.AgentServiceRegistration{
		ID: s.cfg.ID, Name: s.cfg.Service, Address: adv, Port: port, Tags: s.cfg.Tags,
		Weights: &api.AgentWeights{Passing: s.cfg.Weight, Warning: 1},
		Check: &api.AgentServiceCheck{
			HTTP: "http://" + net.JoinHostPort(adv, portStr) + "/health", Interval: s.cfg.CheckInterval.String(),
			Timeout: "1s", DeregisterCriticalServiceAfter: "1m",
		},
	}
	if err := s.consul.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return fmt.Errorf("registering in consul: %w", err)
	}
	s.log.Info("demo backend up", "id", s.cfg.ID, "addr", ln.Addr().String(), "service", s.cfg.Service)
	lctx, stop := context.WithCancel(context.Background())
	s.stop, s.loopDone = stop, make(chan struct{})
	go s.keepRegistered(lctx, reg)
	return nil
}

// keepRegistered registers reg again whenever the agent no longer has it, as
// a service defined in an agent's configuration would be: a Consul agent
// restarted without its data directory forgets every service registered
// through its API. It checks once per check interval until ctx ends; while
// Consul is unreachable it just tries again at the next tick.
func (s *Server) keepRegistered(ctx context.Context, reg *api.AgentServiceRegistration) {
	defer close(s.loopDone)
	t := time.NewTicker(s.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, _, err := s.consul.Agent().Service(reg.ID, (&api.QueryOptions{}).WithContext(ctx))
		var status api.StatusError
		if !errors.As(err, &status) || status.Code != http.StatusNotFound {
			continue // registered, or Consul unreachable: nothing to do now
		}
		if err := s.consul.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
			s.log.Warn("registering again in consul", "id", reg.ID, "err", err)
			continue
		}
		s.log.Info("registration had disappeared from consul: registered again", "id", reg.ID)
	}
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// ID is the backend's service ID.
func (s *Server) ID() string { return s.cfg.ID }

// Shutdown deregisters its own service ID only, then stops serving
// gracefully.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	if s.stop != nil {
		s.stop() // before deregistering, or the loop would register again
		<-s.loopDone
	}
	if s.consul != nil {
		if err := s.consul.Agent().ServiceDeregisterOpts(s.cfg.ID, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
			errs = append(errs, fmt.Errorf("deregistering: %w", err))
		}
	}
	if s.srv != nil {
		errs = append(errs, s.srv.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// SetHealthy makes /health answer 200 (true) or 503.
func (s *Server) SetHealthy(ok bool) { s.healthy.Store(ok) }

// SetFailing makes every request but /health answer status (0: normal).
func (s *Server) SetFailing(status int) { s.failing.Store(int32(status)) }

// Requests is how many requests it served.
func (s *Server) Requests() int64 { return s.requests.Load() }
