package filters

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"
)

// RateLimitConfig is the `rate_limit` filter: a token bucket per key (golang.org/x/time/rate).
type RateLimitConfig struct {
	// Rate is how many requests are allowed per Per, on average. Required.
	Rate float64 `yaml:"rate"`
	// Per is the period Rate refers to.
	Per time.Duration `yaml:"per" default:"1s"`
	// Burst is the bucket size: how many requests may arrive at once. Default: Rate, rounded up.
	Burst int `yaml:"burst"`
	// Key is what gets its own bucket: "route" (one bucket for the route), "client_ip" (IPv6 clients
	// by /64), "header:NAME" (requests without the header share one bucket), or "consumer" (the
	// caller an earlier authenticating filter identified; requests without one share one bucket).
	Key string `yaml:"key" default:"route"`
	// MaxKeys bounds the per-key table. When it is full, new keys share one overflow bucket rather than
	// evicting active ones (an attacker spraying keys must not hand legitimate clients a fresh burst).
	MaxKeys int `yaml:"max_keys" default:"100000"`
	// Scope is "local" (each replica limits on its own) or "global" (the limit is shared by every
	// replica using the config's redis, taken from it in leases).
	Scope string `yaml:"scope" default:"local"`
	// OnRedisError is what a global limit does while Redis cannot be reached: "local" (each replica
	// limits to its share: rate divided by the replicas it last saw, or the whole rate if it saw none),
	// "allow" (no limit) or "deny" (503).
	OnRedisError string `yaml:"on_redis_error" default:"local"`
	// LeaseWindow sizes a global limit's leases: a replica takes from Redis about this much of its own
	// recent traffic at once (at most a tenth of burst). Longer: fewer Redis round trips; shorter:
	// fewer tokens held unused by a replica whose traffic stops.
	LeaseWindow time.Duration `yaml:"lease_window" default:"100ms"`
}

// Global reports whether the limit is shared through Redis (scope: global).
func (c RateLimitConfig) Global() bool { return c.Scope == "global" }

// RateLimitPolicy names the quota policy in the RateLimit-Policy and RateLimit response fields
// (draft-ietf-httpapi-ratelimit-headers-11).
const RateLimitPolicy = "default"

type limitKey uint8

const (
	keyRoute limitKey = iota
	keyClientIP
	keyHeader
	keyConsumer
)

// RateLimit is a compiled rate_limit filter.
type RateLimit struct {
	limit  rate.Limit
	burst  int
	key    limitKey
	header string
	now    func() time.Time
	route  *rate.Limiter // key: route
	table  *bucketTable  // other keys
	policy []byte        // the RateLimit-Policy value, fixed for the filter's life
	// rejected counts refused requests.
	rejected Counter

	// shared is the global limit (scope: global), nil for a local one; onError its on_redis_error, and
	// fallback the local share used meanwhile.
	shared   SharedLimiter
	unshared Counter
	onError  string
	maxKeys  int
	fallback atomic.Pointer[fallbackLimits]
}

// fallbackLimits are the local buckets of a global limit while Redis is away: rate ÷ replicas.
type fallbackLimits struct {
	replicas int
	route    *rate.Limiter
	table    *bucketTable
}

