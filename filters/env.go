package filters

import (
	"fmt"
	"path/filepath"

	"github.com/valyala/fasthttp"
	"time"

	"github.com/rs/zerolog"

	"github.com/weir-gateway/weir/pattern"
)

// Env is what a filter constructor may know about where the filter runs.
type Env struct {
	// Route is the route's name, for logs.
	Route string
	// Pattern is the route's path pattern, for filters that read path parameters.
	Pattern *pattern.Pattern
	// Now is the clock. Tests inject one so that limiters and breakers are driven without sleeping.
	Now func() time.Time
	// Log receives the filter's events (breaker transitions, for example).
	Log zerolog.Logger
	// Counters are the route's counters; the zero value counts nothing.
	Counters Counters
	// Mirror returns what sends a copy of a request to the named upstream (the mirror filter).
	Mirror func(upstream string) (Sender, error)
	// Splits names the pools of the route's split, in order (empty without one): a filter whose state
	// is about the upstream (a circuit_breaker) keeps one per pool, chosen by Exchange.Split.
	Splits []string
	// Dir is the config file's directory: relative file names in a filter's settings are resolved
	// against it.
	Dir string
	// SharedLimits builds the buckets of a rate_limit with scope: global, kept in the config's redis;
	// nil when the config has no redis block.
	SharedLimits func(SharedLimitSpec) (SharedLimiter, error)
	// SharedCache is the config's redis, for a cache with store: redis; nil without a redis block.
	SharedCache SharedCache
}

// SharedCache is a key-value store every replica shares. Keys are given without the redis block's
// key_prefix; the store adds it. A store that is down answers at once with an error, never waits.
type SharedCache interface {
	// Get returns the value at key; nil and no error when there is none.
	Get(key string) ([]byte, error)
	// Set stores value at key for ttl.
	Set(key string, value []byte, ttl time.Duration) error
	// DeletePrefix deletes the keys starting with prefix and says how many.
	DeletePrefix(prefix string) (int, error)
}

// SharedLimitSpec is a limit every replica shares: PerSecond on average, Burst at once, per key.
type SharedLimitSpec struct {
	// ID names the limit in the shared store: the same route and settings give the same ID on every
	// replica.
	ID        string
	PerSecond float64
	Burst     int
	// MaxKeys bounds the keys a replica tracks; LeaseWindow is how much of its own recent traffic a
	// replica takes from the store at once.
	MaxKeys     int
	LeaseWindow time.Duration
	// Leases counts the requests for tokens sent to the store.
	Leases Counter
}

// SharedLimiter decides requests against a shared limit.
type SharedLimiter interface {
	// Take decides one request for key (empty: the route's one bucket). key's bytes are not kept.
	Take(key []byte, now time.Time) SharedDecision
}

// SharedVerdict is what a SharedLimiter decided.
type SharedVerdict uint8

const (
	// SharedAllowed: a token was taken.
	SharedAllowed SharedVerdict = iota
	// SharedRefused: the key has no token left; RetryAfter says when one may be.
	SharedRefused
	// SharedUnavailable: the store cannot be reached; the filter decides by its on_redis_error.
	SharedUnavailable
)

// SharedDecision is a SharedLimiter's answer. Remaining is the key's tokens left as last seen (for the
// RateLimit header; approximate); Replicas is how many replicas share the store as last seen (0 when
// unknown), for the fallback's share of the limit.
type SharedDecision struct {
	Verdict    SharedVerdict
	Remaining  int64
	RetryAfter time.Duration
	Replicas   int
}

// Resolve makes a file name from a filter's settings relative to the config file's directory.
func (e Env) Resolve(name string) string {
	if name == "" || filepath.IsAbs(name) || e.Dir == "" {
		return name
	}
	return filepath.Join(e.Dir, name)
}

// Counter counts events. weir's are Prometheus counters.
type Counter interface{ Inc() }

// Counters are what filters count, resolved for their route when the snapshot is compiled.
type Counters struct {
	// RateLimited counts requests a rate_limit refused.
	RateLimited Counter
	// RateLimitUnshared counts requests a global rate_limit decided without Redis; RateLimitLeases
	// the requests for tokens it sent to Redis.
	RateLimitUnshared Counter
	RateLimitLeases   Counter
	// BreakerTransition returns the counter of a circuit_breaker's transitions into state (closed,
	// half-open, open).
	BreakerTransition func(state string) Counter
	// Fallback returns the counter of a fallback's answers for cause (a status or a named cause).
	Fallback func(cause string) Counter
	// Mirror returns the counter of a mirror's copies by result (sent, dropped, skipped, failed).
	Mirror func(result string) Counter
	// Cache returns the counter of a cache's answers by result (hit, stale, revalidated, miss,
	// bypass), or of its other events: coalesced (a request served by another's upstream call),
	// evicted (an entry dropped for room), refresh_failed (a background refresh that got no answer).
	Cache func(event string) Counter
}

// CacheEvent is the counter of a cache's event; one that counts nothing without metrics.
func (c Counters) CacheEvent(event string) Counter {
	if c.Cache == nil {
		return NopCounter{}
	}
	return c.Cache(event)
}

// Mirrored is the counter of a mirror's copies with result; one that counts nothing without metrics.
func (c Counters) Mirrored(result string) Counter {
	if c.Mirror == nil {
		return NopCounter{}
	}
	return c.Mirror(result)
}

// Sender sends one request to an upstream and reads the answer into resp.
type Sender func(req *fasthttp.Request, resp *fasthttp.Response, clientIP []byte) error

// UpstreamSettings is implemented by filter settings that name upstreams: the gateway adds those
// upstreams' settings to the filter's identity, so that a reload changing them rebuilds the filter.
type UpstreamSettings interface{ UpstreamNames() []string }

// NopCounter counts nothing: what a filter counts with when weir runs without metrics.
type NopCounter struct{}

func (NopCounter) Inc() {}

func (c Counters) rateLimited() Counter {
	if c.RateLimited == nil {
		return NopCounter{}
	}
	return c.RateLimited
}

func (c Counters) rateLimitUnshared() Counter {
	if c.RateLimitUnshared == nil {
		return NopCounter{}
	}
	return c.RateLimitUnshared
}

func (c Counters) rateLimitLeases() Counter {
	if c.RateLimitLeases == nil {
		return NopCounter{}
	}
	return c.RateLimitLeases
}

func (c Counters) fallback(cause string) Counter {
	if c.Fallback == nil {
		return NopCounter{}
	}
	return c.Fallback(cause)
}

func (c Counters) breakerTransition(state string) Counter {
	if c.BreakerTransition == nil {
		return NopCounter{}
	}
	return c.BreakerTransition(state)
}

// ConfigError is a bad filter setting. Field is the setting's key path below the filter's name
// ("rate", "request_headers.set"), so the gateway can point at its line in the config file.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ConfigErrors flattens what a constructor returned (one ConfigError, or several joined with
// errors.Join) into its ConfigErrors.
func ConfigErrors(err error) []*ConfigError {
	var out []*ConfigError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if ce, ok := e.(*ConfigError); ok {
			out = append(out, ce)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, inner := range j.Unwrap() {
				walk(inner)
			}
			return
		}
		out = append(out, &ConfigError{Msg: e.Error()})
	}
	walk(err)
	return out
}
