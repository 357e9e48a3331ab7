package filters

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

// counter is a terminal handler counting the requests that got through.
type counter struct{ n int }

func (c *counter) Serve(x *Exchange) { c.n++; x.Ctx.Response.SetStatusCode(200) }

// limiterRig runs one rate_limit filter over fresh exchanges.
type limiterRig struct {
	t     *testing.T
	clock *fakeClock
	h     Handler
	up    *counter
	ctx   fasthttp.RequestCtx
}

func newLimiterRig(t *testing.T, cfg RateLimitConfig) *limiterRig {
	t.Helper()
	if cfg.Per == 0 {
		cfg.Per = time.Second
	}
	if cfg.Key == "" {
		cfg.Key = "route"
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = 100000
	}
	r := &limiterRig{t: t, clock: newFakeClock(), up: &counter{}}
	rl, err := NewRateLimit(cfg, Env{Now: r.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	r.h = rl.Wrap(r.up)
	return r
}

// do sends one request from client (an address) with the given headers; it returns the exchange's
// rejection status (0 if it reached the upstream) and the response headers.
func (r *limiterRig) do(client string, headers ...string) (int, *fasthttp.ResponseHeader) {
	r.ctx.Request.Reset()
	r.ctx.Response.Reset()
	for i := 0; i+1 < len(headers); i += 2 {
		r.ctx.Request.Header.Set(headers[i], headers[i+1])
	}
	x := AcquireExchange(&r.ctx)
	defer ReleaseExchange(x)
	if client != "" {
		x.Client = netip.MustParseAddr(client)
	}
	r.h.Serve(x)
	return x.Status, &r.ctx.Response.Header
}

func TestRateLimit_AcceptsBurstPlusRateTimesDuration(t *testing.T) {
	for _, tc := range []struct {
		rate  float64
		per   time.Duration
		burst int
	}{
		{rate: 100, per: time.Second, burst: 200},
		{rate: 10, per: time.Second, burst: 1},
		{rate: 600, per: time.Minute, burst: 50},
		{rate: 1000, per: time.Second, burst: 10},
	} {
		t.Run(fmt.Sprintf("rate %g per %s burst %d", tc.rate, tc.per, tc.burst), func(t *testing.T) {
			r := newLimiterRig(t, RateLimitConfig{Rate: tc.rate, Per: tc.per, Burst: tc.burst})
			// Offer far more than the limit, evenly, over 3 s.
			const offered = 30000
			for i := 0; i < offered; i++ {
				r.do("")
				r.clock.advance(3 * time.Second / offered)
			}
			want := float64(tc.burst) + 3*tc.rate/tc.per.Seconds()
			if got := float64(r.up.n); math.Abs(got-want) > 0.05*want {
				t.Fatalf("accepted %v of %d over 3s, want %v ± 5%%", got, offered, want)
			}
		})
	}
}

func TestRateLimit_RejectionsDoNotConsumeFutureTokens(t *testing.T) {
	r := newLimiterRig(t, RateLimitConfig{Rate: 10, Burst: 5})
	for i := 0; i < 5; i++ {
		if st, _ := r.do(""); st != 0 {
			t.Fatalf("request %d of the burst rejected", i)
		}
	}
	for i := 0; i < 1000; i++ { // a client hammering while empty
		if st, _ := r.do(""); st != 429 {
			t.Fatalf("request over the burst got %d, want 429", st)
		}
	}
	r.clock.advance(100 * time.Millisecond) // exactly one token at 10/s
	if st, _ := r.do(""); st != 0 {
		t.Fatal("after one refill interval the next request was rejected: rejections consumed tokens")
	}
	if st, _ := r.do(""); st != 429 {
		t.Fatal("a second request in the same interval was accepted")
	}
}

func TestRateLimit_HeadersAndRetryAfterRoundedUp(t *testing.T) {
	for _, tc := range []struct {
		desc                             string
		cfg                              RateLimitConfig
		sent                             int
		wantStatus                       int
		wantPolicy, wantLimit, wantRetry string
	}{
		{"first of a burst", RateLimitConfig{Rate: 100, Burst: 200}, 1, 0,
			`"default";q=100;w=1`, `"default";r=199;t=1`, ""},
		{"2/s, the third request waits half a second: Retry-After 1", RateLimitConfig{Rate: 2, Burst: 2}, 3, 429,
			`"default";q=2;w=1`, `"default";r=0;t=1`, "1"},
		{"1 per 10s, the second request waits 10s", RateLimitConfig{Rate: 1, Per: 10 * time.Second, Burst: 1}, 2, 429,
			`"default";q=1;w=10`, `"default";r=0;t=10`, "10"},
		{"5 per 200ms is stated per second", RateLimitConfig{Rate: 5, Per: 200 * time.Millisecond, Burst: 5}, 1, 0,
			`"default";q=25;w=1`, `"default";r=4;t=1`, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := newLimiterRig(t, tc.cfg)
			var st int
			var h *fasthttp.ResponseHeader
			for i := 0; i < tc.sent; i++ {
				st, h = r.do("")
			}
			got := fmt.Sprintf("%d|%s|%s|%s", st, h.Peek("RateLimit-Policy"), h.Peek("RateLimit"), h.Peek("Retry-After"))
			want := fmt.Sprintf("%d|%s|%s|%s", tc.wantStatus, tc.wantPolicy, tc.wantLimit, tc.wantRetry)
			if got != want {
				t.Errorf("status|policy|ratelimit|retry-after = %s, want %s", got, want)
			}
		})
	}
}

func TestRateLimit_PolicyStatesTheQuotaExactlyInWholeSeconds(t *testing.T) {
	for _, tc := range []struct {
		rate float64
		per  time.Duration
		want string
	}{
		{100, time.Second, `"default";q=100;w=1`},
		{600, time.Minute, `"default";q=600;w=60`},
		{5, 200 * time.Millisecond, `"default";q=25;w=1`},
		{1, 1400 * time.Millisecond, `"default";q=5;w=7`},
		{0.5, time.Second, `"default";q=1;w=2`},
		{3, 2500 * time.Millisecond, `"default";q=6;w=5`},
	} {
		if got := string(policyValue(tc.rate, tc.per)); got != tc.want {
			t.Errorf("rate %g per %s: %s, want %s", tc.rate, tc.per, got, tc.want)
		}
	}
}

func TestBucketTable_MemoryIsBoundedForLongHeaderKeys(t *testing.T) {
	r := newLimiterRig(t, RateLimitConfig{Rate: 1, Per: time.Hour, Burst: 1, Key: "header:X-Key", MaxKeys: 1000})
	long := strings.Repeat("k", 8<<10)
	r.do("", "X-Key", long+"1")
	if st, _ := r.do("", "X-Key", long+"1"); st != 429 {
		t.Fatal("the same long key did not share its bucket")
	}
	if st, _ := r.do("", "X-Key", long+"2"); st != 0 {
		t.Fatal("a different long key shared a bucket")
	}
	tbl := r.h.(*rateLimitStep).table
	for i := range tbl.shards {
		for k := range tbl.shards[i].buckets {
			if len(k) > 16 {
				t.Fatalf("the table holds a %d-byte key; client keys must be stored as digests", len(k))
			}
		}
	}
}

func TestBucketTable_SmallTablesUseTheirWholeCapacity(t *testing.T) {
	clock := newFakeClock()
	tbl := newBucketTable(1, 1, 100)
	own := 0
	for i := 0; i < 100; i++ {
		if tbl.get([]byte(fmt.Sprint("client-", i)), clock.now()) != tbl.overflow {
			own++
		}
	}
	if own != 100 {
		t.Fatalf("max_keys 100: only %d of 100 clients got their own bucket", own)
	}
}

func TestRateLimit_KeysSeparateClients(t *testing.T) {
	type req struct {
		client string
		header []string
	}
	for _, tc := range []struct {
		desc   string
		key    string
		first  req // exhausts its bucket (burst 1)
		second req
		shared bool // second is limited by first's bucket
	}{
		{"route: everyone shares", "route", req{client: "10.0.0.1"}, req{client: "10.0.0.2"}, true},
		{"client_ip: IPv4 clients apart", "client_ip", req{client: "10.0.0.1"}, req{client: "10.0.0.2"}, false},
		{"client_ip: one IPv6 /64 shares", "client_ip", req{client: "2001:db8:1:2::1"}, req{client: "2001:db8:1:2:ffff::9"}, true},
		{"client_ip: another /64 is apart", "client_ip", req{client: "2001:db8:1:2::1"}, req{client: "2001:db8:1:3::1"}, false},
		{"header: values apart", "header:X-Api-Key", req{header: []string{"X-Api-Key", "a"}}, req{header: []string{"X-Api-Key", "b"}}, false},
		{"header: same value shares", "header:X-Api-Key", req{header: []string{"X-Api-Key", "a"}}, req{client: "10.9.9.9", header: []string{"X-Api-Key", "a"}}, true},
		{"header: requests without it share one bucket", "header:X-Api-Key", req{client: "10.0.0.1"}, req{client: "10.0.0.2"}, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := newLimiterRig(t, RateLimitConfig{Rate: 1, Per: time.Hour, Burst: 1, Key: tc.key})
			if st, _ := r.do(tc.first.client, tc.first.header...); st != 0 {
				t.Fatalf("first request rejected with %d", st)
			}
			st, _ := r.do(tc.second.client, tc.second.header...)
			if shared := st == 429; shared != tc.shared {
				t.Fatalf("second request got %d; shared bucket = %v, want %v", st, shared, tc.shared)
			}
		})
	}
}

