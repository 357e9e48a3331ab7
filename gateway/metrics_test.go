package gateway

import (
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// scrape fetches the admin listener's /metrics.
func (g *runningGateway) scrape(t *testing.T) string {
	t.Helper()
	code, body, err := fasthttp.Get(nil, "http://"+g.admin+"/metrics")
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	return string(body)
}

// hasSample reports whether the exposition has the sample line exactly (labels in Prometheus' sorted
// order).
func hasSample(text, sample string) bool {
	for _, line := range strings.Split(text, "\n") {
		if line == sample {
			return true
		}
	}
	return false
}

func sendMethod(t *testing.T, addr, method, path string) int {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://" + addr + path)
	req.Header.SetMethod(method)
	return send(t, addr, req).StatusCode()
}

func TestMetrics_CountExactlyWhatWasServed(t *testing.T) {
	ok := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	failing := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(503) })
	dead := closedAddr(t)
	path := writeConfigFile(t, fmt.Sprintf(`server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
log: {access: false}
upstreams:
  ua: {targets: [{url: "http://%s"}]}
  ub: {targets: [{url: "http://%s"}], passive_health: {consecutive_failures: 0}}
  ud:
    targets: [{url: "http://%s"}]
    health_check: {interval: 20ms, timeout: 20ms, unhealthy_threshold: 1}
    retries: {attempts: 1}
    passive_health: {consecutive_failures: 0}
routes:
  - {name: a, match: {path: /a, methods: [GET]}, upstream: ua}
  - {name: b, match: {path: /b}, upstream: ub}
  - {name: c, match: {path: /c}, upstream: ua, filters: [{rate_limit: {rate: 1, per: 1h, burst: 1}}]}
  - {name: d, match: {path: /d}, upstream: ud, filters: [{circuit_breaker: {consecutive_failures: 1, open_timeout: 1h}}]}
`, ok, failing, dead))
	g := startRun(t, path)

	for i := 0; i < 5; i++ {
		sendMethod(t, g.public, "GET", "/a")
	}
	for i := 0; i < 2; i++ {
		sendMethod(t, g.public, "POST", "/a") // 405, before any route matched
	}
	for i := 0; i < 3; i++ {
		sendMethod(t, g.public, "GET", "/b") // the upstream's 503
	}
	sendMethod(t, g.public, "GET", "/nope") // 404
	for i := 0; i < 3; i++ {
		sendMethod(t, g.public, "GET", "/c") // 1 through, 2 refused
	}
	sendMethod(t, g.public, "GET", "/d") // 502: the breaker opens
	sendMethod(t, g.public, "GET", "/d") // 503 from the breaker
	waitFor(t, "the dead target's health check to fail", func() bool {
		return hasSample(g.scrape(t), fmt.Sprintf(`weir_upstream_target_healthy{target="%s",upstream="ud"} 0`, dead))
	})

	text := g.scrape(t)
	for _, want := range []string{
		`weir_requests_total{code="2xx",method="GET",route="a"} 5`,
		`weir_requests_total{code="4xx",method="POST",route=""} 2`,
		`weir_requests_total{code="4xx",method="GET",route=""} 1`,
		`weir_requests_total{code="5xx",method="GET",route="b"} 3`,
		`weir_requests_total{code="2xx",method="GET",route="c"} 1`,
		`weir_requests_total{code="4xx",method="GET",route="c"} 2`,
		`weir_requests_total{code="5xx",method="GET",route="d"} 2`,
		`weir_request_duration_seconds_count{route="a"} 5`,
		`weir_request_duration_seconds_count{route="b"} 3`,
		fmt.Sprintf(`weir_upstream_attempts_total{target="%s",upstream="ub"} 3`, failing),
		fmt.Sprintf(`weir_upstream_errors_total{kind="status",target="%s",upstream="ub"} 3`, failing),
		fmt.Sprintf(`weir_upstream_errors_total{kind="connect",target="%s",upstream="ud"} 1`, dead),
		fmt.Sprintf(`weir_upstream_in_flight{target="%s",upstream="ua"} 0`, ok),
		`weir_rate_limit_rejections_total{route="c"} 2`,
		`weir_circuit_breaker_state{route="d"} 2`,
		`weir_circuit_breaker_transitions_total{route="d",to="open"} 1`,
	} {
		if !hasSample(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, family := range []string{"go_goroutines ", "process_cpu_seconds_total ", "weir_config_last_reload_success_timestamp_seconds "} {
		if !strings.Contains(text, "\n"+family) {
			t.Errorf("/metrics lacks %s", family)
		}
	}
	if t.Failed() {
		t.Logf("scraped:\n%s", grepWeir(text))
	}
}

func grepWeir(text string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "weir_") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func TestMetrics_ReloadsAreCountedAndTheConfigHashIsExposed(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	v1 := reloadConfig("1", backend, "/a")
	path := writeConfigFile(t, v1)
	g := startRun(t, path)
	if !hasSample(g.scrape(t), fmt.Sprintf(`weir_config_info{hash="%s"} 1`, contentHash([]byte(v1)))) {
		t.Fatal("the starting config's hash is not exposed")
	}
	v2 := reloadConfig("2", backend, "/b")
	writeInPlace(t, path, v2)
	g.waitApplied(t, v2)
	writeInPlace(t, path, "routes: [")
	waitFor(t, "the rejected reload to be counted", func() bool {
		return hasSample(g.scrape(t), `weir_config_reloads_total{result="rejected"} 1`)
	})
	text := g.scrape(t)
	for _, want := range []string{
		`weir_config_reloads_total{result="applied"} 1`,
		fmt.Sprintf(`weir_config_info{hash="%s"} 1`, contentHash([]byte(v2))),
	} {
		if !hasSample(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(text, contentHash([]byte(v1))) {
		t.Error("the replaced config's hash is still exposed")
	}
}

func TestAdmin_ProfilesOnTheAdminListenerOnly(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	g := startRun(t, writeConfigFile(t, reloadConfig("1", backend, "/a")))
	code, body, err := fasthttp.Get(nil, "http://"+g.admin+"/debug/pprof/")
	if err != nil || code != 200 || !strings.Contains(string(body), "goroutine") {
		t.Fatalf("admin /debug/pprof/: %d %v", code, err)
	}
	if s := statusAt(t, g.public, "/debug/pprof/"); s != 404 {
		t.Fatalf("public /debug/pprof/: %d, want 404", s)
	}
}

func TestMetrics_MalformedRequestsAreTimedFromTheirArrival(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	g := startRun(t, writeConfigFile(t, reloadConfig("1", backend, "/a")))
	statusAt(t, g.public, "/a") // a request first, so a reused ctx has an old time
	rawExchange(t, g.public, "GARBAGE\r\n\r\n")
	text := g.scrape(t)
	if !hasSample(text, `weir_requests_total{code="4xx",method="other",route=""} 1`) {
		t.Errorf("the malformed request is not counted as method other:\n%s", grepWeir(text))
	}
	for _, line := range strings.Split(text, "\n") {
		var sum float64
		if _, err := fmt.Sscanf(line, `weir_request_duration_seconds_sum{route=""} %g`, &sum); err == nil && sum > 1 {
			t.Fatalf("one malformed request added %g seconds to the duration histogram", sum)
		}
	}
}

func TestMetrics_SeriesFollowTheServingConfig(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	slow := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/slow" {
			entered <- struct{}{}
			<-release
		}
	})
	other := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	cfg := func(route2, target2 string) string {
		return fmt.Sprintf(`server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
reload: {debounce: 20ms}
upstreams:
  p1: {targets: [{url: "http://%s"}]}
routes:
  - {name: keep, match: {path: /keep}, upstream: p1}
%s`, target2, route2)
	}
	v1 := cfg(`  - {name: gone, match: {path: "/{rest:*}"}, upstream: p1}
`, slow)
	path := writeConfigFile(t, v1)
	g := startRun(t, path)
	statusAt(t, g.public, "/keep")
	inFlight := sendAsync(g.public) // GET /slow on route "gone", held by the backend
	<-entered

	// A rejected config's routes and upstreams leave no series behind.
	// Route "phantom" compiles (its series get resolved); "bad" then fails the whole file.
	writeInPlace(t, path, cfg(`  - {name: phantom, match: {path: /p}, upstream: p1, filters: [{rate_limit: {rate: 1}}]}
  - {name: bad, match: {path: /b}, upstream: nope}
`, slow))
	waitFor(t, "the rejected reload", func() bool { return g.status(t).LastAttempt != nil && g.status(t).LastAttempt.Result == Rejected })
	if text := g.scrape(t); strings.Contains(text, `route="phantom"`) {
		t.Errorf("a rejected config left series:\n%s", grepWeir(text))
	}

	// Route "gone" is removed and p1 moves to another target while a request on "gone" still runs.
	v2 := cfg("", other)
	writeInPlace(t, path, v2)
	g.waitApplied(t, v2)
	close(release)
	<-inFlight
	statusAt(t, g.public, "/keep")
	text := g.scrape(t)
	if strings.Contains(text, `route="gone"`) {
		t.Errorf("the removed route's series came back with its last request:\n%s", grepWeir(text))
	}
	if strings.Contains(text, slow) {
		t.Errorf("the removed target's series remain:\n%s", grepWeir(text))
	}
	if !hasSample(text, `weir_requests_total{code="2xx",method="GET",route="keep"} 2`) {
		t.Errorf("the kept route's count did not carry over:\n%s", grepWeir(text))
	}
}
