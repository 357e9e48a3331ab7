package gateway

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
	"github.com/weir-gateway/weir/upstream"
)

// switchableBackend answers with the status it is currently set to and counts the requests it saw.
type switchableBackend struct {
	addr   string
	status atomic.Int64
	hits   atomic.Int64
}

func startSwitchableBackend(t *testing.T, status int) *switchableBackend {
	b := &switchableBackend{}
	b.status.Store(int64(status))
	b.addr = startBackend(t, func(ctx *fasthttp.RequestCtx) {
		b.hits.Add(1)
		ctx.SetStatusCode(int(b.status.Load()))
	})
	return b
}

// filterConfig is one route /{rest:*} to one target with the given filter list (YAML, indented for
// the route's filters key).
func filterConfig(target, filterYAML string) string {
	return fmt.Sprintf(`upstreams:
  backend:
    targets: [{url: "http://%s"}]
routes:
  - name: r
    match: {path: "/{rest:*}"}
    upstream: backend
    filters:
%s`, target, filterYAML)
}

func startGatewayWith(t *testing.T, config string, opts Options) string {
	t.Helper()
	snap, err := CompileWith("test.yaml", []byte(config), opts)
	if err != nil {
		t.Fatalf("config does not compile:\n%v", err)
	}
	gw, _ := serveSnapshot(t, snap)
	return gw
}

// waitFor polls cond for up to 2 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 2*time.Second, what, cond)
}

// waitWithin polls cond every 10ms until it holds, failing the test after within.
func waitWithin(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// gobreaker reads time.Now itself (it has no clock hook), so breaker tests use a short open_timeout
// and wait for it instead of moving a fake clock.
func TestCircuitBreaker_TripsOnConsecutiveFailuresThenProbesAndCloses(t *testing.T) {
	b := startSwitchableBackend(t, 500)
	var events lockedBuffer
	gw := startGatewayWith(t, filterConfig(b.addr, `      - circuit_breaker: {consecutive_failures: 3, open_timeout: 200ms, half_open_requests: 2}
`), Options{Log: zerolog.New(&events)})

	for i := 0; i < 3; i++ {
		if s := get(t, gw, "/x").StatusCode(); s != 500 {
			t.Fatalf("failure %d: status %d, want the upstream's 500 relayed", i, s)
		}
	}
	resp := get(t, gw, "/x")
	if resp.StatusCode() != 503 || b.hits.Load() != 3 {
		t.Fatalf("after 3 failures: status %d with %d upstream hits, want 503 without contacting the upstream", resp.StatusCode(), b.hits.Load())
	}
	if e := decodeGatewayError(t, resp); e.Error != "circuit breaker open" {
		t.Errorf("reason %q", e.Error)
	}
	if ra := string(resp.Header.Peek("Retry-After")); ra != "1" {
		t.Errorf("Retry-After = %q, want 1 (200ms rounded up)", ra)
	}

	b.status.Store(200) // the upstream recovers
	time.Sleep(250 * time.Millisecond)
	for i := 0; i < 2; i++ { // two successful probes close it
		if s := get(t, gw, "/x").StatusCode(); s != 200 {
			t.Fatalf("probe %d: status %d, want 200", i, s)
		}
	}
	for i := 0; i < 5; i++ {
		if s := get(t, gw, "/x").StatusCode(); s != 200 {
			t.Fatalf("after closing: status %d", s)
		}
	}
	if b.hits.Load() != 3+2+5 {
		t.Errorf("upstream saw %d requests, want 10", b.hits.Load())
	}
	log := events.String()
	for _, tr := range []string{`"from":"closed","to":"open"`, `"from":"open","to":"half-open"`, `"from":"half-open","to":"closed"`} {
		if !strings.Contains(log, tr) {
			t.Errorf("no log line for transition %s in:\n%s", tr, log)
		}
	}
}

func TestCircuitBreaker_FailedProbeReopensAndTransportErrorsCount(t *testing.T) {
	// Retries and ejection off: this is about the breaker alone.
	cfg := strings.Replace(filterConfig(closedAddr(t), `      - circuit_breaker: {consecutive_failures: 2, open_timeout: 100ms}
`), "targets:", "retries: {attempts: 1}\n    passive_health: {consecutive_failures: 0}\n    targets:", 1)
	gw, _ := startGateway(t, cfg)
	for i := 0; i < 2; i++ {
		if s := get(t, gw, "/x").StatusCode(); s != 502 {
			t.Fatalf("status %d, want 502 from the unreachable target", s)
		}
	}
	if s := get(t, gw, "/x").StatusCode(); s != 503 {
		t.Fatalf("status %d, want 503: connection failures must trip the breaker", s)
	}
	time.Sleep(150 * time.Millisecond)
	if s := get(t, gw, "/x").StatusCode(); s != 502 {
		t.Fatalf("probe: status %d, want 502 (the probe reaches the still-dead target)", s)
	}
	if s := get(t, gw, "/x").StatusCode(); s != 503 {
		t.Fatalf("after a failed probe: status %d, want 503 (open again)", s)
	}
}

func TestCircuitBreaker_TripsOnFailureRatioOnceMinRequestsSeen(t *testing.T) {
	var n atomic.Int64
	addr := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if n.Add(1)%2 == 0 {
			ctx.SetStatusCode(503)
		}
	})
	gw, _ := startGateway(t, filterConfig(addr, `      - circuit_breaker: {consecutive_failures: 0, failure_ratio: 0.5, window: 10s, min_requests: 10, open_timeout: 1m}
`))
	statuses := ""
	for i := 0; i < 12; i++ {
		statuses += fmt.Sprint(get(t, gw, "/x").StatusCode()/100, " ")
	}
	// Half of the requests fail, never two in a row; the ratio rule trips at the 10th request.
	if want := "2 5 2 5 2 5 2 5 2 5 5 5 "; statuses != want {
		t.Fatalf("status classes %q, want %q", statuses, want)
	}
	if n.Load() != 10 {
		t.Errorf("upstream saw %d requests, want 10", n.Load())
	}
}

