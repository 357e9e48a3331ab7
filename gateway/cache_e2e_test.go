package gateway

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/redisconn/redistest"
)

// testClock is a clock the test moves; freshness is judged by it, so no test sleeps for an entry to
// go stale.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *testClock) Now() time.Time           { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Advance(d time.Duration)  { c.ns.Add(int64(d)) }
func cacheResult(r *fasthttp.Response) string { return string(r.Header.Peek("X-Cache")) }
func ageOf(r *fasthttp.Response) string       { return string(r.Header.Peek("Age")) }
func cacheConfig(target, cacheYAML string) string {
	return filterConfig(target, "      - cache: "+cacheYAML+"\n")
}

// numberingBackend answers every request with handle after counting it; the body says which request
// it was, so a test can tell a stored answer from a fresh one.
type numberingBackend struct {
	addr string
	hits atomic.Int64
}

func startNumberingBackend(t *testing.T, handle func(n int64, ctx *fasthttp.RequestCtx)) *numberingBackend {
	b := &numberingBackend{}
	b.addr = startBackend(t, func(ctx *fasthttp.RequestCtx) {
		n := b.hits.Add(1)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(fmt.Sprintf(`{"n":%d}`, n))
		handle(n, ctx)
	})
	return b
}

func TestCache_FreshnessComesFromTheResponseOrTheTTLCappedByMaxTTL(t *testing.T) {
	cases := []struct {
		name     string
		headers  []string
		lifetime time.Duration
	}{
		{"max-age", []string{"Cache-Control", "max-age=60"}, 60 * time.Second},
		{"s-maxage wins over max-age in a shared cache", []string{"Cache-Control", "max-age=600, s-maxage=30"}, 30 * time.Second},
		{"Expires, from the upstream's Date", []string{"Expires", "now+45s"}, 45 * time.Second},
		{"max-age wins over Expires", []string{"Cache-Control", "max-age=50", "Expires", "Thu, 01 Jan 1970 00:00:00 GMT"}, 50 * time.Second},
		{"no freshness of its own: the route's ttl", nil, 20 * time.Second},
		{"capped by max_ttl", []string{"Cache-Control", "max-age=86400"}, 2 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startNumberingBackend(t, func(_ int64, ctx *fasthttp.RequestCtx) {
				for i := 0; i+1 < len(tc.headers); i += 2 {
					v := tc.headers[i+1]
					if v == "now+45s" { // the Date header fasthttp adds is this second's
						v = string(fasthttp.AppendHTTPDate(nil, time.Now().Add(45*time.Second)))
					}
					ctx.Response.Header.Set(tc.headers[i], v)
				}
			})
			clock := newTestClock()
			gw := startGatewayWith(t, cacheConfig(b.addr, "{ttl: 20s, max_ttl: 2m}"), Options{Now: clock.Now})
			get := keepAliveGet(t, gw)
			if r := get("/item"); cacheResult(r) != "MISS" || string(r.Body()) != `{"n":1}` {
				t.Fatalf("first request: X-Cache %q body %s; want MISS from the backend", cacheResult(r), r.Body())
			}
			// 2s either side of the expiry: the Date and Expires an upstream sends have whole seconds.
			clock.Advance(tc.lifetime - 2*time.Second)
			r := get("/item")
			if cacheResult(r) != "HIT" || string(r.Body()) != `{"n":1}` || b.hits.Load() != 1 {
				t.Fatalf("2s before it expires: X-Cache %q body %s, backend saw %d; want a HIT", cacheResult(r), r.Body(), b.hits.Load())
			}
			if want := strconv.Itoa(int((tc.lifetime - 2*time.Second) / time.Second)); ageOf(r) != want {
				t.Errorf("Age %q; want %s", ageOf(r), want)
			}
			if ct := string(r.Header.ContentType()); ct != "application/json" {
				t.Errorf("a hit's Content-Type is %q; want the stored application/json", ct)
			}
			clock.Advance(4 * time.Second)
			if r := get("/item"); cacheResult(r) != "MISS" || string(r.Body()) != `{"n":2}` {
				t.Errorf("2s after it expired: X-Cache %q body %s; want a new MISS", cacheResult(r), r.Body())
			}
		})
	}
}

