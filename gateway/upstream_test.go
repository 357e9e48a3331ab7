package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
)

// gatewayError is the JSON body of every gateway-made answer.
type gatewayError struct {
	Error     string `json:"error"`
	Status    int    `json:"status"`
	RequestID string `json:"request_id"`
}

func decodeGatewayError(t *testing.T, resp *fasthttp.Response) gatewayError {
	t.Helper()
	var e gatewayError
	if err := json.Unmarshal(resp.Body(), &e); err != nil {
		t.Fatalf("error body %q is not the gateway's JSON: %v", resp.Body(), err)
	}
	if ct := string(resp.Header.ContentType()); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	if e.Status != resp.StatusCode() || e.RequestID == "" || e.RequestID != string(resp.Header.Peek("X-Request-Id")) {
		t.Errorf("error body %+v does not match status %d and X-Request-Id %q", e, resp.StatusCode(), resp.Header.Peek("X-Request-Id"))
	}
	return e
}

// startRawBackend answers every request with reply, verbatim, then closes the connection.
func startRawBackend(t *testing.T, reply string) string {
	t.Helper()
	return startRawTCP(t, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for { // read the request head
			line, err := r.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		_, _ = c.Write([]byte(reply))
	})
}

func TestUpstreamFailures_MapToGatewayStatuses(t *testing.T) {
	slow := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(500 * time.Millisecond)
		ctx.WriteString("late")
	})
	big := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.Write(make([]byte, 4096)) })
	cases := []struct {
		desc       string
		target     string
		extra      string
		wantStatus int
		wantReason string
	}{
		{desc: "nothing listens on the target", target: closedAddr(t),
			wantStatus: 502, wantReason: "upstream unreachable"},
		{desc: "target answers after the attempt timeout", target: slow, extra: "    timeout: 100ms\n",
			wantStatus: 504, wantReason: "upstream timed out"},
		{desc: "target sends a malformed status line", target: startRawBackend(t, "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"),
			wantStatus: 502, wantReason: "bad upstream response"},
		{desc: "target sends two different Content-Lengths", target: startRawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
			wantStatus: 502, wantReason: "bad upstream response"},
		{desc: "target closes without answering", target: startRawBackend(t, ""),
			wantStatus: 502, wantReason: "upstream closed the connection"},
		{desc: "target declares a Content-Length over max_response_bytes", target: startRawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 9000000000000000000\r\n\r\n"),
			extra: "    max_response_bytes: 1GiB\n", wantStatus: 502, wantReason: "upstream response too large"},
		{desc: "body over max_response_bytes", target: big, extra: "    max_response_bytes: 1KiB\n",
			wantStatus: 502, wantReason: "upstream response too large"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			gw, _ := startGateway(t, oneRouteConfig(tc.extra, tc.target))
			start := time.Now()
			resp := get(t, gw, "/x")
			if resp.StatusCode() != tc.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", resp.StatusCode(), tc.wantStatus, resp.Body())
			}
			e := decodeGatewayError(t, resp)
			if e.Error != tc.wantReason {
				t.Errorf("reason = %q, want %q", e.Error, tc.wantReason)
			}
			// The random request ID is left out: 32 hex digits contain "2000" about once in 2,000 runs.
			if body := strings.Replace(string(resp.Body()), e.RequestID, "", 1); strings.Contains(body, "fasthttp") || strings.Contains(body, "2000") {
				t.Errorf("error body leaks internal text: %q", resp.Body())
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("answer took %v; failures must be quick", d)
			}
		})
	}
}

func TestUpstreamPool_ExhaustedConnectionsGet503AfterShortWait(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		entered <- struct{}{}
		<-release
	})
	gw, _ := startGateway(t, oneRouteConfig("    max_conns_per_target: 1\n    conn_wait_timeout: 50ms\n", backend))

	first := make(chan int)
	go func() {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + gw + "/hold")
		_ = fasthttp.DoTimeout(req, resp, 10*time.Second)
		first <- resp.StatusCode()
	}()
	<-entered // the only connection is now busy

	resp := get(t, gw, "/second")
	close(release)
	if resp.StatusCode() != 503 {
		t.Fatalf("status = %d, want 503 while the only connection is busy", resp.StatusCode())
	}
	if e := decodeGatewayError(t, resp); e.Error != "upstream connection limit reached" {
		t.Errorf("reason = %q", e.Error)
	}
	if s := <-first; s != 200 {
		t.Errorf("the request holding the connection got %d, want 200", s)
	}
}

func TestPanicInRequestPath_Becomes500AndServerKeepsServing(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.WriteString("ok") })
	snap, err := Compile("test.yaml", []byte(oneRouteConfig("", backend)))
	if err != nil {
		t.Fatal(err)
	}
	r := snap.Routes[0]
	r.handler = filters.Chain([]filters.Filter{panicOn{path: "/boom"}}, r.handler)
	gw, _ := serveSnapshot(t, snap)

	resp := get(t, gw, "/boom")
	if resp.StatusCode() != 500 {
		t.Fatalf("status = %d, want 500", resp.StatusCode())
	}
	if e := decodeGatewayError(t, resp); e.Error != "internal error" {
		t.Errorf("reason = %q", e.Error)
	}
	if resp := get(t, gw, "/fine"); resp.StatusCode() != 200 || string(resp.Body()) != "ok" {
		t.Fatalf("after a panic: %d %q, want 200 ok", resp.StatusCode(), resp.Body())
	}
}

// panicOn is a filter that panics for one path, standing in for a bug anywhere in the request path.
type panicOn struct {
	path string
	next filters.Handler
}

