package integration

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/hashicorp/consul/api"

	"github.com/latchgw/latch/cmd/demo-backend/demo"
	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/harness"
)

// What can be proved of docker-compose.yml without an engine (the compose
// suite runs it): it parses with the Compose specification's own loader,
// every variable it sets is one latch or demo-backend reads, and ports,
// health checks, restart policies, volumes and start order are as the
// README says.
func TestComposeFile(t *testing.T) {
	root := harness.RepoRoot()
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("latch", true); o.Profiles = []string{"*"} })
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	// consul/api reads these itself (api.DefaultConfig).
	consulVars := []string{api.HTTPAddrEnvName, api.HTTPTokenEnvName, api.HTTPTokenFileEnvName, api.HTTPCAFile,
		api.HTTPCAPath, api.HTTPClientCert, api.HTTPClientKey, api.HTTPTLSServerName, api.HTTPSSLEnvName,
		api.HTTPSSLVerifyEnvName, api.HTTPAuthEnvName, api.HTTPNamespaceEnvName, api.HTTPPartitionEnvName}
	// The tracing profile sets the standard OpenTelemetry variable latch reads.
	otelVars := []string{config.EnvOTLPEndpoint, config.EnvOTLPProtocol, config.EnvServiceName,
		config.EnvTracesSampler, config.EnvTracesSamplerArg, config.EnvResourceAttributes}
	latchVars := slices.Concat(config.EnvVars(), consulVars, otelVars)
	demoVars := append(demo.EnvVars(), consulVars...)
	want := map[string][]string{"latch": latchVars, "latch-replica": latchVars,
		"web-1": demoVars, "web-2": demoVars, "web-3": demoVars, "web-4": demoVars}
	for _, name := range []string{"consul", "redis", "latch", "latch-replica", "web-1", "web-2", "web-3", "web-4"} {
		svc, ok := project.Services[name]
		if !ok {
			t.Fatalf("service %s missing", name)
		}
		if hc := svc.HealthCheck; hc == nil || len(hc.Test) == 0 || hc.StartPeriod == nil {
			t.Errorf("%s: no health check with a start_period", name)
		}
		if svc.Restart != "unless-stopped" {
			t.Errorf("%s: restart %q; want unless-stopped", name, svc.Restart)
		}
		for v := range svc.Environment {
			if known := want[name]; !slices.Contains(known, v) {
				t.Errorf("%s sets %s, which it does not read", name, v)
			}
		}
	}
	for _, name := range []string{"latch", "latch-replica"} {
		latch := project.Services[name]
		if latch.Build == nil || latch.Build.Target != "latch" {
			t.Errorf("%s is not built from the Dockerfile's latch target: %+v", name, latch.Build)
		}
	}
	// Built from the checkout on every up (issue 29: an older latch:local
	// ran after a git pull), stamped with the version make up passes.
	for _, name := range []string{"latch", "latch-replica", "web-1", "web-2", "web-3", "web-4"} {
		svc := project.Services[name]
		if svc.PullPolicy != types.PullPolicyBuild {
			t.Errorf("%s: pull_policy %q; want build, so up rebuilds it from the checkout", name, svc.PullPolicy)
		}
		if svc.Build == nil || svc.Build.Args["VERSION"] == nil || svc.Build.Args["REVISION"] == nil {
			t.Errorf("%s: no VERSION and REVISION build args: %+v", name, svc.Build)
		}
	}
	for _, name := range []string{"latch", "latch-replica"} {
		latch := project.Services[name]
		for _, dep := range []string{"consul", "redis"} {
			if d, ok := latch.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s must wait for %s to be healthy: %+v", name, dep, latch.DependsOn)
			}
		}
		if got := latch.Environment[config.EnvRedisURL]; got == nil || !strings.HasPrefix(*got, "redis://redis:") {
			t.Errorf("%s's Redis URL %v; want the redis service", name, got)
		}
		// No readable default secret: unset, latch creates one in its volume.
		if got := latch.Environment[config.EnvCookieSecret]; got != nil && *got != "" {
			t.Errorf("%s has a default cookie secret %q everyone can read", name, *got)
		}
		if f := latch.Environment[config.EnvCookieSecretFile]; f == nil || !strings.HasPrefix(*f, mountOf(latch, "latch-state")+"/") {
			t.Errorf("%s's cookie secret file %v is not in the latch-state volume", name, f)
		}
		if _, ok := latch.Networks["redis"]; !ok {
			t.Errorf("%s is not on the redis network", name)
		}
	}
	ports := map[uint32]types.ServicePortConfig{}
	for _, p := range project.Services["latch"].Ports {
		ports[p.Target] = p
	}
	if p, ok := ports[8080]; !ok || p.Published != "8080" {
		t.Errorf("latch must publish 8080: %+v", ports)
	}
	if p, ok := ports[9090]; !ok || p.HostIP != "127.0.0.1" || p.Published != "9090" {
		t.Errorf("the admin port must be published on the host's loopback only: %+v", p)
	}
	for _, name := range []string{"web-1", "web-2", "web-3", "web-4"} {
		svc := project.Services[name]
		if d, ok := svc.DependsOn["consul"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s must wait for consul to be healthy", name)
		}
		if svc.Build == nil || svc.Build.Target != "demo-backend" {
			t.Errorf("%s is not built from the Dockerfile's demo-backend target: %+v", name, svc.Build)
		}
		if id := svc.Environment[demo.EnvID]; id == nil || *id != name {
			t.Errorf("%s registers as %v; want its own name", name, id)
		}
	}
	consul := project.Services["consul"]
	if p := consul.Ports; len(p) != 1 || p[0].Target != 8500 || p[0].HostIP != "127.0.0.1" || p[0].Published != "8500" {
		t.Errorf("consul's API/UI: %+v; want 8500 on 127.0.0.1 only", p)
	}
	if slices.Contains(consul.Command, "-dev") || !slices.Contains(consul.Command, "-server") ||
		!slices.Contains(consul.Command, "-data-dir="+mountOf(consul, "consul-data")) {
		t.Errorf("consul %v: want a server keeping its state in the consul-data volume", consul.Command)
	}
	if redis := project.Services["redis"]; len(redis.Ports) != 0 || len(redis.Networks) != 1 {
		t.Errorf("redis: ports %v, networks %v; want none published, on its own network", redis.Ports, redis.Networks)
	}
	// Tracing: off unless LATCH_OTLP_ENDPOINT names a collector; Jaeger only
	// in the tracing profile, its UI on the host's loopback.
	for _, name := range []string{"latch", "latch-replica"} {
		if got := project.Services[name].Environment[config.EnvOTLPEndpoint]; got == nil || *got != "" {
			t.Errorf("%s's %s is %v without LATCH_OTLP_ENDPOINT; want empty (tracing off)", name, config.EnvOTLPEndpoint, got)
		}
	}
	jaeger := project.Services["jaeger"]
	if !slices.Equal(jaeger.Profiles, []string{"tracing"}) {
		t.Errorf("jaeger's profiles %v; want [tracing]", jaeger.Profiles)
	}
	if p := jaeger.Ports; len(p) != 1 || p[0].Target != 16686 || p[0].HostIP != "127.0.0.1" || p[0].Published != "16686" {
		t.Errorf("jaeger's UI: %+v; want 16686 on 127.0.0.1 only", p)
	}
}

