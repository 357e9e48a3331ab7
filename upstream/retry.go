package upstream

import (
	"errors"
	"math"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Retry is a pool's retry policy.
type Retry struct {
	// Attempts is the most tries a request gets, the first included; 1 means no retry.
	Attempts int
	// OnConnect retries requests whose connection could not be made (they never reached a target, so
	// any method may be retried) and idempotent requests whose connection closed before any response
	// (a target going down mid-request).
	OnConnect bool
	// OnTimeout and Statuses retry idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE) that timed
	// out or got one of these statuses.
	OnTimeout bool
	Statuses  [10]uint64 // bit set of statuses 0..639
	// BudgetRatio caps retries at this share of the pool's requests over the last budgetWindow, plus
	// MinPerSecond, so that an outage does not multiply the load on what is left.
	BudgetRatio  float64
	MinPerSecond int
	// Deadline bounds a request's attempts together; each attempt still gets at most the pool's Timeout.
	Deadline time.Duration
}

func (r *Retry) onStatus(status int) bool {
	return status >= 0 && status < 640 && r.Statuses[status/64]&(1<<(status%64)) != 0
}

// budgetWindow is the period the retry budget looks back over, in one-second buckets.
const budgetWindow = 10

// processStart anchors budget seconds to the monotonic clock: a wall-clock step must not freeze or
// wipe the window.
var processStart = time.Now()

func budgetSecond(now time.Time) int64 { return int64(now.Sub(processStart) / time.Second) }

// retryBudget counts a pool's requests and retries per second over the last budgetWindow seconds: a
// sliding window of one-second buckets.
type retryBudget struct {
	mu       sync.Mutex
	head     int64 // the latest second counted; buckets hold head-budgetWindow+1 .. head
	requests [budgetWindow]int
	retries  [budgetWindow]int
}

func (b *retryBudget) slot(now int64) int {
	if now > b.head {
		// Clear the buckets of the seconds that left the window (all of them after a long pause).
		for s := max(b.head+1, now-budgetWindow+1); s <= now; s++ {
			i := int(s % budgetWindow)
			b.requests[i], b.retries[i] = 0, 0
		}
		b.head = now
	}
	return int(b.head % budgetWindow)
}

func (b *retryBudget) request(now int64) {
	b.mu.Lock()
	b.requests[b.slot(now)]++
	b.mu.Unlock()
}

// allow takes a retry from the budget if it has one.
func (b *retryBudget) allow(now int64, ratio float64, minPerSecond int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := b.slot(now)
	requests, retries := 0, 0
	for k := range b.requests {
		requests += b.requests[k]
		retries += b.retries[k]
	}
	if float64(retries) >= math.Floor(ratio*float64(requests))+float64(minPerSecond*budgetWindow) {
		return false
	}
	b.retries[i]++
	return true
}

func idempotent(req *fasthttp.Request) bool {
	h := &req.Header
	return h.IsGet() || h.IsHead() || h.IsOptions() || h.IsPut() || h.IsDelete()
}

// ErrNoTarget means no target could take the request: all were tried.
var ErrNoTarget = errors.New("upstream: no target left to try")

// minAttempt is the least time worth giving a retry: with less left before the deadline, the last
// real answer is kept instead of a doomed attempt's timeout.
const minAttempt = 20 * time.Millisecond

// Outcome is what became of a request Do sent.
type Outcome struct {
	Target   *Target // the last target tried; nil if none was
	Attempts int
	// Elapsed runs from Do's call to the end of its last attempt, retries included. Do reads the clock
	// once per attempt and once at the start, and its caller takes the upstream time from here rather
	// than reading the clock around it: on a virtual machine each read costs tens of nanoseconds.
	Elapsed time.Duration
	// Tunnel is set when the upstream switched protocols (a WebSocket): the caller relays it or
	// closes it.
	Tunnel *Tunnel
	// Retried are the first attempts that were retried, for the request's trace; NRetried counts them
	// all.
	Retried  [MaxNotedRetries]RetriedAttempt
	NRetried int
}

// MaxNotedRetries bounds the retried attempts an Outcome describes.
const MaxNotedRetries = 3

// RetriedAttempt is an attempt that failed and was retried.
type RetriedAttempt struct {
	Target *Target
	Status int    // its status answer; 0 if it got none
	Reason string // why it failed when it got no answer
	At     time.Time
}

// Do sends req to the pool and reads the answer into resp, retrying on other targets as the policy
// allows, and describes what happened in out (a pointer, not a result: the Outcome is a quarter
// kilobyte, and a copy of it in each caller's frame widens every request's stack). It returns the
// last attempt's error. A retried status answer is discarded; the last one is
// kept for the client. timeout, when not zero, replaces the pool's per-attempt timeout (a route's
// own).
func (p *Pool) Do(req *fasthttp.Request, resp *fasthttp.Response, clientIP []byte, timeout time.Duration, out *Outcome) (err error) {
	*out = Outcome{}
	perAttempt, total := p.timeout, p.retry.Deadline
	if timeout > 0 {
		perAttempt = timeout
		if !p.deadlineSet {
			total = time.Duration(p.retry.Attempts) * timeout // the default, attempts × timeout
		}
	}
	start := time.Now()
	now := start
	p.budget.request(budgetSecond(now))
	deadline := now.Add(total)
	// HTTP/1.0 allows a request without Host; the HTTP/1.1 it is forwarded as does not. Each attempt
	// then names its own target.
	noHost := len(req.Header.Host()) == 0
	// Writing a streamed body closes it (req.BodyStream is nil afterwards), so it is noted now.
	up, _ := req.BodyStream().(*Upload)
	sel := selection{targets: p.Targets}
	for {
		sel.now = now.UnixNano()
		i := p.pick(req, clientIP, &sel)
		if i < 0 {
			return ErrNoTarget // Elapsed is as of the last attempt's end, or 0 if none was made
		}
		t := p.Targets[i]
		sel.tried |= 1 << i // pools hold at most 64 targets (the gateway checks)
		out.Target, out.Attempts = t, out.Attempts+1
		counters := &p.counters[i]
		counters.Attempts.Inc()
		if noHost {
			req.Header.SetHost(t.Addr)
		}
		timeout := min(perAttempt, deadline.Sub(now))
		out.Tunnel, err = p.forwardTo(req, resp, t, now, timeout)
		now = time.Now()
		out.Elapsed = now.Sub(start)

		failure := Failure{}
		status := resp.StatusCode()
		if err != nil {
			failure = Classify(err)
			switch failure {
			case failConnect, failConnectTimeout, failTLS:
				counters.ConnectErrors.Inc()
			case failTimeout:
				counters.Timeouts.Inc()
			case failNoConns: // weir's own limit, not the target's
			default:
				counters.OtherErrors.Inc()
			}
		} else if status >= 500 {
			counters.StatusErrors.Inc()
		}
		// A timeout cut short by the deadline says nothing about the target.
		judged := !failure.Local && !(failure == failTimeout && timeout < p.timeout)
		if judged {
			t.observe(&p.passive, err != nil || status >= 500, now, p.log, counters.Ejections)
		}

		if out.Tunnel != nil || out.Attempts >= p.retry.Attempts || deadline.Sub(now) < minAttempt || !p.retryable(req, up, err, failure, status) ||
			!p.budget.allow(budgetSecond(now), p.retry.BudgetRatio, p.retry.MinPerSecond) {
			return err
		}
		if sel.tried == uint64(1)<<len(p.Targets)-1 {
			sel.tried = 0 // every target was tried: a retry may go to any
		}
		p.retries.Inc()
		if out.NRetried < MaxNotedRetries {
			note := RetriedAttempt{Target: t, Status: status, Reason: failure.Reason, At: now}
			if err != nil {
				note.Status = 0 // resp holds no answer
			}
			out.Retried[out.NRetried] = note
		}
		out.NRetried++
		resp.Reset()
	}
}

// NoneAvailable reports whether every target of the pool is out of rotation (ejected or failing its
// health checks).
func (p *Pool) NoneAvailable() bool {
	now := time.Now().UnixNano()
	for _, t := range p.Targets {
		if t.Available(now) {
			return false
		}
	}
	return true
}

func (p *Pool) retryable(req *fasthttp.Request, up *Upload, err error, f Failure, status int) bool {
	r := &p.retry
	if up != nil && (up.Started() || err == nil || !(f == failConnect || f == failConnectTimeout || f == failTLS)) {
		// Only a connection that could not be made leaves a streamed body unread; any other attempt
		// wrote some of it, and there is no copy.
		return false
	}
	switch {
	case err == nil:
		return r.onStatus(status) && idempotent(req)
	case f == failConnect, f == failConnectTimeout, f == failTLS:
		return r.OnConnect
	case f == failClosed:
		return r.OnConnect && idempotent(req)
	case f == failTimeout:
		return r.OnTimeout && idempotent(req)
	}
	return false
}

// pick chooses the target for one attempt: a healthy, untried one as the balancer would. Only when no
// target at all is healthy does it fall back to any untried one, so that a pool whose targets all
// look unhealthy spreads its traffic over all of them rather than failing everything; a retry is never
// sent to a known-down target while others are healthy.
func (p *Pool) pick(req *fasthttp.Request, clientIP []byte, sel *selection) int {
	key := p.hashKeyOf(req, clientIP)
	sel.anyHealth = false
	if i := p.balancer.pick(key, sel); i >= 0 {
		if p.degraded.Load() {
			p.degraded.Store(false)
			p.log.Info().Str("pool", p.Name).Msg("healthy upstream targets again")
		}
		return i
	}
	if !p.NoneAvailable() {
		return -1 // the healthy targets were all tried for this request
	}
	if !p.degraded.Load() {
		p.degraded.Store(true)
		p.log.Warn().Str("pool", p.Name).Msg("no healthy upstream target: spreading traffic over all of them")
	}
	sel.anyHealth = true
	return p.balancer.pick(key, sel)
}
