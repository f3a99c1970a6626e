// Command latch is a sticky-session HTTP gateway: Consul tells it which
// backends exist, Redis remembers which client is pinned to which backend.
//
// It only parses configuration and wires the packages together
// (gateway.Assemble); see docs/configuration.md for flags, environment
// variables and the config file.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/latchgw/latch/cmd/internal/buildinfo"
	"github.com/latchgw/latch/gateway"
	"github.com/latchgw/latch/gateway/accesslog"
	"github.com/latchgw/latch/gateway/config"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	inv, err := config.Load(args, os.Getenv, os.Stderr)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "latch: invalid configuration:\n%v\n", err)
		return 2
	}
	if inv.Version {
		fmt.Println(buildinfo.String("latch"))
		return 0
	}
	if inv.HealthcheckURL != "" {
		return healthcheck(inv.HealthcheckURL)
	}
	if inv.CheckConfig {
		fmt.Println("latch: configuration ok")
		return 0
	}
	cfg := inv.Config.Config()
	log := accesslog.NewLogger(cfg.Log, os.Stderr)
	// From here on SIGHUP never ends latch (before any listener opens): it
	// reloads the configuration once latch runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// SIGUSR1 reopens log.access_file (logrotate's postrotate); Run's log
	// writer reads the channel.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)

	g, closeAll, err := gateway.Assemble(inv.Config, log, os.Stderr, usr1)
	defer closeAll()
	if err != nil {
		fmt.Fprintf(os.Stderr, "latch: invalid configuration: %v\n", err)
		return 2
	}
	public, err := gateway.Listen(context.Background(), cfg.Listen, cfg.Server.ReusePort)
	if err != nil {
		log.Error("listen", "addr", cfg.Listen, "err", err)
		return 1
	}
	// The optional listeners: nil when not configured.
	optional := func(on bool, addr, what string) (net.Listener, bool) {
		if !on {
			return nil, true
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Error("listen "+what, "addr", addr, "err", err)
			return nil, false
		}
		return ln, true
	}
	admin, ok := optional(cfg.Admin.Listen != "off", cfg.Admin.Listen, "admin")
	if !ok {
		return 1
	}
	if admin != nil && cfg.Admin.Token == "" {
		// Issue 23: anything that reaches the listener can drain backends
		// and reload; browsers are held off (cross-origin requests, forms,
		// rebound host names), other local programs are not.
		log.Warn("the admin API has no token: every program that can reach it can drain backends and reload; set admin.token (LATCH_ADMIN_TOKEN)",
			"admin_listen", admin.Addr().String())
	}
	metrics, ok := optional(cfg.Metrics.Listen != "", cfg.Metrics.Listen, "metrics")
	if !ok {
		return 1
	}
	redirect, ok := optional(cfg.TLS.RedirectListen != "", cfg.TLS.RedirectListen, "redirect")
	if !ok {
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	g.SetConfigLoader(func() (*config.Compiled, error) {
		inv, err := config.Load(args, os.Getenv, io.Discard)
		return inv.Config, err
	})
	go reloadOnHangup(ctx, g, hup)
	log.Info("latch starting", "version", buildinfo.String("latch"))
	if err := g.RunOn(ctx, gateway.Listeners{Public: public, Admin: admin, Metrics: metrics, Redirect: redirect}); err != nil {
		log.Error("latch stopped", "err", err)
		return 1
	}
	return 0
}

// reloadOnHangup reloads the configuration on each SIGHUP that reaches
// hup (the systemd unit's ExecReload), until ctx ends. ReloadConfig logs
// the outcome.
func reloadOnHangup(ctx context.Context, g *gateway.Gateway, hup <-chan os.Signal) {
	for {
		select {
		case <-hup:
			_, _ = g.ReloadConfig()
		case <-ctx.Done():
			return
		}
	}
}

// healthcheck GETs url and reports 0 on 2xx: the container health check of
// an image without a shell.
func healthcheck(url string) int {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "latch:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		fmt.Fprintln(os.Stderr, "latch:", resp.Status)
		return 1
	}
	return 0
}
