package gateway

import (
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
)

// namedBackend answers every request with its name.
func namedBackend(t *testing.T, name string, status int) string {
	return startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(status)
		ctx.SetBodyString(name)
	})
}

func splitConfig(v1, v2 string, w1, w2 int, key, filters string) string {
	cfg := fmt.Sprintf(`upstreams:
  v1: {targets: [{url: "http://%s"}], passive_health: {consecutive_failures: 0}, retries: {attempts: 1}}
  v2: {targets: [{url: "http://%s"}], passive_health: {consecutive_failures: 0}, retries: {attempts: 1}}
routes:
  - name: users
    match: {path: "/{rest:*}"}
    split:
      - {upstream: v1, weight: %d}
      - {upstream: v2, weight: %d}
`, v1, v2, w1, w2)
	if key != "" {
		cfg += "    split_key: " + key + "\n"
	}
	if filters != "" {
		cfg += "    filters:\n" + filters
	}
	return cfg
}

// keepAliveGet sends GETs over one kept-alive connection: thousands of requests through fresh
// clients would leave thousands of connections open in the test process.
func keepAliveGet(t *testing.T, gw string) func(uri string, header ...string) *fasthttp.Response {
	c := &fasthttp.HostClient{Addr: gw, MaxConns: 1}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	t.Cleanup(func() {
		c.CloseIdleConnections()
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	})
	return func(uri string, header ...string) *fasthttp.Response {
		req.Reset()
		req.SetRequestURI("http://" + gw + uri)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		if err := c.Do(req, resp); err != nil {
			t.Fatal(err)
		}
		return resp
	}
}

// Without a key, 4,000 requests at 95/5 land within ±2 % of the weights.
func TestSplit_SpreadsByWeight(t *testing.T) {
	gw, _ := startGateway(t, splitConfig(namedBackend(t, "v1", 200), namedBackend(t, "v2", 200), 95, 5, "", ""))
	get := keepAliveGet(t, gw)
	counts := map[string]int{}
	for range 4000 {
		counts[string(get("/u").Body())]++
	}
	if v2 := float64(counts["v2"]) / 4000; v2 < 0.03 || v2 > 0.07 || counts["v1"]+counts["v2"] != 4000 {
		t.Fatalf("95/5 over 4000 requests: %v (v2 share %.3f), want 0.05 ± 0.02", counts, v2)
	}
}

// With a key, each key keeps its pool.
func TestSplit_KeyIsSticky(t *testing.T) {
	gw, _ := startGateway(t, splitConfig(namedBackend(t, "v1", 200), namedBackend(t, "v2", 200), 50, 50, "header:X-User", ""))
	get := keepAliveGet(t, gw)
	counts := map[string]int{}
	for i := range 200 {
		user := fmt.Sprint("user-", i)
		first := string(get("/u", "X-User", user).Body())
		for range 3 {
			if got := string(get("/u", "X-User", user).Body()); got != first {
				t.Fatalf("%s went to %s, then %s", user, first, got)
			}
		}
		counts[first]++
	}
	if counts["v1"] < 70 || counts["v2"] < 70 {
		t.Errorf("200 keys at 50/50: %v", counts)
	}
}

// Moving weight from v1 to v2 moves only the keys of the share that changed hands: no v2 key
// leaves v2, and the v1 keys that move are the weight change's share of all keys.
func TestSplit_WeightShiftMovesOnlyItsShareOfKeys(t *testing.T) {
	assign := func(w1, w2 int) []int {
		snap, err := Compile("test.yaml", []byte(splitConfig("127.0.0.1:9", "127.0.0.1:9", w1, w2, "cookie:uid", "")))
		if err != nil {
			t.Fatal(err)
		}
		s := snap.Routes[0].handler.(splitStep).s
		out := make([]int, 10000)
		var ctx fasthttp.RequestCtx
		for i := range out {
			ctx.Request.Header.SetCookie("uid", fmt.Sprint("u", i))
			x := filters.AcquireExchange(&ctx)
			out[i] = s.pick(x)
			filters.ReleaseExchange(x)
		}
		return out
	}
	before, after := assign(95, 5), assign(50, 50)
	moved, back := 0, 0
	for i := range before {
		switch {
		case before[i] == 0 && after[i] == 1:
			moved++
		case before[i] == 1 && after[i] == 0:
			back++
		}
	}
	if back != 0 {
		t.Errorf("%d keys moved from v2 back to v1", back)
	}
	if share := float64(moved) / 10000; share < 0.43 || share > 0.47 {
		t.Errorf("95/5 -> 50/50 moved %.3f of the keys, want 0.45 ± 0.02", share)
	}
	same := assign(95, 5)
	for i := range before {
		if same[i] != before[i] {
			t.Fatalf("key %d changed pool with unchanged weights", i)
		}
	}
}

