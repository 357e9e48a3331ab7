package filters

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestCORS_OriginMatching(t *testing.T) {
	c, err := NewCORS(CORSConfig{AllowOrigins: []string{"https://app.example.com", "https://*.example.org", "http://localhost:3000"}}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	for origin, want := range map[string]bool{
		"https://app.example.com":           true,
		"HTTPS://APP.EXAMPLE.COM":           true, // scheme and host are case-insensitive
		"https://app.example.com:443":       false,
		"http://app.example.com":            false,
		"https://a.example.org":             true,
		"https://a.b.example.org":           true,
		"https://example.org":               false,
		"https://.example.org":              false,
		"https://a..example.org":            false,
		"https://evil.com/x.example.org":    false,
		"https://evil.com?.example.org":     false,
		"https://a.example.org.evil.com":    false,
		"http://localhost:3000":             true,
		"http://localhost:3001":             false,
		"null":                              false,
		"":                                  false,
		"https://app.example.com/":          false,
		"https://a-b.example.org":           true,
		"https://a_b.example.org":           false,
		"https://xn--bcher-kva.example.org": true,
	} {
		if got := c.allowed([]byte(origin)); got != want {
			t.Errorf("allowed(%q) = %v, want %v", origin, got, want)
		}
	}
}

func TestAddVary(t *testing.T) {
	for before, want := range map[string]string{
		"":                "Origin",
		"Accept-Encoding": "Accept-Encoding, Origin",
		"origin":          "origin",
		"Accept, Origin":  "Accept, Origin",
		"*":               "*",
		"Originator":      "Originator, Origin",
	} {
		var h fasthttp.ResponseHeader
		if before != "" {
			h.Set("Vary", before)
		}
		AddVary(&h, "Origin")
		if got := string(h.Peek("Vary")); got != want {
			t.Errorf("Vary %q + Origin = %q, want %q", before, got, want)
		}
	}
}

func TestAccess_AllowAndDeny(t *testing.T) {
	a, err := NewAccess(AccessConfig{Allow: []string{"10.0.0.0/8", "2001:db8::/32"}, Deny: []string{"10.6.6.6"}}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	h := a.Wrap(nopHandler{})
	for addr, want := range map[string]int{
		"10.1.2.3": 200, "10.6.6.6": 403, "192.0.2.1": 403, "::ffff:10.1.2.3": 200, "2001:db8::5": 200, "2001:db9::5": 403,
	} {
		var ctx fasthttp.RequestCtx
		x := AcquireExchange(&ctx)
		x.Client = netip.MustParseAddr(addr)
		h.Serve(x)
		got := x.Status
		if got == 0 {
			got = ctx.Response.StatusCode()
		}
		if got != want {
			t.Errorf("%s: %d, want %d", addr, got, want)
		}
		ReleaseExchange(x)
	}
}

func BenchmarkAPIKey(b *testing.B) {
	sum := sha256.Sum256([]byte("bench-key"))
	a, err := NewAPIKey(APIKeyConfig{From: "header:X-API-Key", Keys: []APIKeyEntry{{Consumer: "bench", SHA256: hex.EncodeToString(sum[:])}},
		HideCredentials: true, Realm: "weir"}, Env{})
	if err != nil {
		b.Fatal(err)
	}
	benchFilter(b, a, func(x *Exchange) { x.Ctx.Request.Header.Set("X-API-Key", "bench-key") })
}

func BenchmarkCORS(b *testing.B) {
	c, err := NewCORS(CORSConfig{AllowOrigins: []string{"https://app.example.com", "https://*.example.org"}, MaxAge: time.Minute}, Env{})
	if err != nil {
		b.Fatal(err)
	}
	for _, origin := range []string{"https://app.example.com", "https://a.example.org"} {
		b.Run(origin, func(b *testing.B) {
			benchFilter(b, c, func(x *Exchange) {
				x.Ctx.Request.Header.Set("Origin", origin)
				x.Ctx.Response.Header.Del("Vary")
			})
		})
	}
}

func BenchmarkAccess(b *testing.B) {
	a, err := NewAccess(AccessConfig{Allow: []string{"10.0.0.0/8", "192.168.0.0/16"}, Deny: []string{"10.6.6.6"}}, Env{})
	if err != nil {
		b.Fatal(err)
	}
	client := netip.MustParseAddr("192.168.1.1")
	benchFilter(b, a, func(x *Exchange) { x.Client = client })
}
