package filters

import (
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/tracing"
)

// CircuitBreakerConfig is the `circuit_breaker` filter: one breaker per route (sony/gobreaker v2).
type CircuitBreakerConfig struct {
	// ConsecutiveFailures trips the breaker after this many failures in a row; 0 turns the rule off.
	ConsecutiveFailures int `yaml:"consecutive_failures" default:"5"`
	// FailureRatio trips the breaker when this share of the requests in Window failed (0 < ratio <= 1),
	// once MinRequests were seen; absent or 0 turns the rule off.
	FailureRatio float64 `yaml:"failure_ratio"`
	// Window is the rolling period FailureRatio is measured over.
	Window time.Duration `yaml:"window" default:"10s"`
	// MinRequests is how many requests Window must hold before FailureRatio can trip the breaker.
	MinRequests int `yaml:"min_requests" default:"20"`
	// OpenTimeout is how long the breaker stays open (every request gets 503) before it lets probes
	// through.
	OpenTimeout time.Duration `yaml:"open_timeout" default:"30s"`
	// HalfOpenRequests is how many probes may run at once after OpenTimeout; that many successes in a
	// row close the breaker, one failure opens it again.
	HalfOpenRequests int `yaml:"half_open_requests" default:"1"`
	// FailureStatuses are the upstream statuses that count as failures, besides transport errors and
	// timeouts. Absent means 500, 502, 503 and 504; an empty list means none.
	FailureStatuses []int `yaml:"failure_statuses"`
}

var defaultFailureStatuses = []int{500, 502, 503, 504}

var (
	errUpstreamFailed = errors.New("upstream failed")
	// errNotJudged marks a request a later step rejected: it says nothing about the upstream.
	errNotJudged = errors.New("not judged")
)

// CircuitBreaker is a compiled circuit_breaker filter.
type CircuitBreaker struct {
	route       string
	parts       []*breakerPart // one per pool of the route's split (Env.Splits), else one
	openTimeout time.Duration
	now         func() time.Time
	failing     [10]uint64 // bit set of failure statuses 0..639
}

// breakerPart is the breaker of one pool: a failing canary opens its own, not the stable pool's.
type breakerPart struct {
	cb       *gobreaker.CircuitBreaker[struct{}]
	openedAt atomic.Int64 // UnixNano of the last transition to open, for Retry-After
}

