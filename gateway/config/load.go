package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Environment variables latch reads, each the equivalent of a flag. The
// CONSUL_* variables are read by github.com/hashicorp/consul/api itself (see
// api.DefaultConfig), so every name it documents works as it does for the
// consul CLI.
const (
	EnvListen           = "LATCH_LISTEN"
	EnvAdminListen      = "LATCH_ADMIN_LISTEN"
	EnvMetricsListen    = "LATCH_METRICS_LISTEN"
	EnvAccessLogFile    = "LATCH_ACCESS_LOG_FILE"
	EnvService          = "LATCH_SERVICE"
	EnvConfig           = "LATCH_CONFIG"
	EnvRedisURL         = "LATCH_REDIS_URL"
	EnvCookieSecret     = "LATCH_COOKIE_SECRET"
	EnvCookieSecretFile = "LATCH_COOKIE_SECRET_FILE"
	EnvAdminToken       = "LATCH_ADMIN_TOKEN"
	EnvLogLevel         = "LATCH_LOG_LEVEL"
	EnvLogFormat        = "LATCH_LOG_FORMAT"
	EnvPolicy           = "LATCH_POLICY"
	EnvConsulRoutes     = "LATCH_CONSUL_ROUTES"
	EnvPprof            = "LATCH_PPROF"
)

// The standard OpenTelemetry variables latch reads into its tracing:
// settings (over the file's); the exporter reads the other OTEL_EXPORTER_OTLP_*
// ones (headers, timeout, certificates) itself.
const (
	EnvOTLPEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvOTLPProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvServiceName        = "OTEL_SERVICE_NAME"
	EnvTracesSampler      = "OTEL_TRACES_SAMPLER"
	EnvTracesSamplerArg   = "OTEL_TRACES_SAMPLER_ARG"
	EnvResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"
)

// EnvVars lists every LATCH_* variable latch reads.
func EnvVars() []string {
	return []string{
		EnvListen, EnvAdminListen, EnvMetricsListen, EnvAccessLogFile, EnvService, EnvConfig, EnvRedisURL, EnvCookieSecret, EnvCookieSecretFile,
		EnvAdminToken, EnvLogLevel, EnvLogFormat, EnvPolicy, EnvConsulRoutes, EnvPprof,
	}
}