// A failing canary opens its own breaker: the stable pool keeps serving.
func TestSplit_BreakerKeepsOneStatePerPool(t *testing.T) {
	gw, srv := startGateway(t, splitConfig(namedBackend(t, "v1", 200), namedBackend(t, "v2", 500), 50, 50, "header:X-User",
		"      - circuit_breaker: {consecutive_failures: 3, open_timeout: 1m}\n"))
	byPool := map[string][]string{}
	for i := 0; i < 40; i++ {
		user := fmt.Sprint("user-", i)
		pool := "v1"
		if request(t, gw, "GET", "/u", "X-User", user).StatusCode() != 200 { // v2's 500, then its breaker's 503
			pool = "v2"
		}
		byPool[pool] = append(byPool[pool], user)
	}
	if len(byPool["v1"]) < 5 || len(byPool["v2"]) < 5 {
		t.Fatalf("40 keys at 50/50 split %d/%d", len(byPool["v1"]), len(byPool["v2"]))
	}
	for _, user := range byPool["v2"] {
		request(t, gw, "GET", "/u", "X-User", user)
	}
	expectStatus(t, request(t, gw, "GET", "/u", "X-User", byPool["v2"][0]), 503, "the canary's breaker open")
	for _, user := range byPool["v1"] {
		expectStatus(t, request(t, gw, "GET", "/u", "X-User", user), 200, "the stable pool, "+user)
	}
	var states []string
	for _, f := range srv.Snapshot().Routes[0].Filters {
		if b, ok := f.(*filters.CircuitBreaker); ok {
			states = append(states, b.PoolState(0).String(), b.PoolState(1).String())
		}
	}
	if strings.Join(states, ",") != "closed,open" {
		t.Errorf("breaker states by pool: %v, want closed for v1, open for v2", states)
	}
}

func TestCompile_SplitProblems(t *testing.T) {
	runProblemCases(t, []problemCase{{
		desc: "split with upstream, unknown and repeated upstreams, zero weights, a bad key",
		yaml: `upstreams:
  v1: {targets: [{url: "http://127.0.0.1:9"}]}
routes:
  - name: a
    match: {path: /a}
    upstream: v1
    split: [{upstream: v1, weight: 1}, {upstream: v1, weight: 1}]
  - name: b
    match: {path: /b}
    split: [{upstream: v1, weight: 0}, {upstream: v9, weight: 0}]
    split_key: query:x
  - name: c
    match: {path: /c}
    upstream: v1
    split_key: client_ip
`,
		want: []string{
			`test.yaml:7: routes[0].split: give upstream or split, not both`,
			`test.yaml:10: routes[1].split[1].upstream: unknown upstream "v9"; did you mean "v1"?`,
			`test.yaml:10: routes[1].split: every weight is 0: give at least one upstream a share`,
			`test.yaml:11: routes[1].split_key: unknown key "query:x"; use client_ip, header:NAME or cookie:NAME`,
			`test.yaml:15: routes[2].split_key: split_key goes with split`,
		},
	}})
}

func BenchmarkSplitPick(b *testing.B) {
	for _, key := range []string{"", "header:X-User", "cookie:uid"} {
		b.Run("key="+key, func(b *testing.B) {
			snap, err := Compile("bench.yaml", []byte(splitConfig("127.0.0.1:9", "127.0.0.1:9", 95, 5, key, "")))
			if err != nil {
				b.Fatal(err)
			}
			s := snap.Routes[0].handler.(splitStep).s
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.Set("X-User", "user-12345")
			ctx.Request.Header.Set("Cookie", "theme=dark; uid=u-12345")
			x := filters.AcquireExchange(&ctx)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				s.pick(x)
			}
		})
	}
}
