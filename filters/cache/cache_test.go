package cache

import (
	"bytes"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
)

func TestParseCacheControl(t *testing.T) {
	cases := []struct {
		in   string
		want directives
	}{
		{"max-age=60", directives{maxAge: time.Minute, hasMaxAge: true}},
		{`public, s-maxage="30", max-age=600`, directives{public: true, sMaxAge: 30 * time.Second, hasSMaxAge: true, maxAge: 10 * time.Minute, hasMaxAge: true}},
		{"No-Store", directives{noStore: true}},
		{`private="Set-Cookie", no-cache="X-A"`, directives{private: true, noCache: true}},
		{"must-revalidate, proxy-revalidate", directives{mustRevalidate: true, proxyRevalidate: true}},
		{"stale-while-revalidate=10, stale-if-error=300", directives{swr: 10 * time.Second, hasSWR: true, sie: 5 * time.Minute, hasSIE: true}},
		{"max-age=99999999999999", directives{maxAge: 1 << 31 * time.Second, hasMaxAge: true}},
		{"max-age=abc", directives{invalid: true}},
		{"max-age", directives{invalid: true}},
		{"max-age=1, max-age=2", directives{maxAge: time.Second, hasMaxAge: true, invalid: true}},
		{"community=UCI, immutable", directives{}},
		{"", directives{}},
	}
	for _, tc := range cases {
		var d directives
		parseCacheControl([]byte(tc.in), &d)
		if d != tc.want {
			t.Errorf("%q: got %+v\nwant %+v", tc.in, d, tc.want)
		}
	}
}

