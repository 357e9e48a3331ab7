package gateway

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weir-gateway/weir/certs/certstest"
	"github.com/weir-gateway/weir/redisconn/redistest"
)

// globalConfig is a gateway with a redis block (extra is added to it) and three global limits of 20/s,
// one per on_redis_error.
func globalConfig(backend, redisAddr, extra string) string {
	return `server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
log: {access: false}
redis: {addrs: ["` + redisAddr + `"], timeout: 50ms, retry_interval: 100ms` + extra + `}
upstreams:
  u: {targets: [{url: "http://` + backend + `"}]}
routes:
  - {name: g, match: {path: /g}, upstream: u, filters: [{rate_limit: {rate: 20, per: 1s, scope: global}}]}
  - {name: a, match: {path: /a}, upstream: u, filters: [{rate_limit: {rate: 20, per: 1s, scope: global, on_redis_error: allow}}]}
  - {name: d, match: {path: /d}, upstream: u, filters: [{rate_limit: {rate: 20, per: 1s, scope: global, on_redis_error: deny}}]}
`
}

// burstOf sends n GETs for path back to back on one connection and counts the answers by status; it
// fails the test on an answer that is neither 200 nor 429 unless allowed, and returns the slowest.
func burstOf(t *testing.T, gw, path string, n int, allowed ...int) (map[int]int, time.Duration) {
	t.Helper()
	do := keepAliveGet(t, gw)
	got := map[int]int{}
	var slowest time.Duration
	for range n {
		start := time.Now()
		resp := do(path)
		slowest = max(slowest, time.Since(start))
		got[resp.StatusCode()]++
		if s := resp.StatusCode(); s != 200 && s != 429 && !slices.Contains(allowed, s) {
			t.Fatalf("GET %s: %d %s", path, s, resp.Body())
		}
	}
	return got, slowest
}

func sampleValue(t *testing.T, text, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if name, value, ok := strings.Cut(line, " "); ok && name == series {
			v, _ := strconv.ParseFloat(value, 64)
			return v
		}
	}
	return 0
}

func TestGlobalLimit_RedisDownDegradesAsConfiguredAndComesBack(t *testing.T) {
	redis := redistest.Start(t, "")
	g := startRun(t, writeConfigFile(t, globalConfig(traceBackend(t), redis.Addr, "")))
	waitFor(t, "redis to be up", func() bool { return hasSample(g.scrape(t), "weir_redis_up 1") })

	if got, _ := burstOf(t, g.public, "/g", 30); got[200] < 20 || got[200] > 22 || got[429] == 0 {
		t.Fatalf("with redis up, 30 requests at once against 20/s burst 20: %v", got)
	}

	redis.Stop()
	// Redis said the bucket is empty for the next half second or so (until a lease's worth refills):
	// that holds whether or not Redis is there.
	if got, _ := burstOf(t, g.public, "/g", 5); got[429] != 5 {
		t.Errorf("right after redis said the bucket is empty: %v; want refusals", got)
	}
	time.Sleep(time.Second)
	// The first request to ask finds the failure (the connection is refused at once, or the 50ms
	// timeout runs out); from then on none waits. Local share: 20/s over the 1 replica seen.
	got, slowest := burstOf(t, g.public, "/g", 60)
	if got[200] < 15 || got[200] > 25 {
		t.Errorf("with redis down, 60 requests at once against the local share (20/s burst 20): %v", got)
	}
	if slowest > time.Second {
		t.Errorf("with redis down the slowest request took %v; the redis timeout is 50ms", slowest)
	}
	if got, _ := burstOf(t, g.public, "/a", 40); got[200] != 40 {
		t.Errorf("on_redis_error: allow, redis down: %v; want every request through", got)
	}
	resp := keepAliveGet(t, g.public)("/d")
	if resp.StatusCode() != 503 || !strings.Contains(string(resp.Body()), `"error":"rate limiter unavailable"`) {
		t.Errorf("on_redis_error: deny, redis down: %d %s; want 503 rate limiter unavailable", resp.StatusCode(), resp.Body())
	}
	m := g.scrape(t)
	if !hasSample(m, "weir_redis_up 0") || sampleValue(t, m, `weir_rate_limit_redis_unavailable_total{route="g"}`) < 60 {
		t.Errorf("metrics with redis down:\n%s", grepWeir(m))
	}
	if n := strings.Count(g.events.String(), "redis unavailable"); n != 1 {
		t.Errorf("%d log lines say redis is unavailable; want one, at the transition:\n%s", n, g.events.String())
	}

	redis.Restart()
	waitFor(t, "redis to be back", func() bool { return hasSample(g.scrape(t), "weir_redis_up 1") })
	before := sampleValue(t, g.scrape(t), `weir_rate_limit_redis_unavailable_total{route="g"}`)
	// The restarted Redis is empty: a full bucket of 20, shared again.
	if got, _ := burstOf(t, g.public, "/g", 30); got[200] < 20 || got[200] > 22 {
		t.Errorf("with redis back, 30 requests at once: %v", got)
	}
	if after := sampleValue(t, g.scrape(t), `weir_rate_limit_redis_unavailable_total{route="g"}`); after != before {
		t.Errorf("%v requests were decided without redis after it came back", after-before)
	}
	if !strings.Contains(g.events.String(), "redis is up; global rate limits are shared again") {
		t.Error("the recovery was not logged")
	}
}

