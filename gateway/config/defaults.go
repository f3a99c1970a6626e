package config

import (
	"time"

	"github.com/latchgw/latch/policy"
	"github.com/latchgw/latch/session"
)

// Builtin are the defaults of RouteSettings, under Config.Defaults.
func Builtin() RouteSettings {
	br := policy.DefaultBreakerSettings()
	return RouteSettings{
		Policy: Set(List(policy.DefaultPolicy)),
		Hash:   Hash{Header: Set(""), Cookie: Set("")},
		Sticky: Sticky{
			Enabled: Set(true), TTL: Set(30 * time.Minute), Learn: Set(""), Header: Set(""), CookieName: Set("latch"),
			Path: Set("/"), Domain: Set(""), MaxAge: Set(time.Duration(0)), HTTPOnly: Set(true),
			SameSite: Set("lax"), Secure: Set("auto"),
		},
		Breaker: Breaker{
			ConsecutiveFailures: Set(br.ConsecutiveFailures), FailureRatio: Set(br.FailureRatio),
			MinRequests: Set(br.MinRequests), Interval: Set(br.Interval), OpenTimeout: Set(br.OpenTimeout),
			HalfOpenRequests: Set(br.HalfOpenRequests),
			FailureStatus:    Set([]int{502, 503, 504}),
		},
		Retry: Retry{Attempts: Set(3), OnStatus: Set([]int{502, 503, 504}), IdempotentPaths: Set(List{})},
		HealthCheck: HealthCheck{
			Kind: Set(CheckHTTP), Path: Set(""), GRPCService: Set(""), Interval: Set(5 * time.Second), Timeout: Set(time.Second),
			HealthyThreshold: Set(2), UnhealthyThreshold: Set(3),
		},
		WarningUsable:   Set(true),
		SlowStart:       Set(time.Duration(0)),
		PanicThreshold:  Set(0.5),
		Timeout:         Set(time.Duration(0)),
		BackendTLS:      BackendTLS{Enabled: Set(false), CAFile: Set(""), ServerName: Set("")},
		BackendProtocol: Set(ProtocolH1),
	}
}

// withDefaults returns c with every unset field given its documented
// default; routes inherit from Defaults, which inherit from Builtin.
func (c Config) withDefaults() Config {
	str := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	str(&c.Listen, ":8080")
	str(&c.Admin.Listen, "127.0.0.1:9090")
	c.Consul.RoutesFromTags = c.Consul.RoutesFromTags.orValue(true)
	str(&c.Consul.Consistency, "stale")
	c.Discovery.EmptyGrace = c.Discovery.EmptyGrace.orValue(30 * time.Second)
	c.Discovery.FirstCheckWait = c.Discovery.FirstCheckWait.orValue(10 * time.Second)
	c.Redis.Timeout = c.Redis.Timeout.orValue(session.DefaultStoreTimeout)
	c.Redis.CacheTTL = c.Redis.CacheTTL.orValue(session.DefaultCacheTTL)
	c.Redis.CacheSize = c.Redis.CacheSize.orValue(session.DefaultCacheSize)
	str(&c.Log.Level, "info")
	str(&c.Log.Format, "text")
	c.Log.Access = c.Log.Access.orValue(true)
	s := &c.Server
	s.ReadHeaderTimeout = s.ReadHeaderTimeout.orValue(10 * time.Second)
	s.IdleTimeout = s.IdleTimeout.orValue(120 * time.Second)
	s.MaxHeaderBytes = s.MaxHeaderBytes.orValue(64 << 10)
	s.MaxHeaderFields = s.MaxHeaderFields.orValue(100)
	s.MaxHeaderMemory = s.MaxHeaderMemory.orValue(64 << 20)
	s.BodyTimeout = s.BodyTimeout.orValue(60 * time.Second)
	s.MaxConcurrentStreams = s.MaxConcurrentStreams.orValue(100)
	s.MaxBackendConnectionsPerConnection = s.MaxBackendConnectionsPerConnection.orValue(32)
	s.ShutdownTimeout = s.ShutdownTimeout.orValue(30 * time.Second)
	a := &c.TLS.ACME
	if a.Enabled() {
		str(&a.CA, DefaultACMECA)
		if c.Redis.URL != "" {
			str(&a.Storage, "redis")
		}
		a.Challenges = a.Challenges.orValue(List{ChallengeHTTP01, ChallengeTLSALPN01})
	}
	str(&s.Implementation, "h1")
	s.MaxConnections = s.MaxConnections.orValue(10000)
	t := &c.Transport
	t.DialTimeout = t.DialTimeout.orValue(2 * time.Second)
	t.ResponseHeaderTimeout = t.ResponseHeaderTimeout.orValue(60 * time.Second)
	t.IdleConnTimeout = t.IdleConnTimeout.orValue(90 * time.Second)
	t.MaxIdleConnsPerHost = t.MaxIdleConnsPerHost.orValue(256)
	t.MaxIdleConns = t.MaxIdleConns.orValue(4096)
	t.MaxResponseHeaderBytes = t.MaxResponseHeaderBytes.orValue(64 << 10)
	str(&c.TLS.MinVersion, "1.2")
	c.TLS.PollInterval = c.TLS.PollInterval.orValue(2 * time.Second)
	c.Defaults = c.Defaults.inherit(Builtin())
	routes := make([]Route, len(c.Routes))
	for i, r := range c.Routes {
		routes[i] = r.withDefaults(c.Defaults)
	}
	c.Routes = routes
	return c
}