func newTestFilter(t testing.TB, cfg Config) *Filter {
	t.Helper()
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = 10 * time.Minute
	}
	if cfg.Store == "" {
		cfg.Store = "memory"
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 64 << 20
	}
	if cfg.MaxObjectBytes == 0 {
		cfg.MaxObjectBytes = 1 << 20
	}
	if cfg.CoalesceTimeout == 0 {
		cfg.CoalesceTimeout = time.Second
	}
	f, err := New(cfg, filters.Env{Route: "r"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

func TestPolicyOf(t *testing.T) {
	f := newTestFilter(t, Config{TTL: 30 * time.Second, MaxTTL: 5 * time.Minute, StaleWhileRevalidate: 10 * time.Second, StaleIfError: time.Minute})
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	date := string(fasthttp.AppendHTTPDate(nil, now))
	cases := []struct {
		name    string
		status  int
		headers []string
		body    int
		want    responsePolicy
	}{
		{"no freshness: ttl and the route's stale windows", 200, nil, 0, responsePolicy{store: true, lifetime: 30 * time.Second, swr: 10 * time.Second, sie: time.Minute}},
		{"max-age capped by max_ttl", 200, []string{"Cache-Control", "max-age=3600"}, 0, responsePolicy{store: true, lifetime: 5 * time.Minute, swr: 10 * time.Second, sie: time.Minute}},
		{"s-maxage: strict, never stale", 200, []string{"Cache-Control", "s-maxage=20"}, 0, responsePolicy{store: true, lifetime: 20 * time.Second, strict: true}},
		{"must-revalidate", 200, []string{"Cache-Control", "max-age=20, must-revalidate"}, 0, responsePolicy{store: true, lifetime: 20 * time.Second, strict: true}},
		{"the response's stale windows win", 200, []string{"Cache-Control", "max-age=5, stale-while-revalidate=2, stale-if-error=3"}, 0,
			responsePolicy{store: true, lifetime: 5 * time.Second, swr: 2 * time.Second, sie: 3 * time.Second}},
		{"no-cache: stored, revalidated on every use", 200, []string{"Cache-Control", "no-cache", "ETag", `"a"`}, 0,
			responsePolicy{store: true, lifetime: 30 * time.Second, revalidate: true, swr: 10 * time.Second, sie: time.Minute}},
		{"Expires in the past", 200, []string{"Date", date, "Expires", "Thu, 01 Jan 1970 00:00:00 GMT"}, 0, responsePolicy{store: true, swr: 10 * time.Second, sie: time.Minute}},
		{"invalid Expires means expired", 200, []string{"Expires", "0"}, 0, responsePolicy{store: true, swr: 10 * time.Second, sie: time.Minute}},
		{"404 by default", 404, nil, 0, responsePolicy{store: true, lifetime: 30 * time.Second, swr: 10 * time.Second, sie: time.Minute}},
		{"302 only with explicit freshness", 302, nil, 0, responsePolicy{why: "status"}},
		{"302 with max-age", 302, []string{"Cache-Control", "max-age=9"}, 0, responsePolicy{store: true, lifetime: 9 * time.Second, swr: 10 * time.Second, sie: time.Minute}},
		{"500", 500, []string{"Cache-Control", "max-age=9"}, 0, responsePolicy{why: "status"}},
		{"206", 206, []string{"Cache-Control", "max-age=9"}, 0, responsePolicy{why: "status"}},
		{"no-store", 200, []string{"Cache-Control", "max-age=9, no-store"}, 0, responsePolicy{why: "no-store"}},
		{"private", 200, []string{"Cache-Control", "private"}, 0, responsePolicy{why: "private"}},
		{"Set-Cookie", 200, []string{"Set-Cookie", "a=b"}, 0, responsePolicy{why: "set-cookie"}},
		{"Vary: *", 200, []string{"Vary", "Accept, *"}, 0, responsePolicy{why: "vary-star"}},
		{"over max_object_bytes", 200, nil, 1<<20 + 1, responsePolicy{why: "too-large"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var resp fasthttp.Response
			resp.SetStatusCode(tc.status)
			for i := 0; i+1 < len(tc.headers); i += 2 {
				resp.Header.Add(tc.headers[i], tc.headers[i+1])
			}
			resp.SetBody(make([]byte, tc.body))
			if got := f.policyOf(&resp, tc.status, now); got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestNotModified(t *testing.T) {
	lm := "Tue, 01 Dec 2026 10:00:00 GMT"
	cases := []struct {
		headers []string
		want    bool
	}{
		{[]string{"If-None-Match", `"a"`}, true},
		{[]string{"If-None-Match", `"b", W/"a"`}, true},
		{[]string{"If-None-Match", `*`}, true},
		{[]string{"If-None-Match", `"b"`}, false},
		{[]string{"If-None-Match", `"b"`, "If-Modified-Since", "Wed, 02 Dec 2026 10:00:00 GMT"}, false}, // If-None-Match decides
		{[]string{"If-Modified-Since", "Wed, 02 Dec 2026 10:00:00 GMT"}, true},
		{[]string{"If-Modified-Since", lm}, true},
		{[]string{"If-Modified-Since", "Mon, 30 Nov 2026 10:00:00 GMT"}, false},
		{[]string{"If-Modified-Since", "yesterday"}, false},
		{nil, false},
	}
	for _, tc := range cases {
		var h fasthttp.RequestHeader
		for i := 0; i+1 < len(tc.headers); i += 2 {
			h.Set(tc.headers[i], tc.headers[i+1])
		}
		if got := notModified(&h, []byte(`W/"a"`), []byte(lm)); got != tc.want {
			t.Errorf("%q: got %v, want %v", tc.headers, got, tc.want)
		}
	}
}

func TestEntry_EncodingRoundTripsAndRejectsDamage(t *testing.T) {
	var resp fasthttp.Response
	resp.Header.Set("Cache-Control", "max-age=60")
	resp.Header.Set("ETag", `"x"`)
	resp.Header.Set("Connection", "close") // hop-by-hop: not stored
	resp.Header.Add("Link", "</a>; rel=preload")
	resp.Header.Add("Link", "</b>; rel=preload")
	resp.Header.SetContentType("application/json")
	resp.SetBodyString(`{"a":1}`)
	p := responsePolicy{store: true, lifetime: time.Minute, swr: time.Second, sie: time.Hour, strict: true}
	e := newEntry([]byte("example.com/a?b=1"), &resp, p, 12345, false)
	for _, h := range e.Headers {
		if bytes.EqualFold(h[0], []byte("Connection")) {
			t.Errorf("stored a hop-by-hop header: %s", h[0])
		}
	}
	if string(e.ETag) != `"x"` {
		t.Errorf("ETag %q", e.ETag)
	}
	got, err := decode(e.encode())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, e) {
		t.Errorf("round trip:\ngot  %+v\nwant %+v", got, e)
	}
	marker := &Entry{Key: []byte("k"), Vary: [][]byte{[]byte("accept-encoding")}, Lifetime: time.Minute}
	if m, err := decode(marker.encode()); err != nil || !m.marker() || string(m.Vary[0]) != "accept-encoding" {
		t.Errorf("marker round trip: %+v %v", m, err)
	}
	enc := e.encode()
	for _, damaged := range [][]byte{nil, enc[:3], enc[:len(enc)-1], append(bytes.Clone(enc), 0), append([]byte("wc\x02"), enc[3:]...)} {
		if _, err := decode(damaged); err == nil {
			t.Errorf("decoded a damaged entry of %d bytes", len(damaged))
		}
	}
}

// terminal answers like an upstream would, counting calls.
type terminal struct {
	calls int
	body  []byte
}

func (t *terminal) Serve(x *filters.Exchange) {
	t.calls++
	x.Ctx.Response.Header.Set("Cache-Control", "max-age=600")
	x.Ctx.Response.Header.SetContentType("application/json")
	x.Ctx.Response.SetBody(t.body)
}

func newExchange(ctx *fasthttp.RequestCtx, uri string) *filters.Exchange {
	ctx.Request.Reset()
	ctx.Response.Reset()
	ctx.Request.SetRequestURI(uri)
	x := filters.AcquireExchange(ctx)
	x.Host = append(x.HostBuf(), ctx.Host()...)
	x.Path = append(x.PathBuf(), ctx.Path()...)
	return x
}

// A hit answers from the entry without calling the rest of the chain, and allocates nothing.
func TestAllocs_CacheHitAllocatesNothing(t *testing.T) {
	f := newTestFilter(t, Config{TTL: time.Minute})
	up := &terminal{body: bytes.Repeat([]byte("x"), 1024)}
	h := f.Wrap(up)
	var ctx fasthttp.RequestCtx
	x := newExchange(&ctx, "http://example.com/items/1?a=b")
	h.Serve(x)
	filters.ReleaseExchange(x)
	allocs := testing.AllocsPerRun(1000, func() {
		x := newExchange(&ctx, "http://example.com/items/1?a=b")
		h.Serve(x)
		filters.ReleaseExchange(x)
	})
	if up.calls != 1 || string(ctx.Response.Header.Peek("X-Cache")) != "HIT" || len(ctx.Response.Body()) != 1024 {
		t.Fatalf("upstream called %d times, X-Cache %q, %d-byte body; want 1 call, then HITs of 1 KB", up.calls, ctx.Response.Header.Peek("X-Cache"), len(ctx.Response.Body()))
	}
	if allocs != 0 {
		t.Errorf("a hit allocates %.1f times; want 0", allocs)
	}
}

// BenchmarkHit is a 1 KB hit through the filter; BenchmarkMissStore a miss that stores (the terminal
// stands for the upstream, so it is the cache's own cost of a miss).
func BenchmarkHit(b *testing.B) {
	f := newTestFilter(b, Config{TTL: time.Minute})
	h := f.Wrap(&terminal{body: bytes.Repeat([]byte("x"), 1024)})
	var ctx fasthttp.RequestCtx
	x := newExchange(&ctx, "http://example.com/items/1?a=b")
	h.Serve(x)
	filters.ReleaseExchange(x)
	b.ReportAllocs()
	for b.Loop() {
		x := newExchange(&ctx, "http://example.com/items/1?a=b")
		h.Serve(x)
		filters.ReleaseExchange(x)
	}
}

func BenchmarkMissStore(b *testing.B) {
	f := newTestFilter(b, Config{TTL: time.Minute})
	h := f.Wrap(&terminal{body: bytes.Repeat([]byte("x"), 1024)})
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		x := newExchange(&ctx, fmt.Sprintf("http://example.com/items/%d", i))
		h.Serve(x)
		filters.ReleaseExchange(x)
	}
}

type countingCounter struct{ n atomic.Int64 }

func (c *countingCounter) Inc() { c.n.Add(1) }

// The memory store holds at most max_bytes: older entries are evicted, and counted, to make room.
func TestMemoryStore_StaysWithinMaxBytesAndCountsEvictions(t *testing.T) {
	evicted := &countingCounter{}
	f, err := New(Config{TTL: time.Minute, MaxTTL: time.Hour, Store: "memory", MaxBytes: 4 << 20, MaxObjectBytes: 1 << 20,
		CoalesceTimeout: time.Second}, filters.Env{Route: "r", Counters: filters.Counters{Cache: func(event string) filters.Counter {
		if event == "evicted" {
			return evicted
		}
		return filters.NopCounter{}
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := f.Wrap(&terminal{body: bytes.Repeat([]byte("x"), 100<<10)})
	var ctx fasthttp.RequestCtx
	for i := range 200 {
		x := newExchange(&ctx, fmt.Sprintf("http://example.com/big/%d", i))
		h.Serve(x)
		filters.ReleaseExchange(x)
	}
	f.memory.c.CleanUp()
	if held := f.HeldBytes(); held > 4<<20 || held < 1<<20 {
		t.Errorf("the store holds %d bytes after 20 MB of entries; want at most max_bytes (4 MiB), and some", held)
	}
	if n := evicted.n.Load(); n < 150 {
		t.Errorf("%d evictions counted for 200 entries of 100 KiB in 4 MiB; want about 160", n)
	}
}

// panicky panics on its first call, then answers as terminal does.
type panicky struct {
	terminal
	panicked bool
}

func (p *panicky) Serve(x *filters.Exchange) {
	if !p.panicked {
		p.panicked = true
		panic("boom")
	}
	p.terminal.Serve(x)
}

// A panic below the cache (the gateway turns it into a 500) leaves no flight behind: the next
// request for the key goes upstream at once instead of waiting for coalesce_timeout.
func TestPanicBelowTheCacheLeavesNoFlightBehind(t *testing.T) {
	f := newTestFilter(t, Config{TTL: time.Minute, CoalesceTimeout: time.Hour})
	up := &panicky{terminal: terminal{body: []byte("ok")}}
	h := f.Wrap(up)
	var ctx fasthttp.RequestCtx
	func() {
		defer func() { _ = recover() }()
		x := newExchange(&ctx, "http://example.com/p")
		h.Serve(x)
	}()
	done := make(chan struct{})
	go func() {
		var ctx fasthttp.RequestCtx
		x := newExchange(&ctx, "http://example.com/p")
		h.Serve(x)
		filters.ReleaseExchange(x)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the request after a panic waits for the flight the panic left")
	}
	if up.calls != 1 {
		t.Errorf("upstream answered %d times after the panic; want 1", up.calls)
	}
}

// Header and cookie values that pick an entry go into its key as digests: a token or session never
// appears in a key (Redis key names included), and different values still pick different entries.
func TestKey_HoldsDigestsOfHeaderAndCookieValues(t *testing.T) {
	f := newTestFilter(t, Config{TTL: time.Minute, AllowAuthorization: true, Key: []string{"host", "path", "header:Authorization", "cookie:session"}})
	key := func(auth, cookie string) []byte {
		var ctx fasthttp.RequestCtx
		x := newExchange(&ctx, "http://API.example.com:8443/items")
		defer filters.ReleaseExchange(x)
		ctx.Request.Header.Set("Authorization", auth)
		ctx.Request.Header.SetCookie("session", cookie)
		return f.appendKey(nil, x)
	}
	a, b, a2 := key("Bearer s3cr3t-token", "sess-1"), key("Bearer other-token", "sess-1"), key("Bearer s3cr3t-token", "sess-1")
	for _, secret := range []string{"s3cr3t-token", "sess-1"} {
		if bytes.Contains(a, []byte(secret)) {
			t.Errorf("the key %q holds %q", a, secret)
		}
	}
	if !bytes.HasPrefix(a, []byte("api.example.com/items")) || bytes.Equal(a, b) || !bytes.Equal(a, a2) {
		t.Errorf("keys %q, %q, %q: want the host and path first, and a key per token", a, b, a2)
	}
	var req fasthttp.RequestHeader
	req.Set("Cookie", "session=abc")
	req.Set("Accept-Encoding", "gzip")
	v := appendVariant(nil, []byte("k"), [][]byte{[]byte("accept-encoding"), []byte("cookie")}, &req)
	if !bytes.Contains(v, []byte("accept-encoding=gzip\x00")) || bytes.Contains(v, []byte("abc")) {
		t.Errorf("variant key %q: want Accept-Encoding as it is and the cookie as a digest", v)
	}
}

// A request whose lookup missed, or found a stale entry, just before another request stored a fresh
// one (and ended its flight) must not call the upstream again: fetch and refreshInBackground look
// again once they lead.
func TestAFlightLeaderLooksAgainBeforeCallingUpstream(t *testing.T) {
	f := newTestFilter(t, Config{TTL: time.Minute, StaleWhileRevalidate: time.Minute})
	up := &terminal{body: []byte("ok")}
	st := f.Wrap(up).(*step)
	var ctx fasthttp.RequestCtx
	x := newExchange(&ctx, "http://example.com/a")
	st.Serve(x) // stores the entry
	filters.ReleaseExchange(x)
	x = newExchange(&ctx, "http://example.com/a")
	key := f.appendKey(nil, x)
	old := &Entry{Key: key, Status: 200, Lifetime: time.Second}
	st.fetch(x, key, nil)
	if up.calls != 1 || string(ctx.Response.Header.Peek("X-Cache")) != "HIT" {
		t.Errorf("fetch with the entry stored meanwhile: %d upstream calls, X-Cache %q; want 1 and HIT", up.calls, ctx.Response.Header.Peek("X-Cache"))
	}
	st.refreshInBackground(x, key, old)
	filters.ReleaseExchange(x)
	time.Sleep(50 * time.Millisecond) // a refresh, were one started, runs on a goroutine of its own
	if up.calls != 1 {
		t.Errorf("a refresh of an entry replaced meanwhile called the upstream (%d calls)", up.calls)
	}
}