// NewCircuitBreaker validates cfg and builds the filter.
func NewCircuitBreaker(cfg CircuitBreakerConfig, env Env) (*CircuitBreaker, error) {
	var errs []error
	if cfg.ConsecutiveFailures < 0 {
		errs = append(errs, fieldErr("consecutive_failures", "must be 0 (off) or more"))
	}
	if cfg.FailureRatio < 0 || cfg.FailureRatio > 1 {
		errs = append(errs, fieldErr("failure_ratio", "must be between 0 (off) and 1, got %g", cfg.FailureRatio))
	}
	if cfg.ConsecutiveFailures == 0 && cfg.FailureRatio == 0 {
		errs = append(errs, fieldErr("consecutive_failures", "with failure_ratio off too, the breaker could never trip"))
	}
	if cfg.FailureRatio > 0 {
		if cfg.Window <= 0 {
			errs = append(errs, fieldErr("window", "must be more than zero"))
		}
		if cfg.MinRequests < 1 {
			errs = append(errs, fieldErr("min_requests", "must be 1 or more"))
		}
	}
	if cfg.OpenTimeout <= 0 {
		errs = append(errs, fieldErr("open_timeout", "must be more than zero"))
	}
	if cfg.HalfOpenRequests < 1 {
		errs = append(errs, fieldErr("half_open_requests", "must be 1 or more"))
	}
	b := &CircuitBreaker{openTimeout: cfg.OpenTimeout, now: env.Now, route: env.Route}
	transitions := map[gobreaker.State]Counter{}
	for _, s := range []gobreaker.State{gobreaker.StateClosed, gobreaker.StateHalfOpen, gobreaker.StateOpen} {
		transitions[s] = env.Counters.breakerTransition(s.String())
	}
	statuses := cfg.FailureStatuses
	if statuses == nil {
		statuses = defaultFailureStatuses
	}
	for i, s := range statuses {
		if s < 100 || s > 599 {
			errs = append(errs, fieldErr("failure_statuses["+strconv.Itoa(i)+"]", "%d is not an HTTP status", s))
			continue
		}
		b.failing[s/64] |= 1 << (s % 64)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	pools := env.Splits
	if len(pools) == 0 {
		pools = []string{""}
	}
	for _, pool := range pools {
		part := &breakerPart{}
		name := env.Route
		if pool != "" {
			name += " -> " + pool
		}
		st := gobreaker.Settings{
			Name:        name,
			MaxRequests: uint32(cfg.HalfOpenRequests),
			Timeout:     cfg.OpenTimeout,
			IsSuccessful: func(err error) bool {
				return err == nil
			},
			IsExcluded: func(err error) bool { return err == errNotJudged },
			ReadyToTrip: func(c gobreaker.Counts) bool {
				if cfg.ConsecutiveFailures > 0 && c.ConsecutiveFailures >= uint32(cfg.ConsecutiveFailures) {
					return true
				}
				judged := c.TotalSuccesses + c.TotalFailures
				return cfg.FailureRatio > 0 && judged >= uint32(cfg.MinRequests) &&
					float64(c.TotalFailures) >= cfg.FailureRatio*float64(judged)
			},
			OnStateChange: func(name string, from, to gobreaker.State) {
				if to == gobreaker.StateOpen {
					part.openedAt.Store(b.now().UnixNano())
				}
				transitions[to].Inc()
				ev := env.Log.Warn().Str("route", env.Route)
				if pool != "" {
					ev = ev.Str("upstream", pool)
				}
				ev.Str("from", from.String()).Str("to", to.String()).Msg("circuit breaker state changed")
			},
		}
		if cfg.FailureRatio > 0 {
			st.Interval, st.BucketPeriod = cfg.Window, cfg.Window/10
		}
		part.cb = gobreaker.NewCircuitBreaker[struct{}](st)
		b.parts = append(b.parts, part)
	}
	return b, nil
}

// State is the breaker's current state, for tests and metrics: the most open of its pools'.
func (b *CircuitBreaker) State() gobreaker.State {
	worst := gobreaker.StateClosed
	for _, p := range b.parts {
		switch st := p.cb.State(); {
		case st == gobreaker.StateOpen:
			return st
		case st == gobreaker.StateHalfOpen:
			worst = st
		}
	}
	return worst
}

// PoolState is the state of the breaker of the split's i-th pool.
func (b *CircuitBreaker) PoolState(i int) gobreaker.State { return b.parts[i].cb.State() }

// Route is the name of the route the breaker guards.
func (b *CircuitBreaker) Route() string { return b.route }

// Wrap implements Filter.
func (b *CircuitBreaker) Wrap(next Handler) Handler {
	return &breakerStep{CircuitBreaker: b, next: next}
}

type breakerStep struct {
	*CircuitBreaker
	next Handler
}

func (s *breakerStep) Serve(x *Exchange) {
	// Execute reports the outcome of every request it admitted, even when the rest of the chain
	// panics (it records a failure and re-panics), so a half-open probe can never go unreported and
	// leave the breaker stuck. The closure does not escape: no allocation.
	part := s.parts[0]
	if x.Split > 0 && x.Split < len(s.parts) {
		part = s.parts[x.Split]
	}
	_, err := part.cb.Execute(func() (struct{}, error) {
		s.next.Serve(x)
		return struct{}{}, s.outcome(x)
	})
	var retryAfter int64
	switch err {
	case gobreaker.ErrOpenState:
		remaining := s.openTimeout - s.now().Sub(time.Unix(0, part.openedAt.Load()))
		retryAfter = int64((max(remaining, 0) + time.Second - 1) / time.Second)
	case gobreaker.ErrTooManyRequests: // half-open and all probe slots taken
		retryAfter = 1
	default:
		return
	}
	if x.Trace.Sampled {
		state := "open"
		if err == gobreaker.ErrTooManyRequests {
			state = "half-open"
		}
		x.Trace.Event(tracing.Event{Name: "circuit_open", At: s.now(), Reason: "circuit breaker " + state})
	}
	var buf [20]byte
	x.Ctx.Response.Header.SetBytesV(fasthttp.HeaderRetryAfter, strconv.AppendInt(buf[:0], max(retryAfter, 1), 10))
	x.Reject(fasthttp.StatusServiceUnavailable, ReasonCircuitOpen)
}

// outcome judges what the rest of the chain did with an admitted request.
func (s *breakerStep) outcome(x *Exchange) error {
	switch {
	case x.Failed:
		return errUpstreamFailed
	case !x.Answered():
		return errNotJudged
	}
	if st := x.Ctx.Response.StatusCode(); st >= 0 && st < 640 && s.failing[st/64]&(1<<(st%64)) != 0 {
		return errUpstreamFailed
	}
	return nil
}