// NewRateLimit validates cfg and builds the filter.
func NewRateLimit(cfg RateLimitConfig, env Env) (*RateLimit, error) {
	var errs []error
	if cfg.Rate <= 0 || math.IsInf(cfg.Rate, 0) || math.IsNaN(cfg.Rate) {
		errs = append(errs, fieldErr("rate", "must be more than 0 requests per %s", cfg.Per))
	}
	if cfg.Per <= 0 {
		errs = append(errs, fieldErr("per", "must be more than zero"))
	}
	if cfg.Burst < 0 {
		errs = append(errs, fieldErr("burst", "must be 1 or more (or absent for the default, rate rounded up)"))
	}
	if cfg.MaxKeys < 1 {
		errs = append(errs, fieldErr("max_keys", "must be 1 or more"))
	}
	r := &RateLimit{now: env.Now, rejected: env.Counters.rateLimited()}
	switch {
	case cfg.Key == "route":
		r.key = keyRoute
	case cfg.Key == "client_ip":
		r.key = keyClientIP
	case strings.HasPrefix(cfg.Key, "header:") && IsToken(cfg.Key[len("header:"):]):
		r.key, r.header = keyHeader, cfg.Key[len("header:"):]
	case cfg.Key == "consumer":
		r.key = keyConsumer
	default:
		errs = append(errs, fieldErr("key", "unknown key %q; use route, client_ip, header:NAME or consumer", cfg.Key))
	}
	switch cfg.Scope { // "" is the zero value of a config built in Go: the defaults
	case "", "local":
	case "global":
		if env.SharedLimits == nil {
			errs = append(errs, fieldErr("scope", "global needs a redis block (redis.addrs) to share the limit through"))
		}
	default:
		errs = append(errs, fieldErr("scope", "unknown scope %q; use local (each replica on its own) or global (shared through redis)", cfg.Scope))
	}
	switch cfg.OnRedisError {
	case "", "local", "allow", "deny":
	default:
		errs = append(errs, fieldErr("on_redis_error", "unknown value %q; use local, allow or deny", cfg.OnRedisError))
	}
	if cfg.Scope == "global" && (cfg.LeaseWindow <= 0 || cfg.LeaseWindow > time.Minute) {
		errs = append(errs, fieldErr("lease_window", "must be more than zero and at most 1m"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r.limit = rate.Limit(cfg.Rate / cfg.Per.Seconds())
	r.burst = cfg.Burst
	if r.burst == 0 {
		r.burst = int(math.Ceil(cfg.Rate))
	}
	if r.key == keyRoute {
		r.route = rate.NewLimiter(r.limit, r.burst)
	} else {
		r.table = newBucketTable(r.limit, r.burst, cfg.MaxKeys)
	}
	r.policy = policyValue(cfg.Rate, cfg.Per)
	if cfg.Scope == "global" {
		id := sha256.Sum256(fmt.Appendf(nil, "%s|%v|%s|%d|%s", env.Route, cfg.Rate, cfg.Per, r.burst, cfg.Key))
		shared, err := env.SharedLimits(SharedLimitSpec{ID: env.Route + ":" + hex.EncodeToString(id[:8]),
			PerSecond: float64(r.limit), Burst: r.burst, MaxKeys: cfg.MaxKeys, LeaseWindow: cfg.LeaseWindow,
			Leases: env.Counters.rateLimitLeases()})
		if err != nil {
			return nil, fieldErr("scope", "%v", err)
		}
		r.shared, r.onError, r.maxKeys, r.unshared = shared, cfg.OnRedisError, cfg.MaxKeys, env.Counters.rateLimitUnshared()
		r.route, r.table = nil, nil // the fallback's buckets are made when they are needed
	}
	return r, nil
}

// policyValue states the quota as q requests per w seconds, both whole numbers (the draft's only
// form): the configured rate and period when they are whole already, else the smallest whole window
// in which the rate comes to a whole number of requests (3 per 2.5s is q=6;w=5), else the nearest
// below.
func policyValue(perPeriod float64, per time.Duration) []byte {
	q, w := perPeriod, per.Seconds()
	if w < 1 || w != math.Trunc(w) || q != math.Trunc(q) {
		r := perPeriod / per.Seconds()
		q, w = math.Floor(r), 1
		for s := 1.0; s <= 86400; s++ {
			if x := r * s; x >= 1 && math.Abs(x-math.Round(x)) < 1e-9 {
				q, w = math.Round(x), s
				break
			}
		}
		if q < 1 {
			w = math.Ceil(1 / r)
			q = math.Floor(r * w)
		}
	}
	b := []byte(`"` + RateLimitPolicy + `";q=`)
	b = strconv.AppendInt(b, int64(q), 10)
	b = append(b, ";w="...)
	return strconv.AppendInt(b, int64(w), 10)
}

// Wrap implements Filter.
func (r *RateLimit) Wrap(next Handler) Handler { return &rateLimitStep{RateLimit: r, next: next} }

type rateLimitStep struct {
	*RateLimit
	next Handler
}

func (s *rateLimitStep) Serve(x *Exchange) {
	now := s.now()
	var lim *rate.Limiter
	if s.shared == nil {
		lim = s.limiter(x, now)
	} else if lim = s.serveShared(x, now); lim == nil {
		return
	}
	// AllowN takes a token only when one is there: a rejected request costs nothing, so it never pushes
	// the client's next allowed request further out.
	if !lim.AllowN(now, 1) {
		s.refuse(x, secondsUntil(lim, now, 1))
		return
	}
	s.next.Serve(x)
	// After next: the upstream's response has replaced whatever was set before.
	s.setHeaders(&x.Ctx.Response.Header, int64(lim.TokensAt(now)), secondsUntil(lim, now, float64(s.burst)))
}

// serveShared decides x by the global limit. While Redis is unavailable and on_redis_error is local,
// it returns the local bucket to decide by instead; otherwise nil, x served or refused.
func (s *rateLimitStep) serveShared(x *Exchange, now time.Time) *rate.Limiter {
	var buf [16]byte
	d := s.shared.Take(s.sharedKey(buf[:0], x), now)
	switch d.Verdict {
	case SharedAllowed:
		s.next.Serve(x)
		s.setHeaders(&x.Ctx.Response.Header, d.Remaining, int64(math.Ceil(float64(int64(s.burst)-d.Remaining)/float64(s.limit))))
		return nil
	case SharedRefused:
		s.refuse(x, int64((d.RetryAfter+time.Second-1)/time.Second))
		return nil
	}
	s.unshared.Inc()
	switch s.onError {
	case "allow":
		s.next.Serve(x)
		return nil
	case "deny":
		x.Reject(fasthttp.StatusServiceUnavailable, ReasonLimiterUnavailable)
		return nil
	}
	return s.fallbackLimiter(x, now, d.Replicas)
}

// refuse answers 429, telling the client to come back in wait seconds.
func (s *rateLimitStep) refuse(x *Exchange, wait int64) {
	wait = max(wait, 1)
	s.setHeaders(&x.Ctx.Response.Header, 0, wait)
	var buf [20]byte
	x.Ctx.Response.Header.SetBytesV(fasthttp.HeaderRetryAfter, strconv.AppendInt(buf[:0], wait, 10))
	x.Reject(fasthttp.StatusTooManyRequests, ReasonRateLimited)
	s.rejected.Inc()
}

// sharedKey is the request's key for a global limit: the shared limiter digests it.
func (s *rateLimitStep) sharedKey(dst []byte, x *Exchange) []byte {
	switch s.key {
	case keyClientIP:
		return clientKey(dst, x)
	case keyHeader:
		return x.Ctx.Request.Header.Peek(s.header)
	case keyConsumer:
		return x.Consumer
	}
	return dst
}

// fallbackLimiter is the request's bucket in the local share of a global limit, remade when the
// number of replicas changes.
func (s *rateLimitStep) fallbackLimiter(x *Exchange, now time.Time, replicas int) *rate.Limiter {
	replicas = max(replicas, 1)
	fb := s.fallback.Load()
	if fb == nil || fb.replicas != replicas {
		limit := s.limit / rate.Limit(replicas)
		burst := max(s.burst/replicas, 1)
		fb = &fallbackLimits{replicas: replicas}
		if s.key == keyRoute {
			fb.route = rate.NewLimiter(limit, burst)
		} else {
			fb.table = newBucketTable(limit, burst, s.maxKeys)
		}
		s.fallback.Store(fb)
	}
	return s.bucket(fb.route, fb.table, x, now)
}

// limiter finds the bucket for the request's key.
func (s *rateLimitStep) limiter(x *Exchange, now time.Time) *rate.Limiter {
	return s.bucket(s.route, s.table, x, now)
}

// bucket is the request's bucket among route (key: route) or table (other keys).
func (s *rateLimitStep) bucket(route *rate.Limiter, table *bucketTable, x *Exchange, now time.Time) *rate.Limiter {
	var buf [16]byte
	switch s.key {
	case keyClientIP:
		return table.get(clientKey(buf[:0], x), now)
	case keyHeader:
		// A request without the header gets the empty key: such requests share one bucket.
		return table.get(table.digestKey(buf[:0], x.Ctx.Request.Header.Peek(s.header)), now)
	case keyConsumer:
		return table.get(table.digestKey(buf[:0], x.Consumer), now)
	}
	return route
}

// clientKey is the client's address as bytes, IPv6 cut to its /64: one host usually holds a whole
// /64, so keying on full addresses would give it 2^64 buckets.
func clientKey(dst []byte, x *Exchange) []byte {
	a := x.Client
	switch {
	case a.Is4():
		b := a.As4()
		return append(dst, b[:]...)
	case a.Is6():
		b := a.As16()
		return append(dst, b[:8]...)
	}
	return dst
}

// secondsUntil is how many whole seconds, rounded up, until lim holds want tokens.
func secondsUntil(lim *rate.Limiter, now time.Time, want float64) int64 {
	missing := want - lim.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	return int64(math.Ceil(missing / float64(lim.Limit())))
}

// The RateLimit fields' names as fasthttp normalizes them (what SetBytesV sent), for SetCanonical:
// every response through a rate_limit carries both, and this skips normalizing them each time.
var (
	nameRateLimitPolicy = []byte("Ratelimit-Policy")
	nameRateLimit       = []byte("Ratelimit")
)

// setHeaders writes the RateLimit-Policy and RateLimit fields.
func (s *rateLimitStep) setHeaders(h *fasthttp.ResponseHeader, remaining, reset int64) {
	h.SetCanonical(nameRateLimitPolicy, s.policy)
	var buf [64]byte
	v := append(buf[:0], `"`+RateLimitPolicy+`";r=`...)
	v = strconv.AppendInt(v, max(remaining, 0), 10)
	v = append(v, ";t="...)
	v = strconv.AppendInt(v, reset, 10)
	h.SetCanonical(nameRateLimit, v)
}