// A Redis that accepts connections and never answers: no request waits for it.
func TestGlobalLimit_ARedisThatHangsCostsRequestsNoWait(t *testing.T) {
	release := make(chan struct{})
	hung := startRawTCP(t, func(c net.Conn) {
		<-release
		c.Close()
	})
	g := startRun(t, writeConfigFile(t, globalConfig(traceBackend(t), hung, "")))
	t.Cleanup(func() { close(release) })
	got, slowest := burstOf(t, g.public, "/g", 60)
	if got[200] < 15 || got[200] > 25 {
		t.Errorf("with redis hanging, 60 requests at once against the local share: %v", got)
	}
	if slowest > time.Second {
		t.Errorf("the slowest request took %v with redis hanging", slowest)
	}
	if !hasSample(g.scrape(t), "weir_redis_up 0") {
		t.Error("weir_redis_up is not 0 with redis hanging")
	}
}

func TestGlobalLimit_PasswordAuth(t *testing.T) {
	redis := redistest.Start(t, "redis-pass-9f3a")
	backend := traceBackend(t)
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	must(t, os.WriteFile(good, []byte("redis-pass-9f3a\n"), 0o600))
	must(t, os.WriteFile(bad, []byte("wrong-pass-1234\n"), 0o600))

	g := startRun(t, writeConfigFile(t, globalConfig(backend, redis.Addr, ", password_file: "+strconv.Quote(good))))
	waitFor(t, "redis to be up with the password", func() bool { return hasSample(g.scrape(t), "weir_redis_up 1") })
	if got, _ := burstOf(t, g.public, "/g", 30); got[200] < 20 || got[200] > 22 {
		t.Errorf("30 requests at once: %v", got)
	}
	if n := sampleValue(t, g.scrape(t), `weir_rate_limit_redis_leases_total{route="g"}`); n == 0 {
		t.Error("no lease was taken from redis")
	}

	wrong := startRun(t, writeConfigFile(t, globalConfig(backend, redis.Addr, ", password_file: "+strconv.Quote(bad))))
	waitFor(t, "the refusal to be logged", func() bool { return strings.Contains(wrong.events.String(), "redis unavailable") })
	if got, _ := burstOf(t, wrong.public, "/g", 30); got[200] < 15 || got[200] > 25 {
		t.Errorf("with the wrong password, 30 requests at once against the local share: %v", got)
	}
	for _, g := range []*runningGateway{g, wrong} {
		if strings.Contains(g.events.String(), "pass-") {
			t.Errorf("the event log shows a password:\n%s", g.events.String())
		}
	}
}

