package discovery

import (
	"fmt"

	"github.com/hashicorp/consul/api"
)

// ClientConfig says how to reach the Consul agent. Empty fields keep what
// consul/api reads from the environment (CONSUL_HTTP_ADDR,
// CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT,
// CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME...), then
// consul/api's defaults (127.0.0.1:8500, plain HTTP, no token).
type ClientConfig struct {
	// Address is "host:port" or a URL (https:// turns TLS on).
	Address string
	// Datacenter to query (empty: the agent's own).
	Datacenter string
	// Token is the ACL token; TokenFile a file holding it, read by
	// consul/api on every request, so a rotated token is picked up.
	Token, TokenFile string
	// CAFile verifies the agent's certificate; CertFile and KeyFile are
	// the client certificate when the agent verifies clients; ServerName
	// overrides the name checked in the agent's certificate.
	CAFile, CertFile, KeyFile, ServerName string
}

// TLS reports whether the config asks for TLS to the agent.
func (c ClientConfig) TLS() bool {
	return c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.ServerName != ""
}

// NewClient returns a consul/api client for cfg, and the address it
// reaches (for the start-up log line).
func NewClient(cfg ClientConfig) (*api.Client, string, error) {
	c := api.DefaultConfig()
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&c.Address, cfg.Address)
	set(&c.Datacenter, cfg.Datacenter)
	if cfg.Token != "" || cfg.TokenFile != "" {
		c.Token, c.TokenFile = cfg.Token, cfg.TokenFile
	}
	set(&c.TLSConfig.CAFile, cfg.CAFile)
	set(&c.TLSConfig.CertFile, cfg.CertFile)
	set(&c.TLSConfig.KeyFile, cfg.KeyFile)
	set(&c.TLSConfig.Address, cfg.ServerName)
	if cfg.TLS() && c.Scheme == "http" {
		c.Scheme = "https"
	}
	client, err := api.NewClient(c)
	if err != nil {
		return nil, "", fmt.Errorf("consul client: %w", err)
	}
	return client, c.Scheme + "://" + c.Address, nil
}