func TestCache_WhatIsNeverStored(t *testing.T) {
	cases := []struct {
		name     string
		response []string // headers the backend sets
		request  []string // headers the client sends
		xcache   string
	}{
		{"no-store", []string{"Cache-Control", "no-store"}, nil, "MISS"},
		{"private", []string{"Cache-Control", "private, max-age=60"}, nil, "MISS"},
		{"Set-Cookie", []string{"Cache-Control", "max-age=60", "Set-Cookie", "session=abc"}, nil, "MISS"},
		{"Vary: *", []string{"Cache-Control", "max-age=60", "Vary", "*"}, nil, "MISS"},
		{"a request with Authorization", []string{"Cache-Control", "max-age=60"}, []string{"Authorization", "Bearer x"}, "BYPASS"},
		{"a Range request", []string{"Cache-Control", "max-age=60"}, []string{"Range", "bytes=0-1"}, "BYPASS"},
		{"a 500", []string{"Cache-Control", "max-age=60", "X-Status", "500"}, nil, "MISS"},
		{"a streamed response (an event stream)", []string{"Cache-Control", "max-age=60", "Content-Type", "text/event-stream"}, nil, "MISS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startNumberingBackend(t, func(_ int64, ctx *fasthttp.RequestCtx) {
				for i := 0; i+1 < len(tc.response); i += 2 {
					if tc.response[i] == "X-Status" {
						ctx.SetStatusCode(500)
						continue
					}
					ctx.Response.Header.Set(tc.response[i], tc.response[i+1])
				}
			})
			gw := startGatewayWith(t, cacheConfig(b.addr, "{ttl: 1m}"), Options{})
			get := keepAliveGet(t, gw)
			for i := 1; i <= 2; i++ {
				r := get("/item", tc.request...)
				if cacheResult(r) != tc.xcache || string(r.Body()) != fmt.Sprintf(`{"n":%d}`, i) {
					t.Fatalf("request %d: X-Cache %q body %s; want %s from the backend", i, cacheResult(r), r.Body(), tc.xcache)
				}
			}
		})
	}
}

func TestCache_RouteMayOptInToAuthorizationAndSetCookie(t *testing.T) {
	b := startNumberingBackend(t, func(_ int64, ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Set-Cookie", "seen=1")
	})
	gw := startGatewayWith(t, cacheConfig(b.addr, "{ttl: 1m, allow_authorization: true, allow_set_cookie: true, key: [path, \"header:authorization\"]}"), Options{})
	get := keepAliveGet(t, gw)
	get("/item", "Authorization", "Bearer a")
	r := get("/item", "Authorization", "Bearer a")
	if cacheResult(r) != "HIT" || string(r.Header.Peek("Set-Cookie")) != "seen=1" {
		t.Errorf("opted in: X-Cache %q, Set-Cookie %q; want a HIT with the stored cookie", cacheResult(r), r.Header.Peek("Set-Cookie"))
	}
	if r := get("/item", "Authorization", "Bearer b"); cacheResult(r) != "MISS" || b.hits.Load() != 2 {
		t.Errorf("another caller: X-Cache %q; want its own MISS (the key has the header)", cacheResult(r))
	}
}

func TestCache_VaryKeepsOneVariantPerHeaderValue(t *testing.T) {
	b := startNumberingBackend(t, func(_ int64, ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=60")
		ctx.Response.Header.Set("Vary", "Accept-Encoding, X-Tenant")
		ctx.SetBodyString(fmt.Sprintf("%s/%s", ctx.Request.Header.Peek("Accept-Encoding"), ctx.Request.Header.Peek("X-Tenant")))
	})
	gw := startGatewayWith(t, cacheConfig(b.addr, "{}"), Options{})
	get := keepAliveGet(t, gw)
	steps := []struct {
		encoding, tenant, xcache, body string
		hits                           int64
	}{
		{"gzip", "acme", "MISS", "gzip/acme", 1},
		{"gzip", "acme", "HIT", "gzip/acme", 1},
		{"br", "acme", "MISS", "br/acme", 2},
		{"gzip", "globex", "MISS", "gzip/globex", 3},
		{"br", "acme", "HIT", "br/acme", 3},
		{"gzip", "globex", "HIT", "gzip/globex", 3},
		{"gzip", "acme", "HIT", "gzip/acme", 3},
	}
	for i, s := range steps {
		r := get("/v", "Accept-Encoding", s.encoding, "X-Tenant", s.tenant)
		if cacheResult(r) != s.xcache || string(r.Body()) != s.body || b.hits.Load() != s.hits {
			t.Errorf("step %d (%s, %s): X-Cache %q body %q, backend saw %d; want %s %q after %d",
				i, s.encoding, s.tenant, cacheResult(r), r.Body(), b.hits.Load(), s.xcache, s.body, s.hits)
		}
	}
}

