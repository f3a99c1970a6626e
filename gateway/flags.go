package gateway

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Invocation is what the latch command line asks for.
type Invocation struct {
	Config Config
	// ConfigPath is the YAML file read, if any.
	ConfigPath string
	// CheckConfig validates the configuration and exits.
	CheckConfig bool
	// HealthcheckURL: GET it and exit 0 on 2xx (for container health checks
	// in images without a shell).
	HealthcheckURL string
	// Version: print the version and exit.
	Version bool
}

// ErrHelp is returned when -h or -help was asked for.
var ErrHelp = flag.ErrHelp

// ParseArgs builds the configuration from, lowest precedence first: the
// YAML file (-config / LATCH_CONFIG), LATCH_* environment variables, flags.
// The result is defaulted and validated; errors name the field.
func ParseArgs(args []string, getenv func(string) string, usage io.Writer) (Invocation, error) {
	var inv Invocation
	fs := flag.NewFlagSet("latch", flag.ContinueOnError)
	fs.SetOutput(usage)
	var (
		listen       = fs.String("listen", "", "public listen address (env "+EnvListen+", default :8080)")
		adminListen  = fs.String("admin-listen", "", "admin listen address, or off (env "+EnvAdminListen+", default 127.0.0.1:9090)")
		consulAddr   = fs.String("consul", "", "Consul agent address (default: CONSUL_HTTP_ADDR as consul/api reads it; CONSUL_HTTP_TOKEN is honoured)")
		service      = fs.String("service", "", "Consul service routed at / (env "+EnvService+")")
		backends     = fs.String("backends", "", "comma-separated static backends for -service, without Consul")
		configPath   = fs.String("config", "", "YAML config file (env "+EnvConfig+")")
		redisURL     = fs.String("redis", "", "redis:// or rediss:// URL of the session store (env "+EnvRedisURL+"; default: in memory)")
		cookieSecret = fs.String("cookie-secret", "", "comma-separated cookie secrets, first signs (env "+EnvCookieSecret+")")
		secretFile   = fs.String("cookie-secret-file", "", "file holding the cookie secret, created with a random one if missing; used when no -cookie-secret is given (env "+EnvCookieSecretFile+")")
		adminToken   = fs.String("admin-token", "", "bearer token required by the admin API (env "+EnvAdminToken+")")
		logLevel     = fs.String("log-level", "", "debug, info, warn or error (env "+EnvLogLevel+")")
		logFormat    = fs.String("log-format", "", "text or json (env "+EnvLogFormat+")")
		policyChain  = fs.String("policy", "", "default policy chain, e.g. least_response_time,round_robin (env "+EnvPolicy+")")
		tagRoutes    = fs.String("consul-routes", "", "route services by their latch.* Consul tags: true or false (env "+EnvConsulRoutes+")")
		pprof        = fs.String("pprof", "", "serve /debug/pprof on the admin listener: true or false (env "+EnvPprof+")")
	)
	fs.BoolVar(&inv.CheckConfig, "check-config", false, "validate the configuration and exit")
	fs.StringVar(&inv.HealthcheckURL, "healthcheck", "", "GET this URL and exit 0 if it answers 2xx")
	fs.BoolVar(&inv.Version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return inv, err
	}
	if fs.NArg() > 0 {
		return inv, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if inv.HealthcheckURL != "" || inv.Version {
		return inv, nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	// pick returns the flag value when given, else the environment's.
	pick := func(name, env string, flagVal *string) (string, bool) {
		if set[name] {
			return *flagVal, true
		}
		if v := getenv(env); v != "" {
			return v, true
		}
		return "", false
	}
	var errs []error
	parseBool := func(field, v string) *bool {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not true or false", field, v))
			return nil
		}
		return &b
	}

	cfg := &inv.Config
	if path, ok := pick("config", EnvConfig, configPath); ok {
		data, err := os.ReadFile(path)
		if err != nil {
			return inv, fmt.Errorf("config: %w", err)
		}
		if *cfg, err = ParseConfigYAML(data); err != nil {
			return inv, fmt.Errorf("%s: %w", path, err)
		}
		inv.ConfigPath = path
	}
	if v, ok := pick("listen", EnvListen, listen); ok {
		cfg.Listen = v
	}
	if v, ok := pick("admin-listen", EnvAdminListen, adminListen); ok {
		cfg.Admin.Listen = v
	}
	if set["consul"] {
		cfg.Consul.Address = *consulAddr
	}
	if v, ok := pick("redis", EnvRedisURL, redisURL); ok {
		cfg.Redis.URL = v
	}
	if v, ok := pick("cookie-secret", EnvCookieSecret, cookieSecret); ok {
		cfg.Cookie.Secrets = splitList(v)
	}
	if v, ok := pick("cookie-secret-file", EnvCookieSecretFile, secretFile); ok {
		cfg.Cookie.SecretFile = v
	}
	if v, ok := pick("admin-token", EnvAdminToken, adminToken); ok {
		cfg.Admin.Token = v
	}
	if v, ok := pick("log-level", EnvLogLevel, logLevel); ok {
		cfg.Log.Level = strings.ToLower(v)
	}
	if v, ok := pick("log-format", EnvLogFormat, logFormat); ok {
		cfg.Log.Format = strings.ToLower(v)
	}
	if v, ok := pick("policy", EnvPolicy, policyChain); ok {
		cfg.Defaults.Policy = splitList(v)
	}
	if v, ok := pick("consul-routes", EnvConsulRoutes, tagRoutes); ok {
		cfg.Consul.RoutesFromTags = parseBool("consul.routes_from_tags", v)
	}
	if v, ok := pick("pprof", EnvPprof, pprof); ok {
		if b := parseBool("admin.pprof", v); b != nil {
			cfg.Admin.Pprof = *b
		}
	}
	if v, ok := pick("service", EnvService, service); ok {
		r := Route{Service: v, PathPrefix: "/"}
		if set["backends"] {
			r.Backends = splitList(*backends)
			cfg.Consul.Disabled = true
		}
		cfg.Routes = append([]Route{r}, cfg.Routes...)
	} else if set["backends"] {
		errs = append(errs, errors.New("backends: needs -service"))
	}
	if err := errors.Join(errs...); err != nil {
		return inv, err
	}
	cfg.SetDefaults()
	return inv, cfg.Validate()
}
