package main

import (
	"bufio"
	"bytes"

	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/redisconn/redistest"
)

// freeAddr is a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// replica is one weir process.
type replica struct{ public, admin string }

// startReplicas builds weir and runs n processes of config (PUBLIC and ADMIN replaced by each one's
// addresses) until the test ends.
func startReplicas(t *testing.T, n int, config string) []replica {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "weir")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var rs []replica
	for range n {
		r := replica{public: freeAddr(t), admin: freeAddr(t)}
		cfg := writeConfig(t, strings.NewReplacer("PUBLIC", r.public, "ADMIN", r.admin).Replace(config))
		cmd := exec.Command(bin, "-config", cfg)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("weir on %s logged:\n%s", r.public, stderr.String())
			}
		})
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if status, _, err := fasthttp.Get(nil, "http://"+r.admin+"/readyz"); err == nil && status == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("weir on %s did not get ready:\n%s", r.public, stderr.String())
			}
		}
		rs = append(rs, r)
	}
	return rs
}

// metric sums the samples of a metric (name with its labels, as in the text format) in a /metrics
// scrape.
func metric(t *testing.T, admin, series string) float64 {
	t.Helper()
	status, body, err := fasthttp.Get(nil, "http://"+admin+"/metrics")
	if err != nil || status != 200 {
		t.Fatalf("GET /metrics: %d %v", status, err)
	}
	total := 0.0
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if name, value, ok := strings.Cut(sc.Text(), " "); ok && name == series {
			v, _ := strconv.ParseFloat(value, 64)
			total += v
		}
	}
	return total
}

// drive sends GETs for path to addr at perSecond over conns keep-alive connections for d, and counts
// the answers by status.
func drive(t *testing.T, addr, path string, perSecond float64, conns int, d time.Duration, counts *sync.Map) {
	var wg sync.WaitGroup
	interval := time.Duration(float64(conns) / perSecond * float64(time.Second))
	start := time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fasthttp.HostClient{Addr: addr, MaxConns: 1}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + addr + path)
			// Spread the connections' first requests over one interval.
			next := start.Add(interval * time.Duration(i) / time.Duration(conns))
			for time.Since(start) < d {
				time.Sleep(time.Until(next))
				next = next.Add(interval)
				status := 0
				if err := c.DoTimeout(req, resp, 5*time.Second); err == nil {
					status = resp.StatusCode()
				}
				v, _ := counts.LoadOrStore(status, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		}()
	}
	wg.Wait()
}

func count(m *sync.Map, status int) int64 {
	if v, ok := m.Load(status); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// Three weir processes share two global limits through one Redis, each offered a different share
// (60, 30, 10 %) of three times the limit for 10 s: together they admit burst + rate × time, within
// 5 %, for a limit of 200/s and one of 5/s.
func TestGlobalLimit_ThreeReplicasAdmitTheLimitTogether(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three weir processes for 10 s")
	}
	redis := redistest.Start(t, "")
	backend := startEcho(t)
	replicas := startReplicas(t, 3, `server: {listen: "PUBLIC"}
admin: {listen: "ADMIN"}
log: {access: false}
redis: {addrs: ["`+redis.Addr+`"], timeout: 200ms}
upstreams:
  u: {targets: [{url: "http://`+backend+`"}]}
routes:
  - name: high
    match: {path: /high}
    upstream: u
    filters: [{rate_limit: {rate: 200, per: 1s, burst: 100, scope: global}}]
  - name: low
    match: {path: /low}
    upstream: u
    filters: [{rate_limit: {rate: 5, per: 1s, burst: 5, scope: global}}]
`)
	const run = 10 * time.Second
	shares := []float64{0.6, 0.3, 0.1}
	high, low := &sync.Map{}, &sync.Map{}
	var wg sync.WaitGroup
	start := time.Now()
	for i, r := range replicas {
		wg.Add(2)
		go func() { defer wg.Done(); drive(t, r.public, "/high", 600*shares[i], 8, run, high) }()
		go func() { defer wg.Done(); drive(t, r.public, "/low", 15*shares[i], 1, run, low) }()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()

	for _, tc := range []struct {
		name        string
		counts      *sync.Map
		rate, burst float64
	}{{"high", high, 200, 100}, {"low", low, 5, 5}} {
		admitted, refused := count(tc.counts, 200), count(tc.counts, 429)
		want := tc.burst + tc.rate*elapsed
		t.Logf("%s: admitted %d, refused %d, want %.0f (%+.1f%%)", tc.name, admitted, refused, want, (float64(admitted)/want-1)*100)
		if d := float64(admitted)/want - 1; d > 0.05 || d < -0.05 {
			t.Errorf("%s: the three replicas admitted %d in %.1fs; want burst + rate × time = %.0f ±5%%", tc.name, admitted, elapsed, want)
		}
		tc.counts.Range(func(k, v any) bool {
			if s := k.(int); s != 200 && s != 429 {
				t.Errorf("%s: %d answers with status %d", tc.name, v.(*atomic.Int64).Load(), s)
			}
			return true
		})
	}
	for _, tc := range []struct {
		route  string
		counts *sync.Map
		most   float64
	}{{"high", high, 0.1}, {"low", low, 2}} {
		leases := 0.0
		for _, r := range replicas {
			leases += metric(t, r.admin, `weir_rate_limit_redis_leases_total{route="`+tc.route+`"}`)
		}
		requests := float64(count(tc.counts, 200) + count(tc.counts, 429))
		t.Logf("%s: %.4f Redis round trips per request (%v for %v requests)", tc.route, leases/requests, leases, requests)
		if leases/requests > tc.most {
			t.Errorf("%s: %.3f Redis round trips per request; want at most %v", tc.route, leases/requests, tc.most)
		}
	}

	// Quiet keys refill: each gets its whole burst again, here all through the 10 % replica.
	time.Sleep(1500 * time.Millisecond)
	for _, tc := range []struct {
		path  string
		burst int
	}{{"/high", 100}, {"/low", 5}} {
		admitted := 0
		for range tc.burst {
			if status, _, err := fasthttp.Get(nil, "http://"+replicas[2].public+tc.path); err == nil && status == 200 {
				admitted++
			}
		}
		if admitted != tc.burst {
			t.Errorf("%s after a quiet while: %d of a burst of %d admitted", tc.path, admitted, tc.burst)
		}
	}
}

func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.WriteString("ok") }}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}
