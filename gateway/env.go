package gateway

// Environment variables latch reads, each the equivalent of a flag. The
// CONSUL_* variables are read by github.com/hashicorp/consul/api itself (see
// api.DefaultConfig), so every name it documents works as it does for the
// consul CLI.
const (
	EnvListen           = "LATCH_LISTEN"
	EnvAdminListen      = "LATCH_ADMIN_LISTEN"
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

// EnvVars lists every LATCH_* variable latch reads.
func EnvVars() []string {
	return []string{
		EnvListen, EnvAdminListen, EnvService, EnvConfig, EnvRedisURL, EnvCookieSecret, EnvCookieSecretFile,
		EnvAdminToken, EnvLogLevel, EnvLogFormat, EnvPolicy, EnvConsulRoutes, EnvPprof,
	}
}