// The redis connection is a registry resource: a reload that keeps the block keeps it; one that
// changes it reconnects, and the global limits, with their leases, carry over.
func TestGlobalLimit_ReloadKeepsOrReplacesTheConnectionAndKeepsTheLeases(t *testing.T) {
	redis := redistest.Start(t, "")
	backend := traceBackend(t)
	compile := func(extra string, prev *Snapshot) *Snapshot {
		t.Helper()
		snap, err := CompileWith("test.yaml", []byte(globalConfig(backend, redis.Addr, extra)), Options{Previous: prev})
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	a := compile("", nil)
	a.activate()
	t.Cleanup(a.Close)
	b := compile("", a)
	c := compile(", key_prefix: \"other:\"", b)
	limit := func(s *Snapshot) any { return s.routeByName["g"].Filters[0] }
	switch {
	case b.redis.conn != a.redis.conn:
		t.Error("an unchanged redis block made a new connection")
	case c.redis.conn == b.redis.conn:
		t.Error("a changed redis block kept the old connection")
	case c.redis.handle != a.redis.handle:
		t.Error("the handle global limits hold changed")
	case limit(b) != limit(a) || limit(c) != limit(a):
		t.Error("the global limit was rebuilt: its leases are lost")
	}
	c.activate()
	a.retire(c, 0)
	t.Cleanup(c.Close)
	if a.redis.handle.Conn() != c.redis.conn {
		t.Error("activating the new snapshot did not point the handle at its connection")
	}
}

func TestCompile_RedisProblems(t *testing.T) {
	route := "upstreams:\n  u: {targets: [{url: \"http://127.0.0.1:1\"}]}\nroutes:\n  - {name: r, match: {path: /r}, upstream: u, filters: [{rate_limit: {rate: 5, scope: global}}]}\n"
	for _, tc := range []struct{ redis, want string }{
		{"", "test.yaml:4: routes[0].filters[0].rate_limit.scope: global needs a redis block"},
		{"redis: {addrs: []}\n", "test.yaml:1: redis.addrs: needs at least one address"},
		{"redis: {addrs: [\"localhost\"]}\n", `test.yaml:1: redis.addrs[0]: invalid address "localhost"`},
		{"redis: {addrs: [\"r:6379\"], password_file: /nonexistent/pw}\n", "test.yaml:1: redis.password_file: cannot read the password"},
		{"redis: {addrs: [\"r:6379\"], tls: {ca_file: ca.pem}}\n", "test.yaml:1: redis.tls: ca_file and server_name are read only with enabled: true"},
		{"redis: {addrs: [\"r:6379\"], timeout: 0s}\n", "test.yaml:1: redis.timeout: must be more than zero"},
		{"redis: {addrs: [\"a:1\", \"b:1\"], db: 2}\n", "test.yaml:1: redis.db: a Redis Cluster has only database 0"},
	} {
		_, err := Compile("test.yaml", []byte(tc.redis+route))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q\n  got  %v\n  want %s", tc.redis, err, tc.want)
		}
	}
	_, err := Compile("test.yaml", []byte("redis: {addrs: [\"r:6379\"]}\n"+strings.Replace(route, "scope: global", "scope: everywhere", 1)))
	if err == nil || !strings.Contains(err.Error(), `unknown scope "everywhere"`) {
		t.Errorf("an unknown scope: %v", err)
	}
}

func TestGlobalLimit_TLSToRedis(t *testing.T) {
	ca := certstest.NewCA(t, "redis CA")
	dir := t.TempDir()
	cert, key := ca.Issue(t, certstest.Options{CommonName: "redis", Names: []string{"127.0.0.1"}}).Write(t, dir, "redis")
	caFile := ca.WriteCA(t, filepath.Join(dir, "ca.pem"))
	redis := redistest.StartTLS(t, "", &redistest.TLS{CertFile: cert, KeyFile: key, CAFile: caFile,
		Client: &tls.Config{RootCAs: ca.Pool()}})
	backend := traceBackend(t)

	g := startRun(t, writeConfigFile(t, globalConfig(backend, redis.Addr, ", tls: {enabled: true, ca_file: "+strconv.Quote(caFile)+"}")))
	waitFor(t, "redis to be up over TLS", func() bool { return hasSample(g.scrape(t), "weir_redis_up 1") })
	if got, _ := burstOf(t, g.public, "/g", 30); got[200] < 20 || got[200] > 22 {
		t.Errorf("30 requests at once over TLS to redis: %v", got)
	}

	// Without the CA, Redis's certificate is not trusted: no connection, and the local share decides.
	untrusting := startRun(t, writeConfigFile(t, globalConfig(backend, redis.Addr, ", tls: {enabled: true}")))
	waitFor(t, "the refusal to be logged", func() bool { return strings.Contains(untrusting.events.String(), "redis unavailable") })
	if hasSample(untrusting.scrape(t), "weir_redis_up 1") {
		t.Error("weir used a Redis whose certificate it cannot verify")
	}
}
