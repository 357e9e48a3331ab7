package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// The fallback filter answers in place of the failures it lists, and of nothing else.

const fallbackFilter = `      - fallback: {on: [502, 503, 504, circuit_open, no_target, rate_limited], status: 200, body: '{"items": []}'}
`

func expectFallback(t *testing.T, resp *fasthttp.Response, what string) {
	t.Helper()
	if resp.StatusCode() != 200 || string(resp.Body()) != `{"items": []}` || string(resp.Header.ContentType()) != "application/json" {
		t.Fatalf("%s: %d %q (%s), want the fallback", what, resp.StatusCode(), resp.Body(), resp.Header.ContentType())
	}
	if v := resp.Header.Peek("Retry-After"); v != nil {
		t.Errorf("%s: the fallback carries the failure's Retry-After %q", what, v)
	}
}

func TestFallback_AnswersEachListedCause(t *testing.T) {
	t.Run("the upstream's 503", func(t *testing.T) {
		b := startSwitchableBackend(t, 503)
		gw, _ := startGateway(t, filterConfig(b.addr, fallbackFilter))
		expectFallback(t, get(t, gw, "/x"), "503")
	})
	t.Run("502: unreachable", func(t *testing.T) {
		gw, _ := startGateway(t, filterConfig(closedAddr(t), fallbackFilter))
		expectFallback(t, get(t, gw, "/x"), "502")
	})
	t.Run("504: timed out", func(t *testing.T) {
		slow := startBackend(t, func(ctx *fasthttp.RequestCtx) { time.Sleep(300 * time.Millisecond) })
		gw, _ := startGateway(t, strings.Replace(filterConfig(slow, fallbackFilter), "    targets:", "    timeout: 50ms\n    targets:", 1))
		expectFallback(t, get(t, gw, "/x"), "504")
	})
	t.Run("circuit_open", func(t *testing.T) {
		b := startSwitchableBackend(t, 500)
		gw, _ := startGateway(t, filterConfig(b.addr, fallbackFilter+"      - circuit_breaker: {consecutive_failures: 1, open_timeout: 1m}\n"))
		if s := get(t, gw, "/x").StatusCode(); s != 500 {
			t.Fatalf("the upstream's 500 (not listed): %d", s)
		}
		expectFallback(t, get(t, gw, "/x"), "breaker open")
		if n := b.hits.Load(); n != 1 {
			t.Errorf("the upstream saw %d requests, want 1: the open breaker kept the second away", n)
		}
	})
	t.Run("rate_limited", func(t *testing.T) {
		b := startSwitchableBackend(t, 200)
		gw, _ := startGateway(t, filterConfig(b.addr, fallbackFilter+"      - rate_limit: {rate: 1, per: 1h}\n"))
		expectStatus(t, get(t, gw, "/x"), 200, "first")
		expectFallback(t, get(t, gw, "/x"), "limited")
	})
	t.Run("no_target", func(t *testing.T) {
		gw, _ := startGateway(t, strings.Replace(filterConfig(closedAddr(t), `      - fallback: {on: [no_target], status: 503, content_type: text/plain, body: "down for maintenance"}
`), "    targets:", "    passive_health: {consecutive_failures: 1, ejection_time: 1m}\n    targets:", 1))
		// The only target fails and is ejected during the first attempt: nothing is left to try.
		resp := get(t, gw, "/x")
		if resp.StatusCode() != 503 || string(resp.Body()) != "down for maintenance" || string(resp.Header.ContentType()) != "text/plain" {
			t.Fatalf("with the only target ejected: %d %q", resp.StatusCode(), resp.Body())
		}
	})
}

func TestFallback_LeavesOtherAnswersAloneAndIsCountedAndLogged(t *testing.T) {
	b := startSwitchableBackend(t, 503)
	metrics := NewMetrics()
	snap, err := CompileWith("test.yaml", []byte(filterConfig(b.addr, `      - fallback: {on: [504], body: "{}"}
      - api_key: {keys: [{consumer: c, sha256: `+sha256Hex("k")+`}]}
`)), Options{Log: zerolog.Nop(), Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	var log lockedBuffer
	gw, _ := serveSnapshotLogged(t, snap, &log)
	expectStatus(t, request(t, gw, "GET", "/x", "X-API-Key", "k"), 503, "a 503 when only 504 is listed")
	expectStatus(t, request(t, gw, "GET", "/x"), 401, "a refusal that is not a failure")
	b.status.Store(200)
	expectStatus(t, request(t, gw, "GET", "/x", "X-API-Key", "k"), 200, "success")

	slow := startBackend(t, func(ctx *fasthttp.RequestCtx) { time.Sleep(200 * time.Millisecond) })
	snap2, err := CompileWith("test.yaml", []byte(strings.Replace(filterConfig(slow, `      - fallback: {on: [504], body: "{}"}
`), "    targets:", "    timeout: 50ms\n    targets:", 1)), Options{Log: zerolog.Nop(), Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	gw2, _ := serveSnapshotLogged(t, snap2, &log)
	expectStatus(t, get(t, gw2, "/x"), 200, "504 answered by the fallback")
	if n := counterValue(t, metrics.fallbacks.WithLabelValues("r", "504")); n != 1 {
		t.Errorf("weir_fallbacks_total{route=r,cause=504} = %v, want 1", n)
	}
	waitFor(t, "four access lines", func() bool { return len(log.lines()) == 4 })
	lines := log.lines()
	if !strings.Contains(lines[3], `"fallback":"504"`) || !strings.Contains(lines[3], `"status":200`) {
		t.Errorf("the fallback's access line: %s", lines[3])
	}
	for _, l := range lines[:3] {
		if strings.Contains(l, "fallback") {
			t.Errorf("a line without a fallback names one: %s", l)
		}
	}
}

func TestCompile_FallbackProblems(t *testing.T) {
	runProblemCases(t, []problemCase{{
		desc: "unknown causes, a bad status, both bodies",
		yaml: `upstreams:
  u: {targets: [{url: "http://127.0.0.1:9"}]}
routes:
  - name: r
    match: {path: /}
    upstream: u
    filters:
      - fallback: {on: [404, timeout], status: 99, body: x, body_file: f.json}
`,
		want: []string{
			`test.yaml:8: routes[0].filters[0].fallback.on[0]: unknown cause "404"; use a 5xx status, circuit_open, no_target or rate_limited`,
			`test.yaml:8: routes[0].filters[0].fallback.on[1]: unknown cause "timeout"; use a 5xx status, circuit_open, no_target or rate_limited`,
			`test.yaml:8: routes[0].filters[0].fallback.status: must be a status from 200 to 599`,
			`test.yaml:8: routes[0].filters[0].fallback.body_file: give body or body_file, not both`,
		},
	}})
}
