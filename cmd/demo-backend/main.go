// Command demo-backend is a small HTTP server that says who it is, for
// trying latch: it registers itself in Consul with an HTTP check and
// deregisters on SIGTERM. See package demo beside it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/latchgw/latch/cmd/demo-backend/demo"
	"github.com/latchgw/latch/cmd/internal/buildinfo"
)

func main() {
	cfg, err := demo.ParseFlags(os.Args[1:], os.Getenv, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo-backend:", err, "(demo-backend -help lists the flags)")
		os.Exit(2)
	}
	if cfg.Version {
		fmt.Println(buildinfo.String("demo-backend"))
		os.Exit(0)
	}
	if cfg.Healthcheck != "" {
		c := &http.Client{Timeout: 3 * time.Second}
		resp, err := c.Get(cfg.Healthcheck)
		if err != nil || resp.StatusCode/100 != 2 {
			os.Exit(1)
		}
		os.Exit(0)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s := demo.New(cfg, log)
	if err := s.Start(ctx); err != nil {
		log.Error("start", "err", err)
		os.Exit(1)
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		os.Exit(1)
	}
}
