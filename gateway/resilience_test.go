package gateway

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// killableBackend is a backend that can be stopped and started again on the same port.
type killableBackend struct {
	addr    string
	mu      sync.Mutex
	srv     *fasthttp.Server
	healthy atomic.Bool  // what /healthz answers
	hits    atomic.Int64 // requests other than /healthz
}

func startKillable(t *testing.T) *killableBackend {
	b := &killableBackend{}
	b.healthy.Store(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	b.serve(ln)
	t.Cleanup(b.kill)
	return b
}

func (b *killableBackend) serve(ln net.Listener) {
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/healthz" {
			if !b.healthy.Load() {
				ctx.SetStatusCode(503)
			}
			return
		}
		b.hits.Add(1)
		ctx.WriteString(b.addr)
	}, CloseOnShutdown: true}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go srv.Serve(ln)
}

// kill stops the backend and closes its connections: from then on its port refuses connections.
func (b *killableBackend) kill() {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		_ = srv.Shutdown()
	}
}

func (b *killableBackend) restart(t *testing.T) {
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		t.Fatalf("restarting on %s: %v", b.addr, err)
	}
	b.serve(ln)
}

func TestResilience_KilledTargetIsInvisibleToClientsAndComesBackWhenHealthy(t *testing.T) {
	bs := []*killableBackend{startKillable(t), startKillable(t), startKillable(t)}
	gw, srv := startGateway(t, fmt.Sprintf(`upstreams:
  backend:
    targets: [{url: "http://%s"}, {url: "http://%s"}, {url: "http://%s"}]
    health_check: {path: /healthz, interval: 100ms, timeout: 100ms, healthy_threshold: 2, unhealthy_threshold: 2}
    passive_health: {consecutive_failures: 2, ejection_time: 30s}
    retries: {attempts: 3, on: [connect_failure]}
routes:
  - {name: r, match: {path: "/{rest:*}"}, upstream: backend}
`, bs[0].addr, bs[1].addr, bs[2].addr))

	var stop atomic.Bool
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fasthttp.HostClient{Addr: gw}
			for !stop.Load() {
				status, body, err := c.Get(nil, "http://"+gw+"/x")
				sent.Add(1)
				if err != nil || status != 200 {
					failed.Add(1)
					t.Logf("failed request: %d %s %v", status, body, err)
				}
			}
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()
	waitFor(t, "traffic to reach every target", func() bool { return bs[1].hits.Load() > 50 })

	dead := bs[1]
	dead.kill()
	target := srv.Snapshot().pools["backend"].Targets[1]
	waitFor(t, "the killed target to be taken out of rotation", func() bool {
		return !target.Available(time.Now().UnixNano())
	})
	before := sent.Load()
	waitFor(t, "more traffic with the target out", func() bool { return sent.Load() > before+500 })
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed while one of three targets died", n, sent.Load())
	}

	// It comes back on the same port, but failing its health check: still no traffic.
	dead.healthy.Store(false)
	dead.hits.Store(0)
	dead.restart(t)
	time.Sleep(400 * time.Millisecond)
	if n := dead.hits.Load(); n != 0 {
		t.Fatalf("a target failing its health checks got %d requests", n)
	}
	// Healthy again: traffic returns within interval × healthy_threshold plus a margin.
	healthyAt := time.Now()
	dead.healthy.Store(true)
	waitFor(t, "traffic to return to the recovered target", func() bool { return dead.hits.Load() > 0 })
	if d := time.Since(healthyAt); d > 100*time.Millisecond*2+500*time.Millisecond {
		t.Errorf("traffic came back %v after the target recovered; want within 2 × 100ms plus a margin", d)
	}
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed overall", n, sent.Load())
	}
	t.Logf("%d requests, 0 failed; traffic back %v after recovery", sent.Load(), time.Since(healthyAt).Round(time.Millisecond))
}

func TestResilience_POSTWhoseConnectionDiesAfterSendingIsNotRetried(t *testing.T) {
	var seen atomic.Int64
	addr := startRawTCP(t, func(c net.Conn) {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		if req.Read(bufio.NewReader(c)) == nil {
			seen.Add(1)
		}
		c.Close() // dies after the request arrived, before answering
	})
	gw, _ := startGateway(t, oneRouteConfig("    retries: {attempts: 3, on: [connect_failure, timeout, 502, 503]}\n", addr, closedAddr(t)))
	for i := 0; i < 5; i++ { // some of these land on the dead second target first and are retried
		seen.Store(0)
		req := fasthttp.AcquireRequest()
		req.SetRequestURI("http://" + gw + "/order")
		req.Header.SetMethod("POST")
		req.SetBodyString(`{"amount":1}`)
		resp := send(t, gw, req)
		fasthttp.ReleaseRequest(req)
		if resp.StatusCode() != 502 || seen.Load() != 1 {
			t.Fatalf("POST %d: status %d, the target saw it %d times; want 502 and exactly once", i, resp.StatusCode(), seen.Load())
		}
	}
}