func TestCache_ConditionalRequestsAndRevalidation(t *testing.T) {
	var sawINM atomic.Value
	sawINM.Store("")
	b := startNumberingBackend(t, func(n int64, ctx *fasthttp.RequestCtx) {
		sawINM.Store(string(ctx.Request.Header.Peek("If-None-Match")))
		ctx.Response.Header.Set("Cache-Control", "max-age=10")
		ctx.Response.Header.Set("ETag", `"v1"`)
		ctx.Response.Header.Set("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT")
		if string(ctx.Request.Header.Peek("If-None-Match")) == `"v1"` {
			ctx.Response.Header.Set("Cache-Control", "max-age=30")
			ctx.SetStatusCode(fasthttp.StatusNotModified)
			ctx.ResetBody()
		}
	})
	clock := newTestClock()
	gw := startGatewayWith(t, cacheConfig(b.addr, "{}"), Options{Now: clock.Now})
	get := keepAliveGet(t, gw)
	// The client's own validators never reach the upstream: the cache asks for the whole response.
	if r := get("/doc", "If-None-Match", `"v1"`); r.StatusCode() != 304 || cacheResult(r) != "MISS" || sawINM.Load() != "" {
		t.Fatalf("conditional miss: %d X-Cache %q, upstream saw If-None-Match %q; want 304 MISS, upstream asked without", r.StatusCode(), cacheResult(r), sawINM.Load())
	}
	for _, h := range [][]string{{"If-None-Match", `"v0", W/"v1"`}, {"If-Modified-Since", "Wed, 02 Dec 2026 10:00:00 GMT"}} {
		r := get("/doc", h...)
		if r.StatusCode() != 304 || cacheResult(r) != "HIT" || len(r.Body()) != 0 || string(r.Header.Peek("ETag")) != `"v1"` {
			t.Errorf("%s: %d X-Cache %q body %q; want a 304 HIT with the ETag and no body", h[0], r.StatusCode(), cacheResult(r), r.Body())
		}
	}
	if r := get("/doc", "If-None-Match", `"v2"`); r.StatusCode() != 200 || string(r.Body()) != `{"n":1}` {
		t.Errorf("another ETag: %d %s; want the stored 200", r.StatusCode(), r.Body())
	}
	if b.hits.Load() != 1 {
		t.Fatalf("the backend saw %d requests; want 1", b.hits.Load())
	}
	clock.Advance(11 * time.Second)
	r := get("/doc")
	if r.StatusCode() != 200 || cacheResult(r) != "REVALIDATED" || string(r.Body()) != `{"n":1}` || sawINM.Load() != `"v1"` {
		t.Fatalf("stale: %d X-Cache %q body %s, upstream saw If-None-Match %q; want the stored body REVALIDATED with the stored ETag",
			r.StatusCode(), cacheResult(r), r.Body(), sawINM.Load())
	}
	// The 304's max-age=30 now counts.
	clock.Advance(25 * time.Second)
	if r := get("/doc"); cacheResult(r) != "HIT" || b.hits.Load() != 2 {
		t.Errorf("25s after the revalidation: X-Cache %q, backend saw %d; want a HIT by the 304's max-age", cacheResult(r), b.hits.Load())
	}
}