func TestCircuitBreaker_PanicDuringProbeIsAFailureNotAStuckHalfOpen(t *testing.T) {
	b := startSwitchableBackend(t, 500)
	snap, err := Compile("test.yaml", []byte(oneRouteConfig("", b.addr)))
	if err != nil {
		t.Fatal(err)
	}
	breaker, err := filters.NewCircuitBreaker(filters.CircuitBreakerConfig{
		ConsecutiveFailures: 1, OpenTimeout: 100 * time.Millisecond, HalfOpenRequests: 1,
	}, filters.Env{Route: "all", Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	// A bug between the breaker and the upstream panics on /panic: the breaker must count the probe
	// as failed, not wait for its outcome forever.
	r := snap.Routes[0]
	r.handler = filters.Chain([]filters.Filter{breaker, panicOn{path: "/panic"}}, upstreamStep{pools: []*upstream.Pool{r.Pool}})
	gw, _ := serveSnapshot(t, snap)

	get(t, gw, "/x") // 500: open
	time.Sleep(150 * time.Millisecond)
	if s := get(t, gw, "/panic").StatusCode(); s != 500 {
		t.Fatalf("probe that panicked: status %d, want 500", s)
	}
	if s := get(t, gw, "/x").StatusCode(); s != 503 {
		t.Fatalf("after the panicked probe: status %d, want 503 (reopened, not half-open forever)", s)
	}
	b.status.Store(200)
	time.Sleep(150 * time.Millisecond)
	if s := get(t, gw, "/x").StatusCode(); s != 200 {
		t.Fatalf("later probe: status %d, want 200", s)
	}
}

func TestRateLimit_RejectsWith429AndHeadersWithoutReachingUpstream(t *testing.T) {
	b := startSwitchableBackend(t, 200)
	gw, _ := startGateway(t, filterConfig(b.addr, `      - rate_limit: {rate: 1, per: 1m, burst: 2}
`))
	for i := 0; i < 2; i++ {
		resp := get(t, gw, "/x")
		if resp.StatusCode() != 200 || string(resp.Header.Peek("RateLimit")) != fmt.Sprintf(`"default";r=%d;t=%d`, 1-i, 60*(i+1)) {
			t.Fatalf("request %d: %d, RateLimit %q", i, resp.StatusCode(), resp.Header.Peek("RateLimit"))
		}
	}
	resp := get(t, gw, "/x")
	if resp.StatusCode() != 429 || b.hits.Load() != 2 {
		t.Fatalf("third request: %d with %d upstream hits, want 429 and 2", resp.StatusCode(), b.hits.Load())
	}
	if e := decodeGatewayError(t, resp); e.Error != "rate limit exceeded" {
		t.Errorf("reason %q", e.Error)
	}
	got := fmt.Sprintf("%s|%s|%s", resp.Header.Peek("Retry-After"), resp.Header.Peek("RateLimit-Policy"), resp.Header.Peek("RateLimit"))
	if want := `60|"default";q=1;w=60|"default";r=0;t=60`; got != want {
		t.Errorf("Retry-After|RateLimit-Policy|RateLimit = %s, want %s", got, want)
	}
}

func TestRateLimit_AccuracyThroughTheGatewayOverThreeSeconds(t *testing.T) {
	b := startSwitchableBackend(t, 200)
	var mu sync.Mutex
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	gw := startGatewayWith(t, filterConfig(b.addr, `      - rate_limit: {rate: 50, per: 1s, burst: 20, key: client_ip}
`), Options{Now: now})

	const offered = 1000
	accepted := 0
	for i := 0; i < offered; i++ {
		if get(t, gw, "/x").StatusCode() == 200 {
			accepted++
		}
		mu.Lock()
		clock = clock.Add(3 * time.Second / offered)
		mu.Unlock()
	}
	if want := 20 + 3*50; accepted < want*95/100 || accepted > want*105/100 {
		t.Fatalf("accepted %d of %d over 3 simulated seconds, want %d ± 5%%", accepted, offered, want)
	}
}

func TestChain_DefaultsRunBeforeRouteFiltersAndEachRouteGetsItsOwnState(t *testing.T) {
	b := startSwitchableBackend(t, 200)
	gw, _ := startGateway(t, fmt.Sprintf(`upstreams:
  backend:
    targets: [{url: "http://%s"}]
defaults:
  filters:
    - rate_limit: {rate: 1, per: 1h, burst: 1}
routes:
  - {name: a, match: {path: /a}, upstream: backend}
  - name: b
    match: {path: /b}
    upstream: backend
    filters:
      - rate_limit: {rate: 1, per: 1h, burst: 5}
`, b.addr))
	// Each route has its own defaults bucket (burst 1): one request each passes.
	if s := get(t, gw, "/a").StatusCode(); s != 200 {
		t.Fatalf("/a: %d", s)
	}
	if s := get(t, gw, "/b").StatusCode(); s != 200 {
		t.Fatalf("/b: %d, want 200: routes must not share the defaults' bucket", s)
	}
	// The defaults' limiter runs first, so /b's roomier own limiter never gets a say.
	if s := get(t, gw, "/b").StatusCode(); s != 429 {
		t.Fatalf("second /b: %d, want 429 from the defaults' limiter", s)
	}
}

func TestCircuitBreaker_RatioCountsOnlyJudgedRequests(t *testing.T) {
	b := startSwitchableBackend(t, 500)
	gw, _ := startGateway(t, filterConfig(b.addr, `      - circuit_breaker: {consecutive_failures: 0, failure_ratio: 0.5, min_requests: 10, open_timeout: 1h}
      - rate_limit: {rate: 1, per: 1h, burst: 1, key: "header:X-K"}
`))
	req := func(key string) int {
		r := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(r)
		r.SetRequestURI("http://" + gw + "/x")
		r.Header.Set("X-K", key)
		return send(t, gw, r).StatusCode()
	}
	req("a") // reaches the upstream: a judged failure
	for i := 0; i < 30; i++ {
		if s := req("a"); s != 429 { // rejected after the breaker: not judged
			t.Fatalf("repeat %d of key a: %d, want 429", i, s)
		}
	}
	for i := 0; i < 9; i++ { // nine more judged failures: 10 of 10 judged requests failed
		if s := req(fmt.Sprint("k", i)); s != 500 {
			t.Fatalf("key k%d: %d, want the upstream's 500", i, s)
		}
	}
	if s := req("fresh"); s != 503 {
		t.Fatalf("after 10 judged failures out of 10: %d, want 503 (30 rejections must not dilute the ratio)", s)
	}
}

func TestCircuitBreaker_ConnectionLimitIsNotTheUpstreamsFailure(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	addr := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/slow" { // what sendAsync requests
			entered <- struct{}{}
			<-release
		}
	})
	gw, _ := startGateway(t, fmt.Sprintf(`upstreams:
  backend:
    max_conns_per_target: 1
    conn_wait_timeout: 0s
    targets: [{url: "http://%s"}]
routes:
  - name: r
    match: {path: "/{rest:*}"}
    upstream: backend
    filters: [{circuit_breaker: {consecutive_failures: 1, open_timeout: 1h}}]
`, addr))
	held := sendAsync(gw)
	<-entered
	if s := get(t, gw, "/x").StatusCode(); s != 503 {
		t.Fatalf("with the only connection busy: %d, want 503", s)
	}
	close(release)
	<-held
	if s := get(t, gw, "/x").StatusCode(); s != 200 {
		t.Fatalf("after the connection freed up: %d, want 200 (weir's own limit must not open the breaker)", s)
	}
}

func TestRewrite_TemplateReadsParametersFromTheRoutedPathAfterAnEarlierRewrite(t *testing.T) {
	rec := startRecordingBackend(t, "rec", nil)
	gw, _ := startGateway(t, fmt.Sprintf(`upstreams:
  backend:
    targets: [{url: "http://%s"}]
defaults:
  filters: [{rewrite: {strip_prefix: /api}}]
routes:
  - name: r
    match: {path: "/api/users/{id}"}
    upstream: backend
    filters: [{rewrite: {path: "/v2/users/{id}"}}]
`, rec.Addr))
	get(t, gw, "/api/users/42")
	if got := rec.take(t).Target; got != "/v2/users/42" {
		t.Fatalf("upstream got %s, want /v2/users/42", got)
	}
}
