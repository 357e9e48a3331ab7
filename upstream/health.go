package upstream

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// HealthCheck is a pool's active health check: a GET of Path on every target each Interval.
type HealthCheck struct {
	Path               string
	Interval           time.Duration
	Timeout            time.Duration
	HealthyThreshold   int        // consecutive passes that bring a failing target back
	UnhealthyThreshold int        // consecutive failures that take a target out
	Expected           [10]uint64 // bit set of passing statuses 0..639
}

// Passes reports whether status is one the check expects.
func (h *HealthCheck) Passes(status int) bool {
	return status >= 0 && status < 640 && h.Expected[status/64]&(1<<(status%64)) != 0
}

// Passive is outlier ejection: ConsecutiveFailures failed requests in a row take a target out of
// rotation for EjectionTime, doubled at each ejection in a row up to MaxEjectionTime. 0 failures turns
// it off.
type Passive struct {
	ConsecutiveFailures int
	EjectionTime        time.Duration
	MaxEjectionTime     time.Duration
}

// health is a target's state as the balancers see it. It lives in the Target, so it survives reloads
// that keep the target.
type health struct {
	down         atomic.Bool  // failed its active checks (targets start healthy)
	failures     atomic.Int32 // consecutive failed requests
	ejections    atomic.Int32 // ejections in a row, for the growing ejection time
	ejectedUntil atomic.Int64 // UnixNano; 0 when not ejected

	checkMu   sync.Mutex
	stopCheck context.CancelFunc // running active check, if any
}

// Available reports whether the target takes traffic at now (UnixNano).
func (t *Target) Available(now int64) bool {
	return !t.health.down.Load() && now >= t.health.ejectedUntil.Load()
}

// Ejected reports whether passive health has the target out of rotation at now.
func (t *Target) Ejected(now int64) bool { return now < t.health.ejectedUntil.Load() }

// Healthy reports whether the target passes its active checks (always true without them).
func (t *Target) Healthy() bool { return !t.health.down.Load() }

// observe feeds one request's outcome to passive health; ejections counts the target's ejections.
func (t *Target) observe(p *Passive, failed bool, now time.Time, log zerolog.Logger, ejections Counter) {
	h := &t.health
	if !failed {
		if h.failures.Load() != 0 {
			h.failures.Store(0)
		}
		if h.ejections.Load() != 0 && now.UnixNano() >= h.ejectedUntil.Load() {
			h.ejections.Store(0)
		}
		return
	}
	n0 := h.failures.Add(1)
	// Only the request that reaches the threshold ejects; concurrent ones past it do not eject again.
	if p.ConsecutiveFailures <= 0 || n0 < int32(p.ConsecutiveFailures) || !h.failures.CompareAndSwap(n0, 0) {
		return
	}
	n := h.ejections.Add(1)
	d := p.EjectionTime << min(n-1, 20)
	if d > p.MaxEjectionTime || d <= 0 {
		d = p.MaxEjectionTime
	}
	h.ejectedUntil.Store(now.Add(d).UnixNano())
	ejections.Inc()
	log.Warn().Str("upstream", t.Addr).Int32("ejections_in_a_row", n).Dur("for", d).
		Msg("upstream target ejected after consecutive failures")
}

// startChecks runs hc against t until stop is called, unless a check already runs. Checks have a
// connection of their own: through the traffic pool, a target saturated by real requests would fail
// its check (no free connection) exactly when its capacity is needed.
func (t *Target) startChecks(hc *HealthCheck, log zerolog.Logger) {
	h := &t.health
	h.checkMu.Lock()
	defer h.checkMu.Unlock()
	if h.stopCheck != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stopCheck = cancel
	go t.runChecks(ctx, hc, log)
}

// stopChecks ends the target's active check, if one runs.
func (t *Target) stopChecks() {
	h := &t.health
	h.checkMu.Lock()
	defer h.checkMu.Unlock()
	if h.stopCheck != nil {
		h.stopCheck()
		h.stopCheck = nil
	}
}

func (t *Target) runChecks(ctx context.Context, hc *HealthCheck, log zerolog.Logger) {
	c := t.client
	client := &fasthttp.HostClient{
		Addr: c.Addr, IsTLS: c.IsTLS, TLSConfig: c.TLSConfig, DialTimeout: c.DialTimeout, MaxConns: 1,
		MaxIdleConnDuration: c.MaxIdleConnDuration, ReadBufferSize: c.ReadBufferSize, MaxResponseBodySize: 64 << 10,
		NoDefaultUserAgentHeader: true, SecureErrorLogMessage: true,
	}
	defer client.CloseIdleConnections()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	tick := time.NewTicker(hc.Interval)
	defer tick.Stop()
	passes, fails := 0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		req.Reset()
		req.SetRequestURI(t.scheme + "://" + t.Addr + hc.Path)
		req.Header.Set(fasthttp.HeaderUserAgent, "weir-health-check")
		err := client.DoTimeout(req, resp, hc.Timeout)
		ok := err == nil && hc.Passes(resp.StatusCode())
		if ok {
			passes, fails = passes+1, 0
			// A passing check also ends a passive ejection: the target answers again.
			t.health.ejectedUntil.Store(0)
			if t.health.down.Load() && passes >= hc.HealthyThreshold {
				t.health.down.Store(false)
				log.Info().Str("upstream", t.Addr).Msg("upstream target healthy again")
			}
		} else {
			passes, fails = 0, fails+1
			if !t.health.down.Load() && fails >= hc.UnhealthyThreshold {
				t.health.down.Store(true)
				ev := log.Warn().Str("upstream", t.Addr)
				if err != nil {
					ev = ev.Err(err)
				} else {
					ev = ev.Int("status", resp.StatusCode())
				}
				ev.Msg("upstream target unhealthy: failed its health checks")
			}
		}
	}
}