// mountOf is where svc mounts the named volume ("" if it does not).
func mountOf(svc types.ServiceConfig, volume string) string {
	for _, v := range svc.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Source == volume {
			return v.Target
		}
	}
	return ""
}

// The Dockerfile builds both binaries statically; latch runs as nonroot on
// distroless, exposing the public port only (the admin API listens on
// loopback unless told otherwise); the demo backend has its own target.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages := map[string]string{} // name → its lines
	var order []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if f := strings.Fields(line); len(f) == 4 && f[0] == "FROM" && strings.EqualFold(f[2], "AS") {
			order = append(order, f[3])
		}
		if len(order) > 0 {
			stages[order[len(order)-1]] += line + "\n"
		}
	}
	if len(order) < 3 || order[len(order)-1] != "latch" {
		t.Fatalf("want stages build, demo-backend and latch (last: the default target); got %v", order)
	}
	latch, backend := stages["latch"], stages["demo-backend"]
	for _, want := range []string{"FROM gcr.io/distroless/static", "USER nonroot", "/latch", `ENTRYPOINT ["/latch"]`, "EXPOSE 8080\n"} {
		if !strings.Contains(latch, want) {
			t.Errorf("latch stage lacks %q:\n%s", want, latch)
		}
	}
	if strings.Contains(latch, "demo-backend") {
		t.Errorf("the demo backend is in latch's image:\n%s", latch)
	}
	for _, want := range []string{"FROM gcr.io/distroless/static", "USER nonroot", `ENTRYPOINT ["/demo-backend"]`} {
		if !strings.Contains(backend, want) {
			t.Errorf("demo-backend stage lacks %q:\n%s", want, backend)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/latch", "./cmd/demo-backend"} {
		if !strings.Contains(stages["build"], want) {
			t.Errorf("build stage lacks %q", want)
		}
	}
}