func TestResilience_AllTargetsDownAnswer503Quickly(t *testing.T) {
	gw, _ := startGateway(t, oneRouteConfig("    passive_health: {consecutive_failures: 1, ejection_time: 1m}\n", closedAddr(t), closedAddr(t)))
	start := time.Now()
	last := 0
	for i := 0; i < 10; i++ {
		resp := get(t, gw, "/x")
		last = resp.StatusCode()
		if last != 502 && last != 503 {
			t.Fatalf("request %d: %d, want 502 or 503", i, last)
		}
	}
	if last != 503 {
		t.Errorf("with every target ejected the answer is %d, want 503", last)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("10 requests to a dead pool took %v", d)
	}
}

// TestResilience_RetryBudgetCapsAmplification counts upstream attempts during a full outage (every
// target answers 503, which is retried) with and without a budget.
func TestResilience_RetryBudgetCapsAmplification(t *testing.T) {
	attemptsFor := func(retries string) int64 {
		var hits atomic.Int64
		failing := func(ctx *fasthttp.RequestCtx) { hits.Add(1); ctx.SetStatusCode(503) }
		gw, _ := startGateway(t, oneRouteConfig("    passive_health: {consecutive_failures: 0}\n    retries: "+retries+"\n",
			startBackend(t, failing), startBackend(t, failing), startBackend(t, failing)))
		for i := 0; i < 200; i++ {
			if s := get(t, gw, "/x").StatusCode(); s != 503 {
				t.Fatalf("status %d, want the upstream's 503", s)
			}
		}
		return hits.Load()
	}
	unbounded := attemptsFor("{attempts: 3, on: [503], budget_ratio: 1, min_retries_per_second: 1000}")
	budgeted := attemptsFor("{attempts: 3, on: [503], budget_ratio: 0.2, min_retries_per_second: 0}")
	t.Logf("200 requests in a full outage reached the upstreams %d times without a budget, %d with budget_ratio 0.2", unbounded, budgeted)
	if unbounded != 600 {
		t.Errorf("without a budget: %d upstream attempts, want 600 (3 per request)", unbounded)
	}
	if budgeted > 200+200/5+1 {
		t.Errorf("with budget_ratio 0.2: %d upstream attempts, want at most 241", budgeted)
	}
}

// blackholeAddr returns a loopback address whose dials time out, as a powered-off host's do: a socket
// listening with a backlog of 0 that never accepts, its queue already full.
func blackholeAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for { // fill the accept queue until a dial hangs
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
}

func TestResilience_ADialTimeoutIsRetriedLikeAnyConnectFailure(t *testing.T) {
	healthy := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.WriteString("ok") })
	gw, _ := startGateway(t, fmt.Sprintf(`upstreams:
  backend:
    balancer: round_robin
    connect_timeout: 100ms
    passive_health: {consecutive_failures: 0}
    targets: [{url: "http://%s"}, {url: "http://%s"}]
routes:
  - {name: r, match: {path: "/{rest:*}"}, upstream: backend}
`, blackholeAddr(t), healthy))
	for i := 0; i < 4; i++ { // round robin: half of these dial the black hole first
		for _, m := range []string{"GET", "POST"} {
			req := fasthttp.AcquireRequest()
			req.SetRequestURI("http://" + gw + "/x")
			req.Header.SetMethod(m)
			resp := send(t, gw, req)
			fasthttp.ReleaseRequest(req)
			if resp.StatusCode() != 200 {
				t.Fatalf("%s %d: %d %s; a dial timeout never reached the target, so any method is retried", m, i, resp.StatusCode(), resp.Body())
			}
		}
	}
}

func TestResilience_HealthChecksPassWhileTheTrafficPoolIsSaturated(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	addr := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/slow" {
			entered <- struct{}{}
			<-release
		}
	})
	gw, srv := startGateway(t, fmt.Sprintf(`upstreams:
  backend:
    max_conns_per_target: 1
    health_check: {interval: 50ms, timeout: 50ms, unhealthy_threshold: 2}
    targets: [{url: "http://%s"}]
routes:
  - {name: r, match: {path: "/{rest:*}"}, upstream: backend}
`, addr))
	held := sendAsync(gw)
	<-entered
	time.Sleep(300 * time.Millisecond) // six checks while the only traffic connection is busy
	healthy := srv.Snapshot().pools["backend"].Targets[0].Healthy()
	close(release)
	<-held
	if !healthy {
		t.Fatal("the target failed its health checks because its traffic connections were all busy")
	}
}