func TestCache_StaleWhileRevalidateServesStaleAndRefreshesOnce(t *testing.T) {
	release := make(chan struct{})
	b := startNumberingBackend(t, func(n int64, ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=1")
		if n == 2 {
			<-release // the refresh is slow: every request meanwhile gets the stale entry
		}
	})
	clock := newTestClock()
	gw := startGatewayWith(t, cacheConfig(b.addr, "{stale_while_revalidate: 30s}"), Options{Now: clock.Now})
	get := keepAliveGet(t, gw)
	get("/p")
	clock.Advance(5 * time.Second)
	for i := range 20 {
		r := get("/p")
		if cacheResult(r) != "STALE" || string(r.Body()) != `{"n":1}` {
			t.Fatalf("stale request %d: X-Cache %q body %s; want the stale entry at once", i, cacheResult(r), r.Body())
		}
	}
	close(release)
	waitFor(t, "the refreshed entry", func() bool { return cacheResult(get("/p")) == "HIT" })
	if r := get("/p"); string(r.Body()) != `{"n":2}` || b.hits.Load() != 2 {
		t.Errorf("after the refresh: body %s, backend saw %d; want the refreshed body after exactly one refresh", r.Body(), b.hits.Load())
	}
}

func TestCache_StaleIfErrorWhenTheBackendFailsOrIsGone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var status atomic.Int64
	status.Store(200)
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(int(status.Load()))
		ctx.Response.Header.Set("Cache-Control", "max-age=1")
		ctx.SetBodyString("original")
	}}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { _ = srv.Shutdown() })
	clock := newTestClock()
	cfg := strings.Replace(cacheConfig(ln.Addr().String(), "{stale_if_error: 5m}"), "targets:", "retries: {attempts: 1}\n    targets:", 1)
	gw := startGatewayWith(t, cfg, Options{Now: clock.Now})
	get := keepAliveGet(t, gw)
	get("/s")
	clock.Advance(10 * time.Second)
	status.Store(503)
	if r := get("/s"); r.StatusCode() != 200 || cacheResult(r) != "STALE" || string(r.Body()) != "original" {
		t.Errorf("backend answering 503: %d X-Cache %q body %q; want the stale 200", r.StatusCode(), cacheResult(r), r.Body())
	}
	_ = srv.Shutdown()
	_ = ln.Close()
	if r := get("/s"); r.StatusCode() != 200 || cacheResult(r) != "STALE" || string(r.Body()) != "original" {
		t.Errorf("backend gone: %d X-Cache %q body %q; want the stale 200", r.StatusCode(), cacheResult(r), r.Body())
	}
	clock.Advance(5 * time.Minute)
	if r := get("/s"); r.StatusCode() < 500 || !strings.Contains(string(r.Body()), `"error"`) {
		t.Errorf("past stale_if_error, backend gone: %d %q; want the gateway's JSON 5xx", r.StatusCode(), r.Body())
	}
}

// 1,000 clients ask for one cold key at once: the backend sees one request, and every client gets its
// answer.
func TestCache_CoalescesAThousandConcurrentMisses(t *testing.T) {
	started := make(chan struct{})
	var once sync.Once
	b := startNumberingBackend(t, func(_ int64, ctx *fasthttp.RequestCtx) {
		once.Do(func() { close(started) })
		time.Sleep(300 * time.Millisecond) // long enough for the others to arrive
		ctx.Response.Header.Set("Cache-Control", "max-age=60")
	})
	gw := startGatewayWith(t, cacheConfig(b.addr, "{}"), Options{})
	const clients = 1000
	client := &fasthttp.Client{MaxConnsPerHost: clients, ReadTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	results := make([]string, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + gw + "/cold")
			if err := client.Do(req, resp); err != nil {
				results[i] = err.Error()
				return
			}
			results[i] = fmt.Sprintf("%d %s %s", resp.StatusCode(), cacheResult(resp), resp.Body())
		}()
	}
	wg.Wait()
	counts := map[string]int{}
	for _, r := range results {
		counts[r]++
	}
	if b.hits.Load() != 1 {
		t.Errorf("the backend saw %d requests for one cold key; want 1", b.hits.Load())
	}
	if counts[`200 MISS {"n":1}`] != 1 || counts[`200 MISS {"n":1}`]+counts[`200 HIT {"n":1}`] != clients {
		t.Errorf("answers: %v; want one MISS and %d HITs, all with the one response", counts, clients-1)
	}
}