func (p panicOn) Wrap(next filters.Handler) filters.Handler { p.next = next; return p }

func (p panicOn) Serve(x *filters.Exchange) {
	if string(x.Ctx.Path()) == p.path {
		panic("bug")
	}
	p.next.Serve(x)
}

// countingBackends starts n backends that answer with their own index.
func countingBackends(t *testing.T, n int) []string {
	addrs := make([]string, n)
	for i := range addrs {
		name := fmt.Sprint(i)
		addrs[i] = startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.WriteString(name) })
	}
	return addrs
}

// tally sends n GETs (with header h set to a value from key(i) when h is not empty) and counts which
// backend answered.
func tally(t *testing.T, gw string, n int, h string, key func(i int) string) map[string]int {
	t.Helper()
	c := &fasthttp.HostClient{Addr: gw, MaxConns: 16}
	counts := map[string]int{}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	for i := 0; i < n; i++ {
		req.Reset()
		req.SetRequestURI("http://" + gw + "/x")
		if h != "" {
			req.Header.Set(h, key(i))
		}
		if err := c.DoTimeout(req, resp, 5*time.Second); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("request %d: %v %d", i, err, resp.StatusCode())
		}
		counts[string(resp.Body())]++
	}
	return counts
}

func TestBalancer_Weighted3to1SplitOver4000Requests(t *testing.T) {
	b := countingBackends(t, 2)
	gw, _ := startGateway(t, fmt.Sprintf(`upstreams:
  backend:
    balancer: weighted
    targets:
      - {url: "http://%s", weight: 3}
      - {url: "http://%s", weight: 1}
routes:
  - {name: all, match: {path: "/{rest:*}"}, upstream: backend}
`, b[0], b[1]))
	counts := tally(t, gw, 4000, "", nil)
	if share := float64(counts["0"]) / 4000; math.Abs(share-0.75) > 0.05 {
		t.Fatalf("weight-3 target got %.3f of requests (%v), want 0.75 ± 0.05", share, counts)
	}
}

func TestBalancer_RoundRobinAndRandomAndLeastRequestUseEveryTarget(t *testing.T) {
	for _, balancer := range []string{"round_robin", "random", "least_request"} {
		t.Run(balancer, func(t *testing.T) {
			b := countingBackends(t, 3)
			gw, _ := startGateway(t, oneRouteConfig("    balancer: "+balancer+"\n", b...))
			counts := tally(t, gw, 600, "", nil)
			for i := 0; i < 3; i++ {
				// Even a random pick gives each of 3 targets 200 ± 60 of 600 with overwhelming probability.
				if c := counts[fmt.Sprint(i)]; c < 140 || c > 260 {
					t.Errorf("target %d got %d of 600 requests (%v)", i, c, counts)
				}
			}
		})
	}
}

func TestBalancer_HashOnHeaderIsStickyAndRemovingATargetMovesOnlyItsKeys(t *testing.T) {
	b := countingBackends(t, 3)
	hashConfig := func(targets ...string) string {
		return oneRouteConfig("    balancer: hash\n    hash_key: header:X-User\n", targets...)
	}
	gw3, _ := startGateway(t, hashConfig(b...))
	gw2, _ := startGateway(t, hashConfig(b[0], b[2])) // target 1 removed

	const keys = 300
	owner := func(gw string) []string {
		out := make([]string, keys)
		c := &fasthttp.HostClient{Addr: gw}
		for i := range out {
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			req.SetRequestURI("http://" + gw + "/x")
			req.Header.Set("X-User", fmt.Sprintf("user-%d", i))
			if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			out[i] = string(resp.Body())
			fasthttp.ReleaseRequest(req)
			fasthttp.ReleaseResponse(resp)
		}
		return out
	}
	before, again, after := owner(gw3), owner(gw3), owner(gw2)
	used := map[string]int{}
	for i := range before {
		used[before[i]]++
		if before[i] != again[i] {
			t.Fatalf("key %d went to %s, then to %s: hash is not sticky", i, before[i], again[i])
		}
		if before[i] != "1" && after[i] != before[i] {
			t.Errorf("key %d moved from %s to %s although its target was not removed", i, before[i], after[i])
		}
	}
	if len(used) != 3 || used["1"] < 50 {
		t.Errorf("keys are not spread over the 3 targets: %v", used)
	}
}

func TestUpstream_ConcurrentRequestsAllSucceed(t *testing.T) {
	b := countingBackends(t, 2)
	gw, _ := startGateway(t, oneRouteConfig("", b...))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fasthttp.HostClient{Addr: gw}
			for i := 0; i < 100; i++ {
				status, _, err := c.Get(nil, "http://"+gw+"/x")
				if err != nil || status != 200 {
					errs <- fmt.Errorf("status %d, err %v", status, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestBalancer_LeastRequestSteersConcurrentLoadAwayFromASlowTarget(t *testing.T) {
	slow := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(20 * time.Millisecond)
		ctx.WriteString("slow")
	})
	fast := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.WriteString("fast") })
	gw, _ := startGateway(t, oneRouteConfig("    balancer: least_request\n", slow, fast))

	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fasthttp.HostClient{Addr: gw}
			for i := 0; i < 40; i++ {
				_, body, err := c.Get(nil, "http://"+gw+"/x")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				counts[string(body)]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// With 8 requests in flight, the slow target holds most of them at any moment, so the power of two
	// choices sends nearly everything to the fast one. round_robin or random would split 50/50.
	if share := float64(counts["fast"]) / 320; share < 0.75 {
		t.Fatalf("fast target got %.2f of the load (%v), want at least 0.75", share, counts)
	}
}
