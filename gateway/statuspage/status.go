// Package statuspage is latch's live status page: plain HTML, CSS and
// JavaScript embedded in the binary (no build step, no CDN: it works on an
// air-gapped network), a JSON endpoint it polls, and a Sampler that keeps
// the last minutes of per-backend counters for its rates and charts.
//
// The package knows nothing of the gateway: the gateway hands it a
// function returning a Status, and mounts its handlers on the admin
// listener behind the admin token.
package statuspage

import "time"

// Status is one picture of a latch process, as the page shows it. It is
// plain data, serialized as JSON for the page.
type Status struct {
	Time      time.Time `json:"time"`
	Services  []Service `json:"services"`
	Routes    []Route   `json:"routes"`
	Conflicts []string  `json:"conflicts"`
	Store     Store     `json:"store"`
	// NeedsRestart lists the settings a reload read but only a restart
	// applies; they stay listed until the process restarts.
	NeedsRestart []string `json:"needs_restart"`
}

// Service is one watched Consul service.
type Service struct {
	Name string `json:"name"`
	// Stale is set while discovery cannot reach Consul and the last
	// snapshot keeps serving.
	Stale bool `json:"stale"`
	// Panic: too few backends look healthy to trust health checks.
	Panic bool `json:"panic"`
	// UpdatedAgeS is the age in seconds of the last snapshot discovery
	// published (-1: none yet); FreshAgeS that of the last fresh answer
	// from Consul (-1: none yet). Blocking queries publish on change only,
	// so while not stale the answer in hand is current.
	UpdatedAgeS float64 `json:"updated_age_s"`
	FreshAgeS   float64 `json:"fresh_age_s"`
	// Sessions is the service's live sessions (-1: the store cannot tell).
	Sessions int64     `json:"sessions"`
	Backends []Backend `json:"backends"`
	// StepS is the spacing of every backend's series, WindowS the span
	// they grow to, in seconds.
	StepS   float64 `json:"step_s"`
	WindowS float64 `json:"window_s"`
}

// Backend is one backend of a service and latch's state for it.
type Backend struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	// Health is Consul's verdict (passing, warning, critical, draining);
	// Drained is a drain through the admin API. State is what the page
	// colours the row by: draining when either drains, else Health.
	Health     string `json:"health"`
	Drained    bool   `json:"drained"`
	State      string `json:"state"`
	AcceptsNew bool   `json:"accepts_new"`
	Weight     int    `json:"weight"`
	// Breaker is closed, half-open or open; BreakerSince when it entered
	// that state (or when the backend appeared).
	Breaker      string    `json:"breaker"`
	BreakerSince time.Time `json:"breaker_since"`
	InFlight     int64     `json:"in_flight"`
	// EWMAMS is the smoothed response time in milliseconds (0: no data).
	EWMAMS float64 `json:"ewma_ms"`
	// ReqRate and ErrRate are requests and 5xx answers per second over
	// the last minute.
	ReqRate float64 `json:"req_rate"`
	ErrRate float64 `json:"err_rate"`
	// Sessions pinned to it (-1: unknown) and their share of the service's.
	Sessions int64   `json:"sessions"`
	Share    float64 `json:"share"`
	// Target is its share by weight among the backends taking new
	// sessions (0 when it takes none): where least_sessions steers.
	Target float64 `json:"target"`
	// SlowStart is the slow-start progress in [0, 1] (1: full share).
	SlowStart float64 `json:"slow_start"`
	// Requests and Repins are per-second rates over each sampling step of
	// the last minutes, oldest first (re-pins: sessions moved to it).
	Requests []float64 `json:"requests"`
	Repins   []float64 `json:"repins"`
}

// Route is one route, from the config file or from Consul tags.
type Route struct {
	Name       string `json:"name"`
	Host       string `json:"host,omitempty"`
	PathPrefix string `json:"path_prefix"`
	Service    string `json:"service"`
	Sticky     bool   `json:"sticky"`
	FromTags   bool   `json:"from_tags"`
	Chain      []Step `json:"chain"`
}

// Step is one policy of a route's chain.
type Step struct {
	Policy string `json:"policy"`
	// HandedOn counts the picks this step passed to the next one since
	// latch started (a fallback).
	HandedOn float64 `json:"handed_on"`
}

// Store is the session store as this process sees it.
type Store struct {
	Kind string `json:"kind"` // redis or memory
	// Up is false while the store's breaker is open (requests do not
	// wait on it); Reachable is whether the last call for this page
	// succeeded.
	Up        bool `json:"up"`
	Reachable bool `json:"reachable"`
	// PendingPins wait for the store to come back.
	PendingPins int `json:"pending_pins"`
	// CacheHitRatio of local cache lookups over the last minute (-1: no
	// lookups).
	CacheHitRatio float64 `json:"cache_hit_ratio"`
}