func TestCompile_CacheProblems(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"{store: disk}", `routes[0].filters[0].cache.store: unknown store "disk"; use memory or redis`},
		{"{store: redis}", "routes[0].filters[0].cache.store: redis needs the config's redis block"},
		{"{methods: [GET, POST]}", `routes[0].filters[0].cache.methods[1]: "POST" cannot be cached; use GET and HEAD`},
		{"{key: [path, header]}", `routes[0].filters[0].cache.key[1]: unknown key part "header"; use host, path, query, consumer, header:NAME or cookie:NAME`},
		{"{ttl: 1h, max_ttl: 10m}", "routes[0].filters[0].cache.ttl: 1h0m0s is above max_ttl (10m0s)"},
		{"{max_bytes: 64KiB}", "routes[0].filters[0].cache.max_bytes: must be at least 1MiB"},
		{"{max_bytes: 4MiB, max_object_bytes: 2MiB}", "routes[0].filters[0].cache.max_object_bytes: must be at most a quarter of max_bytes"},
		{"{stale_if_error: -1s}", "routes[0].filters[0].cache.stale_if_error: must be 0 or more"},
	}
	for _, tc := range cases {
		_, err := Compile("test.yaml", []byte(cacheConfig("127.0.0.1:1", tc.yaml)))
		if err == nil || !strings.Contains(err.Error(), "test.yaml:9: "+tc.want) {
			t.Errorf("cache %s: got %v\nwant test.yaml:9: %s", tc.yaml, err, tc.want)
		}
	}
}

// purgeCache posts body to the admin listener's /cache/purge.
func (g *runningGateway) purgeCache(t *testing.T, body string) (int, string) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + g.admin + "/cache/purge")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetBodyString(body)
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode(), string(resp.Body())
}

func cacheRunConfig(backend, extra string) string {
	return `server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
log: {access: false}
` + extra + `upstreams:
  u: {targets: [{url: "http://` + backend + `"}]}
routes:
  - {name: catalog, match: {path: "/products/{rest:*}"}, upstream: u, filters: [{cache: {ttl: 1m}}]}
  - {name: prices, match: {path: "/prices/{rest:*}"}, upstream: u, filters: [{cache: {ttl: 1m}}]}
  - {name: plain, match: {path: "/plain"}, upstream: u}
`
}

func TestCache_PurgeByPrefixAndRouteCountedAndLogged(t *testing.T) {
	b := startNumberingBackend(t, func(int64, *fasthttp.RequestCtx) {})
	g := startRun(t, writeConfigFile(t, cacheRunConfig(b.addr, "")))
	get := keepAliveGet(t, g.public)
	host, _, _ := strings.Cut(g.public, ":") // keys hold the host without its port
	for _, p := range []string{"/products/1", "/products/2", "/products/22", "/prices/1"} {
		get(p)
		if r := get(p); cacheResult(r) != "HIT" {
			t.Fatalf("%s: X-Cache %q before the purge; want HIT", p, cacheResult(r))
		}
	}
	code, body := g.purgeCache(t, `{"prefix": "`+host+`/products/2"}`)
	if code != 200 || !strings.Contains(body, `"purged":2`) || !strings.Contains(body, `"catalog":2`) {
		t.Errorf("purge by prefix: %d %s; want 2 purged from catalog", code, body)
	}
	for p, want := range map[string]string{"/products/1": "HIT", "/products/2": "MISS", "/products/22": "MISS", "/prices/1": "HIT"} {
		if r := get(p); cacheResult(r) != want {
			t.Errorf("%s after the prefix purge: X-Cache %q; want %s", p, cacheResult(r), want)
		}
	}
	if code, body := g.purgeCache(t, `{"route": "prices"}`); code != 200 || !strings.Contains(body, `"purged":1`) {
		t.Errorf("purge by route: %d %s; want 1 purged", code, body)
	}
	if r := get("/prices/1"); cacheResult(r) != "MISS" {
		t.Errorf("/prices/1 after the route purge: X-Cache %q; want MISS", cacheResult(r))
	}
	for _, tc := range []struct {
		body string
		code int
		want string
	}{
		{`{}`, 400, "name a route, a key prefix or both"},
		{`not json`, 400, "the body must be JSON"},
		{`{"route": "plain"}`, 404, "route plain has no cache filter"},
		{`{"route": "nope"}`, 404, "no route is named nope"},
	} {
		if code, body := g.purgeCache(t, tc.body); code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("purge %s: %d %s; want %d %q", tc.body, code, body, tc.code, tc.want)
		}
	}
	m := g.scrape(t)
	for _, s := range []string{`weir_cache_purged_total{route="catalog"} 2`, `weir_cache_purged_total{route="prices"} 1`,
		`weir_cache_requests_total{result="hit",route="catalog"} 4`, `weir_cache_requests_total{result="miss",route="catalog"} 5`} {
		if !hasSample(m, s) {
			t.Errorf("metrics lack %s:\n%s", s, grepWeir(m))
		}
	}
	if v := sampleValue(t, m, `weir_cache_bytes{route="catalog"}`); v < 1 || v > 64<<10 {
		t.Errorf("weir_cache_bytes for catalog's 3 small entries: %v", v)
	}
	if !strings.Contains(g.events.String(), `"prefix":"`+host+`/products/2","purged":2,"message":"cache purged"`) {
		t.Errorf("the purge was not logged:\n%s", g.events.String())
	}
}