func TestBucketTable_MillionKeysStayWithinBoundAndActiveKeysSurvive(t *testing.T) {
	clock := newFakeClock()
	const maxKeys = 10000
	tbl := newBucketTable(1, 1, maxKeys) // 1 token per second, burst 1
	active := []byte("legit-client")
	tbl.get(active, clock.now()).AllowN(clock.now(), 1) // its bucket is now empty: active, not idle

	var key [16]byte
	for i := 0; i < 1_000_000; i++ {
		n := copy(key[:], "spray-")
		k := fmt.Appendf(key[:n], "%d", i)
		b := tbl.get(k, clock.now())
		b.AllowN(clock.now(), 1)
		if i%100000 == 0 {
			clock.advance(10 * time.Millisecond) // not enough for any bucket to refill
		}
	}
	if n := tbl.len(); n > maxKeys {
		t.Fatalf("table holds %d keys after 1,000,000 distinct ones, bound is %d", n, maxKeys)
	}
	if b := tbl.get(active, clock.now()); b == tbl.overflow || b.AllowN(clock.now(), 1) {
		t.Fatal("the active client's bucket was evicted or reset by the key flood")
	}
}

func TestBucketTable_IdleBucketsMakeRoomForNewKeys(t *testing.T) {
	clock := newFakeClock()
	tbl := newBucketTable(1, 1, 64) // one key per shard
	for i := 0; i < 10000; i++ {
		tbl.get([]byte(fmt.Sprint("old-", i)), clock.now()).AllowN(clock.now(), 1)
	}
	full := tbl.len()
	clock.advance(2 * time.Second) // every bucket refills: idle
	fresh := 0
	for i := 0; i < 10000; i++ {
		if tbl.get([]byte(fmt.Sprint("new-", i)), clock.now()) != tbl.overflow {
			fresh++
		}
	}
	if full != 64 || fresh < 64 {
		t.Fatalf("table held %d keys; after they went idle %d new keys got their own bucket, want all 64 slots reused", full, fresh)
	}
}

