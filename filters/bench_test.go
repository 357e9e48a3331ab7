package filters

import (
	"net/netip"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

type nopHandler struct{}

func (nopHandler) Serve(x *Exchange) { x.Ctx.Response.SetStatusCode(200) }

// benchFilter measures one filter step around a do-nothing upstream.
func benchFilter(b *testing.B, f Filter, setup func(x *Exchange)) {
	h := f.Wrap(nopHandler{})
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/users/42")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		x := AcquireExchange(&ctx)
		setup(x)
		h.Serve(x)
		ReleaseExchange(x)
	}
}

func BenchmarkRateLimit(b *testing.B) {
	for _, key := range []string{"route", "client_ip", "header:X-Api-Key"} {
		b.Run(key, func(b *testing.B) {
			rl, err := NewRateLimit(RateLimitConfig{Rate: 1e9, Per: time.Second, Key: key, MaxKeys: 100000}, Env{Now: time.Now})
			if err != nil {
				b.Fatal(err)
			}
			clients := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1")}
			i := 0
			benchFilter(b, rl, func(x *Exchange) {
				i++
				x.Client = clients[i&1]
				x.Ctx.Request.Header.Set("X-Api-Key", "key-1")
			})
		})
	}
}

func BenchmarkCircuitBreaker(b *testing.B) {
	cb, err := NewCircuitBreaker(CircuitBreakerConfig{ConsecutiveFailures: 5, OpenTimeout: time.Second, HalfOpenRequests: 1}, Env{Now: time.Now})
	if err != nil {
		b.Fatal(err)
	}
	benchFilter(b, cb, func(*Exchange) {})
}