// A reload that leaves a cache's route and settings alone keeps its entries; one that changes them
// starts it empty.
func TestCache_ReloadKeepsAnUnchangedCache(t *testing.T) {
	b := startNumberingBackend(t, func(int64, *fasthttp.RequestCtx) {})
	cfg := cacheRunConfig(b.addr, "")
	path := writeConfigFile(t, cfg)
	g := startRun(t, path)
	get := keepAliveGet(t, g.public)
	get("/products/1")
	get("/prices/1")
	changed := strings.Replace(cfg, "plain", "plain2", 2)
	changed = strings.Replace(changed, `{name: prices, match: {path: "/prices/{rest:*}"}, upstream: u, filters: [{cache: {ttl: 1m}}]}`,
		`{name: prices, match: {path: "/prices/{rest:*}"}, upstream: u, filters: [{cache: {ttl: 2m}}]}`, 1)
	if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	g.sighup <- struct{}{}
	g.waitApplied(t, changed)
	if r := get("/products/1"); cacheResult(r) != "HIT" {
		t.Errorf("unchanged cache after a reload: X-Cache %q; want HIT", cacheResult(r))
	}
	if r := get("/prices/1"); cacheResult(r) != "MISS" {
		t.Errorf("changed cache after a reload: X-Cache %q; want MISS (a new cache)", cacheResult(r))
	}
}

// store: redis shares entries between gateways, and a Redis that is gone makes lookups misses, never
// errors.
func TestCache_RedisStoreIsSharedAndDegradesToMisses(t *testing.T) {
	redis := redistest.Start(t, "")
	b := startNumberingBackend(t, func(int64, *fasthttp.RequestCtx) {})
	cfg := strings.ReplaceAll(cacheRunConfig(b.addr, `redis: {addrs: ["`+redis.Addr+`"], timeout: 50ms, retry_interval: 100ms}
`), "{cache: {ttl: 1m}}", "{cache: {ttl: 1m, store: redis, key: [path, query]}}")
	g1 := startRun(t, writeConfigFile(t, cfg))
	g2 := startRun(t, writeConfigFile(t, cfg))
	for _, g := range []*runningGateway{g1, g2} {
		waitFor(t, "redis to be up", func() bool { return hasSample(g.scrape(t), "weir_redis_up 1") })
	}
	one, two := keepAliveGet(t, g1.public), keepAliveGet(t, g2.public)
	if r := one("/products/1?a=1"); cacheResult(r) != "MISS" {
		t.Fatalf("first request: X-Cache %q", cacheResult(r))
	}
	r := two("/products/1?a=1")
	if cacheResult(r) != "HIT" || string(r.Body()) != `{"n":1}` || string(r.Header.ContentType()) != "application/json" {
		t.Fatalf("the other gateway: X-Cache %q body %s type %q; want the first one's entry, a HIT", cacheResult(r), r.Body(), r.Header.ContentType())
	}
	if code, body := g2.purgeCache(t, `{"route": "catalog", "prefix": "/products/"}`); code != 200 || !strings.Contains(body, `"purged":1`) {
		t.Errorf("purge in redis: %d %s", code, body)
	}
	if r := one("/products/1?a=1"); cacheResult(r) != "MISS" {
		t.Errorf("after a purge on the other gateway: X-Cache %q; want MISS", cacheResult(r))
	}

	redis.Stop()
	for i := range 5 {
		start := time.Now()
		r := one("/products/1?a=1")
		if r.StatusCode() != 200 || cacheResult(r) != "MISS" || time.Since(start) > time.Second {
			t.Errorf("redis gone, request %d: %d X-Cache %q in %v; want a MISS served by the backend, quickly", i, r.StatusCode(), cacheResult(r), time.Since(start))
		}
	}
	if code, body := g1.purgeCache(t, `{"route": "catalog"}`); code != 200 {
		t.Errorf("purge with redis gone: %d %s; want 200 (the entries expire on their own)", code, body)
	}
	redis.Restart()
	waitFor(t, "redis to be back", func() bool { return hasSample(g1.scrape(t), "weir_redis_up 1") })
	one("/products/9")
	if r := one("/products/9"); cacheResult(r) != "HIT" {
		t.Errorf("redis back: X-Cache %q; want HIT", cacheResult(r))
	}
}