func TestNewRateLimit_RejectsBadSettings(t *testing.T) {
	for _, tc := range []struct {
		cfg  RateLimitConfig
		want string
	}{
		{RateLimitConfig{Rate: 0, Per: time.Second, Key: "route", MaxKeys: 1}, "rate: must be more than 0 requests per 1s"},
		{RateLimitConfig{Rate: 1, Per: 0, Key: "route", MaxKeys: 1}, "per: must be more than zero"},
		{RateLimitConfig{Rate: 1, Per: time.Second, Burst: -1, Key: "route", MaxKeys: 1}, "burst: must be 1 or more (or absent for the default, rate rounded up)"},
		{RateLimitConfig{Rate: 1, Per: time.Second, Key: "ip", MaxKeys: 1}, `key: unknown key "ip"; use route, client_ip, header:NAME or consumer`},
		{RateLimitConfig{Rate: 1, Per: time.Second, Key: "header:", MaxKeys: 1}, `key: unknown key "header:"; use route, client_ip, header:NAME or consumer`},
		{RateLimitConfig{Rate: 1, Per: time.Second, Key: "route", MaxKeys: 0}, "max_keys: must be 1 or more"},
	} {
		_, err := NewRateLimit(tc.cfg, Env{Now: time.Now})
		got := configErrorTexts(err)
		if strings.Join(got, "; ") != tc.want {
			t.Errorf("NewRateLimit(%+v) = %q, want %q", tc.cfg, got, tc.want)
		}
	}
}