// withDefaults fills a route's unset fields from d.
func (r Route) withDefaults(d RouteSettings) Route {
	if r.PathPrefix == "" {
		r.PathPrefix = "/"
	}
	if r.Name == "" {
		r.Name = r.Service
	}
	r.RouteSettings = r.RouteSettings.inherit(d)
	return r
}

// inherit returns s with every unset field taken from d.
func (s RouteSettings) inherit(d RouteSettings) RouteSettings {
	s.Policy = s.Policy.or(d.Policy)
	s.Hash.Header = s.Hash.Header.or(d.Hash.Header)
	s.Hash.Cookie = s.Hash.Cookie.or(d.Hash.Cookie)
	st, ds := &s.Sticky, d.Sticky
	st.Enabled = st.Enabled.or(ds.Enabled)
	st.TTL = st.TTL.or(ds.TTL)
	st.Learn = st.Learn.or(ds.Learn)
	st.Header = st.Header.or(ds.Header)
	st.CookieName = st.CookieName.or(ds.CookieName)
	st.Path = st.Path.or(ds.Path)
	st.Domain = st.Domain.or(ds.Domain)
	st.MaxAge = st.MaxAge.or(ds.MaxAge)
	st.HTTPOnly = st.HTTPOnly.or(ds.HTTPOnly)
	st.SameSite = st.SameSite.or(ds.SameSite)
	st.Secure = st.Secure.or(ds.Secure)
	b, db := &s.Breaker, d.Breaker
	b.ConsecutiveFailures = b.ConsecutiveFailures.or(db.ConsecutiveFailures)
	b.FailureRatio = b.FailureRatio.or(db.FailureRatio)
	b.MinRequests = b.MinRequests.or(db.MinRequests)
	b.Interval = b.Interval.or(db.Interval)
	b.OpenTimeout = b.OpenTimeout.or(db.OpenTimeout)
	b.HalfOpenRequests = b.HalfOpenRequests.or(db.HalfOpenRequests)
	b.FailureStatus = b.FailureStatus.or(db.FailureStatus)
	s.Retry.Attempts = s.Retry.Attempts.or(d.Retry.Attempts)
	s.Retry.OnStatus = s.Retry.OnStatus.or(d.Retry.OnStatus)
	s.Retry.IdempotentPaths = s.Retry.IdempotentPaths.or(d.Retry.IdempotentPaths)
	h, dh := &s.HealthCheck, d.HealthCheck
	h.Kind = h.Kind.or(dh.Kind)
	h.Path = h.Path.or(dh.Path)
	h.GRPCService = h.GRPCService.or(dh.GRPCService)
	h.Interval = h.Interval.or(dh.Interval)
	h.Timeout = h.Timeout.or(dh.Timeout)
	h.HealthyThreshold = h.HealthyThreshold.or(dh.HealthyThreshold)
	h.UnhealthyThreshold = h.UnhealthyThreshold.or(dh.UnhealthyThreshold)
	s.WarningUsable = s.WarningUsable.or(d.WarningUsable)
	s.SlowStart = s.SlowStart.or(d.SlowStart)
	s.PanicThreshold = s.PanicThreshold.or(d.PanicThreshold)
	s.Timeout = s.Timeout.or(d.Timeout)
	bt, dt := &s.BackendTLS, d.BackendTLS
	bt.Enabled = bt.Enabled.or(dt.Enabled)
	bt.CAFile = bt.CAFile.or(dt.CAFile)
	bt.ServerName = bt.ServerName.or(dt.ServerName)
	s.BackendProtocol = s.BackendProtocol.or(d.BackendProtocol)
	return s
}

// BreakerSettings converts the breaker section to policy's settings.
func (b Breaker) BreakerSettings() policy.BreakerSettings {
	return policy.BreakerSettings{
		ConsecutiveFailures: b.ConsecutiveFailures.Get(),
		FailureRatio:        b.FailureRatio.Get(),
		MinRequests:         b.MinRequests.Get(),
		Interval:            b.Interval.Get(),
		OpenTimeout:         b.OpenTimeout.Get(),
		HalfOpenRequests:    b.HalfOpenRequests.Get(),
	}
}