// Invocation is what the latch command line asks for.
type Invocation struct {
	// Config is the compiled configuration (nil with HealthcheckURL).
	Config *Compiled
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

// Load builds the configuration from, lowest precedence first: the YAML
// file (-config / LATCH_CONFIG), LATCH_* environment variables, flags, and
// compiles it. Errors name the field, the file's line, the variable or
// the flag they are about.
func Load(args []string, getenv func(string) string, usage io.Writer) (Invocation, error) {
	var inv Invocation
	fs := flag.NewFlagSet("latch", flag.ContinueOnError)
	fs.SetOutput(usage)
	type setting struct {
		flag, env, help string
		field           string // the YAML path it sets, for errors
		val             *string
		apply           func(c *Config, v string) error
	}
	settings := []*setting{
		{flag: "listen", field: "listen", env: EnvListen, help: "public listen address (default :8080)",
			apply: func(c *Config, v string) error { c.Listen = v; return nil }},
		{flag: "admin-listen", field: "admin.listen", env: EnvAdminListen, help: "admin listen address, or off (default 127.0.0.1:9090)",
			apply: func(c *Config, v string) error { c.Admin.Listen = v; return nil }},
		{flag: "metrics-listen", field: "metrics.listen", env: EnvMetricsListen, help: "address serving only /metrics, without the admin token (default: none)",
			apply: func(c *Config, v string) error { c.Metrics.Listen = v; return nil }},
		{flag: "access-log-file", field: "log.access_file", env: EnvAccessLogFile, help: "file the access log goes to, reopened on SIGUSR1 or when rotated (default: stderr)",
			apply: func(c *Config, v string) error { c.Log.AccessFile = v; return nil }},
		{flag: "consul", field: "consul.address", help: "Consul agent address (default: CONSUL_HTTP_ADDR as consul/api reads it; CONSUL_HTTP_TOKEN is honoured)",
			apply: func(c *Config, v string) error { c.Consul.Address = v; return nil }},
		{flag: "redis", field: "redis.url", env: EnvRedisURL, help: "redis:// or rediss:// URL of the session store (default: in memory)",
			apply: func(c *Config, v string) error { c.Redis.URL = v; return nil }},
		{flag: "cookie-secret", field: "cookie.secrets", env: EnvCookieSecret, help: "comma-separated cookie secrets, first signs",
			apply: func(c *Config, v string) error { c.Cookie.Secrets = SplitList(v); return nil }},
		{flag: "cookie-secret-file", field: "cookie.secret_file", env: EnvCookieSecretFile, help: "file holding the cookie secret, created with a random one if missing; used when no -cookie-secret is given",
			apply: func(c *Config, v string) error { c.Cookie.SecretFile = v; return nil }},
		{flag: "admin-token", field: "admin.token", env: EnvAdminToken, help: "bearer token required by the admin API",
			apply: func(c *Config, v string) error { c.Admin.Token = v; return nil }},
		{flag: "log-level", field: "log.level", env: EnvLogLevel, help: "debug, info, warn or error",
			apply: func(c *Config, v string) error { c.Log.Level = strings.ToLower(v); return nil }},
		{flag: "log-format", field: "log.format", env: EnvLogFormat, help: "text or json",
			apply: func(c *Config, v string) error { c.Log.Format = strings.ToLower(v); return nil }},
		{flag: "policy", field: "defaults.policy", env: EnvPolicy, help: "default policy chain, e.g. least_response_time,round_robin",
			apply: func(c *Config, v string) error { c.Defaults.Policy = Set(SplitList(v)); return nil }},
		{flag: "consul-routes", field: "consul.routes_from_tags", env: EnvConsulRoutes, help: "route services by their latch.* Consul tags: true or false",
			apply: func(c *Config, v string) error {
				b, err := parseBool(v)
				c.Consul.RoutesFromTags = Set(b)
				return err
			}},
		{flag: "pprof", field: "admin.pprof", env: EnvPprof, help: "serve /debug/pprof on the admin listener: true or false",
			apply: func(c *Config, v string) error {
				b, err := parseBool(v)
				c.Admin.Pprof = b
				return err
			}},
	}
	for _, s := range settings {
		help := s.help
		if s.env != "" {
			help += " (env " + s.env + ")"
		}
		s.val = fs.String(s.flag, "", help)
	}
	service := fs.String("service", "", "Consul service routed at / (env "+EnvService+")")
	backends := fs.String("backends", "", "comma-separated static backends for -service, without Consul")
	configPath := fs.String("config", "", "YAML config file (env "+EnvConfig+")")
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
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	// pick returns the flag's value when given, else the environment's, and
	// the name of where it came from.
	pick := func(name, env, flagVal string) (v, from string, ok bool) {
		if given[name] {
			return flagVal, "-" + name, true
		}
		if env != "" {
			if v := getenv(env); v != "" {
				return v, env, true
			}
		}
		return "", "", false
	}

	var cfg Config
	if path, _, ok := pick("config", EnvConfig, *configPath); ok {
		data, err := os.ReadFile(path)
		if err != nil {
			return inv, fmt.Errorf("config: %w", err)
		}
		if cfg, err = Parse(data); err != nil {
			return inv, fmt.Errorf("%s: %w", path, err)
		}
		inv.ConfigPath = path
	}
	if cfg.src == nil {
		cfg.src = &source{}
	}
	cfg.src.file = inv.ConfigPath
	cfg.src.setBy = map[string]string{}
	var errs []error
	for _, s := range settings {
		if v, from, ok := pick(s.flag, s.env, *s.val); ok {
			cfg.src.setBy[s.field] = from
			if err := s.apply(&cfg, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", from, err))
			}
		}
	}
	for _, e := range []struct {
		env, field string
		dst        *string
	}{
		{EnvOTLPEndpoint, "tracing.endpoint", &cfg.Tracing.Endpoint},
		{EnvOTLPProtocol, "tracing.protocol", &cfg.Tracing.Protocol},
		{EnvServiceName, "tracing.service_name", &cfg.Tracing.ServiceName},
		{EnvTracesSampler, "tracing.sampler", &cfg.Tracing.Sampler},
		{EnvTracesSamplerArg, "tracing.sampler_arg", &cfg.Tracing.SamplerArg},
		{EnvResourceAttributes, "tracing.resource_attributes", &cfg.Tracing.ResourceAttributes},
	} {
		if v := getenv(e.env); v != "" {
			cfg.src.setBy[e.field] = e.env
			*e.dst = v
		}
	}
	if v, from, ok := pick("service", EnvService, *service); ok {
		r := Route{Service: v, PathPrefix: "/"}
		if given["backends"] {
			r.Backends = SplitList(*backends)
			cfg.Consul.Disabled = true
		}
		cfg.Routes = append([]Route{r}, cfg.Routes...)
		cfg.src.flagRoutes = 1
		if from == EnvService {
			cfg.src.flagRoute = from + "=" + v
		} else {
			cfg.src.flagRoute = from + " " + v
		}
	} else if given["backends"] {
		errs = append(errs, errors.New("-backends: needs -service"))
	}
	if err := errors.Join(errs...); err != nil {
		return inv, err
	}
	c, err := cfg.Compile()
	if err != nil {
		return inv, err
	}
	inv.Config = c
	return inv, nil
}

func parseBool(v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%q is not true or false", v)
	}
	return b, nil
}
