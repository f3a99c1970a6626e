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

	"github.com/latchgw/latch/gateway/config"
	"github.com/latchgw/latch/integration/demo"
	"github.com/latchgw/latch/integration/harness"
)

// There is no Docker engine here, so this is what can be proved of
// docker-compose.yml: it parses with the Compose specification's own
// loader, every variable it sets is one latch or demo-backend reads, and
// ports, health checks and start order are as the README says.
func TestComposeFile(t *testing.T) {
	root := harness.RepoRoot()
	project, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("latch", true) })
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	// consul/api reads these itself (api.DefaultConfig).
	consulVars := []string{api.HTTPAddrEnvName, api.HTTPTokenEnvName, api.HTTPTokenFileEnvName, api.HTTPCAFile,
		api.HTTPCAPath, api.HTTPClientCert, api.HTTPClientKey, api.HTTPTLSServerName, api.HTTPSSLEnvName,
		api.HTTPSSLVerifyEnvName, api.HTTPAuthEnvName, api.HTTPNamespaceEnvName, api.HTTPPartitionEnvName}
	want := map[string][]string{
		"latch": append(config.EnvVars(), consulVars...),
		"web-1": append(demo.EnvVars(), consulVars...),
		"web-2": append(demo.EnvVars(), consulVars...),
		"web-3": append(demo.EnvVars(), consulVars...),
	}
	for _, name := range []string{"consul", "redis", "latch", "web-1", "web-2", "web-3"} {
		svc, ok := project.Services[name]
		if !ok {
			t.Fatalf("service %s missing", name)
		}
		if svc.HealthCheck == nil || len(svc.HealthCheck.Test) == 0 {
			t.Errorf("%s: no health check", name)
		}
		for v := range svc.Environment {
			if known := want[name]; !slices.Contains(known, v) {
				t.Errorf("%s sets %s, which it does not read", name, v)
			}
		}
	}
	latch := project.Services["latch"]
	if latch.Build == nil {
		t.Error("latch is not built from the Dockerfile")
	}
	ports := map[uint32]types.ServicePortConfig{}
	for _, p := range latch.Ports {
		ports[p.Target] = p
	}
	if p, ok := ports[8080]; !ok || p.Published != "8080" {
		t.Errorf("latch must publish 8080: %+v", latch.Ports)
	}
	if p, ok := ports[9090]; !ok || p.HostIP != "127.0.0.1" {
		t.Errorf("the admin port must be published on the host's loopback only: %+v", p)
	}
	for _, dep := range []string{"consul", "redis"} {
		if d, ok := latch.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("latch must wait for %s to be healthy: %+v", dep, latch.DependsOn)
		}
	}
	if got := latch.Environment[config.EnvRedisURL]; got == nil || !strings.HasPrefix(*got, "redis://redis:") {
		t.Errorf("latch's Redis URL %v; want the redis service", got)
	}
	for _, name := range []string{"web-1", "web-2", "web-3"} {
		svc := project.Services[name]
		if d, ok := svc.DependsOn["consul"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s must wait for consul to be healthy", name)
		}
		if !slices.Equal(svc.Entrypoint, types.ShellCommand{"/demo-backend"}) {
			t.Errorf("%s entrypoint %v; want /demo-backend", name, svc.Entrypoint)
		}
		if id := svc.Environment[demo.EnvID]; id == nil || *id != name {
			t.Errorf("%s registers as %v; want its own name", name, id)
		}
	}
	if p := project.Services["consul"].Ports; len(p) != 1 || p[0].Target != 8500 {
		t.Errorf("consul UI port: %+v; want 8500", p)
	}
}

// The Dockerfile builds both binaries statically and runs them as nonroot
// on distroless.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var stages []string
	var final []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "FROM ") {
			stages = append(stages, line)
			final = nil
		}
		final = append(final, line)
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stages", len(stages))
	}
	last := strings.Join(final, "\n")
	for _, want := range []string{"FROM gcr.io/distroless/static", "USER nonroot", "/latch", "/demo-backend", `ENTRYPOINT ["/latch"]`} {
		if !strings.Contains(last, want) {
			t.Errorf("final stage lacks %q:\n%s", want, last)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/latch", "./cmd/demo-backend"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("build stage lacks %q", want)
		}
	}
}
