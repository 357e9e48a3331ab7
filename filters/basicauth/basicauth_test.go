package basicauth

import (
	"encoding/base64"
	"net/netip"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/crypto/bcrypt"

	"github.com/weir-gateway/weir/filters"
)

type ok struct{}

func (ok) Serve(x *filters.Exchange) { x.Ctx.Response.SetStatusCode(200) }

func newFilter(t testing.TB, cacheTTL time.Duration, now func() time.Time) *Filter {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(Config{Users: map[string]string{"alice": string(h)}, Realm: "weir", HideCredentials: true,
		CacheTTL: cacheTTL, MaxCached: 2, MaxFailures: 100, FailureWindow: time.Minute}, filters.Env{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func serve(h filters.Handler, auth string) (status int, consumer string) {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.Set("Authorization", auth)
	x := filters.AcquireExchange(&ctx)
	defer filters.ReleaseExchange(x)
	x.Client = netip.MustParseAddr("192.0.2.1")
	h.Serve(x)
	status = x.Status
	if status == 0 {
		status = ctx.Response.StatusCode()
	}
	return status, string(x.Consumer)
}

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

func TestCredentials(t *testing.T) {
	for auth, want := range map[string][2]string{
		basic("alice", "pw"):            {"alice", "pw"},
		basic("alice", "p:w"):           {"alice", "p:w"}, // the first colon separates
		"basic " + basic("a", "b")[6:]:  {"a", "b"},
		basic("", "pw"):                 {"", "pw"},
		"Bearer xyz":                    {"-", ""},
		"Basic !!!":                     {"-", ""},
		"Basic " + base64Of("no colon"): {"-", ""},
		"Basic":                         {"-", ""},
	} {
		var buf [512]byte
		name, pw, ok := credentials(buf[:], []byte(auth))
		got := [2]string{string(name), string(pw)}
		if !ok {
			got = [2]string{"-", ""}
		}
		if got != want {
			t.Errorf("credentials(%q) = %q, want %q", auth, got, want)
		}
	}
}

func base64Of(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// A successful check is remembered until cache_ttl; a failed one never is, and the cache keeps to
// max_cached entries.
func TestCache_RemembersSuccessesOnlyForTheirTTL(t *testing.T) {
	now := time.Unix(1000, 0)
	f := newFilter(t, time.Minute, func() time.Time { return now })
	h := f.Wrap(ok{})
	if st, who := serve(h, basic("alice", "pw")); st != 200 || who != "alice" {
		t.Fatalf("right password: %d %q", st, who)
	}
	good := f.cache.key([]byte("alice"), []byte("pw"))
	if !f.cache.has(good, now) {
		t.Fatal("a successful check was not remembered")
	}
	if st, _ := serve(h, basic("alice", "wrong")); st != 401 {
		t.Fatalf("wrong password: %d", st)
	}
	if f.cache.has(f.cache.key([]byte("alice"), []byte("wrong")), now) || len(f.cache.until) != 1 {
		t.Fatal("a failed check was remembered")
	}
	if f.cache.has(good, now.Add(time.Minute)) {
		t.Fatal("remembered past cache_ttl")
	}
	for i := range 3 {
		f.cache.add(f.cache.key([]byte("u"), []byte{byte(i)}), now)
	}
	if n := len(f.cache.until); n != 2 {
		t.Fatalf("cache holds %d entries, max_cached is 2", n)
	}
}

func BenchmarkBasicAuth_Remembered(b *testing.B) {
	f := newFilter(b, time.Hour, time.Now)
	h := f.Wrap(ok{})
	auth := basic("alice", "pw")
	var ctx fasthttp.RequestCtx
	if st, _ := serve(h, auth); st != 200 {
		b.Fatal(st)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx.Request.Header.Set("Authorization", auth)
		x := filters.AcquireExchange(&ctx)
		h.Serve(x)
		filters.ReleaseExchange(x)
	}
}