// A HEAD is answered from GET's entry; a HEAD miss goes upstream as a HEAD and stores nothing.
func TestCache_HeadIsAnsweredFromTheGetEntry(t *testing.T) {
	var heads atomic.Int64
	b := startNumberingBackend(t, func(_ int64, ctx *fasthttp.RequestCtx) {
		if ctx.IsHead() {
			heads.Add(1)
		}
	})
	gw := startGatewayWith(t, strings.Replace(cacheConfig(b.addr, "{}"), `match: {path: "/{rest:*}"}`, `match: {path: "/{rest:*}", methods: [GET, HEAD]}`, 1), Options{})
	head := func() *fasthttp.Response {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.Header.SetMethod(fasthttp.MethodHead)
		req.SetRequestURI("http://" + gw + "/h")
		return send(t, gw, req)
	}
	if r := head(); cacheResult(r) != "MISS" || heads.Load() != 1 {
		t.Fatalf("cold HEAD: X-Cache %q, upstream HEADs %d; want a MISS sent upstream as HEAD", cacheResult(r), heads.Load())
	}
	if r := head(); cacheResult(r) != "MISS" || heads.Load() != 2 {
		t.Errorf("second HEAD: X-Cache %q; want another MISS (a HEAD's answer is not stored)", cacheResult(r))
	}
	keepAliveGet(t, gw)("/h")
	r := head()
	if cacheResult(r) != "HIT" || heads.Load() != 2 || r.Header.ContentLength() != len(`{"n":3}`) {
		t.Errorf("HEAD after a GET: X-Cache %q, upstream HEADs %d, Content-Length %d; want a HIT with the GET body's length", cacheResult(r), heads.Load(), r.Header.ContentLength())
	}
}

// Requests that waited for an answer that may not be stored go upstream themselves, each once.
func TestCache_WaitersForAnUncacheableAnswerGoUpstreamThemselves(t *testing.T) {
	b := startNumberingBackend(t, func(_ int64, ctx *fasthttp.RequestCtx) {
		time.Sleep(100 * time.Millisecond)
		ctx.Response.Header.Set("Cache-Control", "private")
	})
	gw := startGatewayWith(t, cacheConfig(b.addr, "{}"), Options{})
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, _, err := fasthttp.GetTimeout(nil, "http://"+gw+"/private", 5*time.Second); err == nil && code == 200 {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 10 || b.hits.Load() != 10 {
		t.Errorf("%d answered, backend saw %d; want all 10 answered, each by its own upstream request", ok.Load(), b.hits.Load())
	}
}

// stale_if_error stands in for upstream failures, not for a later step's refusal.
func TestCache_StaleIfErrorLeavesALaterStepsRefusalAlone(t *testing.T) {
	b := startNumberingBackend(t, func(_ int64, ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Cache-Control", "max-age=1")
	})
	clock := newTestClock()
	gw := startGatewayWith(t, filterConfig(b.addr, "      - cache: {stale_if_error: 1h}\n      - rate_limit: {rate: 1, per: 1h}\n"), Options{Now: clock.Now})
	get := keepAliveGet(t, gw)
	get("/x")
	clock.Advance(5 * time.Second)
	if r := get("/x"); r.StatusCode() != 429 {
		t.Errorf("stale entry, rate_limit after the cache refusing: %d X-Cache %q; want the 429", r.StatusCode(), cacheResult(r))
	}
}
