package gateway

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	gojwt "github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
)

// proxyRig is a client → weir → backend path over loopback TCP, with the access log off (it would
// measure stdout).
type proxyRig struct {
	client *fasthttp.HostClient
	req    *fasthttp.Request
	resp   *fasthttp.Response
}

func newProxyRig(tb testing.TB, path string) *proxyRig {
	return newProxyRigWith(tb, path, false, "")
}

// benchChain is the default chain bench/ measures: a limiter that never rejects, a breaker, and a
// static header rewrite.
const benchChain = `
defaults:
  filters:
    - rate_limit: {rate: 1000000000, per: 1s, key: client_ip}
    - circuit_breaker: {consecutive_failures: 5, open_timeout: 30s}
    - rewrite: {request_headers: {set: {X-Gateway: weir}, remove: [X-Debug]}, response_headers: {set: {X-Served-By: weir}}}
`

// apiKeyChain and basicAuthChain put one authenticating filter in front of every route; the rig's
// requests carry the credentials authHeaders gives for them.
var (
	apiKeyChain    = "\ndefaults:\n  filters:\n    - api_key: {keys: [{consumer: bench, sha256: " + sha256Hex("bench-key") + "}]}\n"
	basicAuthChain = func() string {
		h, _ := bcrypt.GenerateFromPassword([]byte("bench-password"), bcrypt.MinCost)
		return "\ndefaults:\n  filters:\n    - basic_auth: {users: {bench: \"" + string(h) + "\"}}\n"
	}()
	corsChain = "\ndefaults:\n  filters:\n    - cors: {allow_origins: [https://app.example.com]}\n    - access: {allow: [127.0.0.0/8]}\n"
	// jwtChain's JWKS_FILE is replaced by a file holding benchSigner's key (see newRig).
	jwtChain = "\ndefaults:\n  filters:\n    - jwt: {jwks_file: JWKS_FILE, audiences: [bench], forward_claims: {email: X-User-Email}}\n"
	// tracedUnsampled and tracedSampled turn tracing on; the rig's requests come without a
	// traceparent, so sample_ratio decides. OTLP_RECEIVER is replaced by a real receiver (see newRig).
	// cacheChain caches every route's answers: after the first request, each is a hit.
	cacheChain      = "\ndefaults:\n  filters:\n    - cache: {ttl: 10m}\n"
	tracedUnsampled = "\ntracing: {otlp_endpoint: \"http://OTLP_RECEIVER\", sample_ratio: 0}\n"
	tracedSampled   = "\ntracing: {otlp_endpoint: \"http://OTLP_RECEIVER\", sample_ratio: 1, queue_size: 65536}\n"
)

// benchSigner signs the rig's tokens for jwtChain, one key for the whole test binary.
var benchSigner = sync.OnceValue(func() signer {
	return newSigner(&testing.T{}, "bench", "ES256")
})

// authHeaders are the request headers a rig's chain needs to let requests through.
func authHeaders(chain string) []string {
	switch chain {
	case apiKeyChain:
		return []string{"X-API-Key", "bench-key"}
	case basicAuthChain:
		return []string{"Authorization", basicHeader("bench", "bench-password")}
	case corsChain:
		return []string{"Origin", "https://app.example.com"}
	case jwtChain:
		s := benchSigner()
		tok := s.token(&testing.T{}, gojwt.MapClaims{"aud": "bench", "email": "bench@example.com"})
		return []string{"Authorization", "Bearer " + tok}
	}
	return nil
}

// newProxyRigWith is newProxyRig with the access log on (written to io.Discard) when accessLog is
// set, and extra config (such as benchChain) appended.
func newProxyRigWith(tb testing.TB, path string, accessLog bool, extra string) *proxyRig {
	return newRig(tb, path, accessLog, extra, false)
}

// newHTTPSProxyRig is newProxyRigWith with the client on the HTTPS listener (keep-alive, so the
// handshake happens once), HSTS on.
func newHTTPSProxyRig(tb testing.TB, path string, accessLog bool, extra string) *proxyRig {
	return newRig(tb, path, accessLog, extra, true)
}

func newRig(tb testing.TB, path string, accessLog bool, extra string, https bool) *proxyRig {
	body := []byte("Hello, World!") // 13 bytes, the bench/ "small GET" size
	config := extra
	if extra == jwtChain {
		set, _ := json.Marshal(map[string]any{"keys": []map[string]string{benchSigner().jwk()}})
		config = strings.Replace(extra, "JWKS_FILE", strconv.Quote(writeConfigFile(tb, string(set))), 1)
	}
	if strings.Contains(extra, "OTLP_RECEIVER") {
		config = strings.Replace(extra, "OTLP_RECEIVER", startOTLPReceiver(tb).addr, 1)
	}
	backend := startBackend(tb, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("text/plain")
		ctx.SetBody(body)
	})
	// Metrics on, as weir runs: the hot path counts every request.
	var server string
	var f *tlsFiles
	if https {
		f = newTLSFiles(tb)
		cert, key := f.issue(tb, "gateway", "127.0.0.1")
		server = tlsServerBlock("    hsts_max_age: 24h\n", [2]string{cert, key})
	}
	snap, err := CompileWith("bench.yaml", []byte(server+`log: {access: `+strconv.FormatBool(accessLog)+`}
upstreams:
  backend:
    targets: [{url: "http://`+backend+`"}]
routes:
  - {name: user, match: {path: "/users/{id}", methods: [GET, OPTIONS]}, upstream: backend}
  - {name: static, match: {path: /static}, upstream: backend}
  - name: canary
    match: {path: /canary, headers: [{name: X-Canary, value: "on"}], query: [{name: v, regex: "^2"}], cookies: [{name: beta, present: true}]}
    upstream: backend
`+config), Options{Log: zerolog.Nop(), Metrics: NewMetrics()})
	if err != nil {
		tb.Fatal(err)
	}
	r := &proxyRig{req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()}
	if https {
		_, gw, _ := serveBoth(tb, snap)
		r.client = &fasthttp.HostClient{Addr: gw, NoDefaultUserAgentHeader: true, IsTLS: true, TLSConfig: &tls.Config{RootCAs: f.ca.Pool()}}
		r.req.SetRequestURI("https://" + gw + path)
	} else {
		gw, _ := serveSnapshotLogged(tb, snap, io.Discard)
		r.client = &fasthttp.HostClient{Addr: gw, NoDefaultUserAgentHeader: true}
		r.req.SetRequestURI("http://" + gw + path)
	}
	r.req.Header.Set("X-Request-Id", "bench-request")
	if strings.HasPrefix(path, "/canary") { // what the canary route's conditions ask for
		r.req.Header.Set("X-Canary", "on")
		r.req.Header.SetCookie("beta", "1")
	}
	h := authHeaders(extra)
	for i := 0; i+1 < len(h); i += 2 {
		r.req.Header.Set(h[i], h[i+1])
	}
	tb.Cleanup(func() {
		fasthttp.ReleaseRequest(r.req)
		fasthttp.ReleaseResponse(r.resp)
	})
	return r
}

func (r *proxyRig) do(tb testing.TB) {
	if err := r.client.DoTimeout(r.req, r.resp, 5*time.Second); err != nil || r.resp.StatusCode() != 200 {
		tb.Fatalf("proxied GET: %v, status %d", err, r.resp.StatusCode())
	}
}

// longParam is a parameter value longer than Go's 32-byte stack buffer for string conversions: the
// router's lookup copied such a value to the heap on every request.
const longParam = "0123456789abcdef0123456789abcdef0123456789"

// BenchmarkProxyGET is the whole path for a 13-byte GET: client, gateway and backend share the CPU,
// so ns/op is an upper bound on the gateway's cost; allocs/op counts all three processes' worth of
// goroutines and should be 0.
func BenchmarkProxyGET(b *testing.B) {
	for _, bc := range []struct{ name, path, extra string }{
		{"static-route", "/static", ""},
		{"param-route", "/users/42", ""},
		{"static-route-default-chain", "/static", benchChain},
		{"https-static-route", "/static", ""},
		{"static-route-api-key", "/static", apiKeyChain},
		{"static-route-basic-auth", "/static", basicAuthChain},
		{"static-route-cors-access", "/static", corsChain},
		{"static-route-jwt-es256", "/static", jwtChain},
		{"static-route-traced-unsampled", "/static", tracedUnsampled},
		{"static-route-traced-sampled", "/static", tracedSampled},
		{"param-route-long-value", "/users/" + longParam, ""},
		{"static-route-cache-hit", "/static", cacheChain},
		{"conditions-route", "/canary?v=2", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rig := newProxyRigWith
			if strings.HasPrefix(bc.name, "https-") {
				rig = newHTTPSProxyRig
			}
			r := rig(b, bc.path, false, bc.extra)
			r.do(b)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r.do(b)
			}
		})
	}
}

// BenchmarkMatch is route lookup alone.
func BenchmarkMatch(b *testing.B) {
	snap, err := Compile("bench.yaml", []byte(`upstreams:
  u: {targets: [{url: "http://127.0.0.1:9"}]}
routes:
  - {name: user, match: {path: "/users/{id}", methods: [GET]}, upstream: u}
  - {name: static, match: {path: /static}, upstream: u}
  - {name: wild, match: {hosts: ["*.example.com"], path: "/api/{rest:*}"}, upstream: u}
`))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, host, path string }{
		{"static", "localhost", "/static"},
		{"param", "localhost", "/users/42"},
		{"wildcard-host-catch-all", "a.example.com", "/api/v1/things"},
		{"not-found", "localhost", "/nothing/here"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod("GET")
			host, path := []byte(bc.host), []byte(bc.path)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				snap.match(&ctx, host, path)
				ctx.ResetUserValues()
			}
		})
	}
}

// browserRequest is a request as a browser sends it through a CDN: the header work of the request path
// (request ID, hygiene checks, hop-by-hop strip, forwarding headers) grows with its lines.
const browserRequest = "GET /static?q=1 HTTP/1.1\r\nHost: api.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Referer: https://www.example.com/\r\nCookie: session=0123456789abcdef; theme=dark\r\n" +
	"Sec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Site: same-site\r\n" +
	"Priority: u=0, i\r\nConnection: keep-alive\r\n\r\n"

// BenchmarkRequestHeaders is the gateway's own header work on a browser's request, without the network:
// what handle does before the route's chain runs.
func BenchmarkRequestHeaders(b *testing.B) {
	snap, err := Compile("bench.yaml", []byte(`upstreams:
  u: {targets: [{url: "http://127.0.0.1:9"}]}
routes:
  - {name: static, match: {path: /static}, upstream: u}
`))
	if err != nil {
		b.Fatal(err)
	}
	var tmpl fasthttp.Request
	if err := tmpl.Read(bufio.NewReader(strings.NewReader(browserRequest))); err != nil {
		b.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&tmpl, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 40000}, nil)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tmpl.Header.CopyTo(&ctx.Request.Header)
		x := filters.AcquireExchange(&ctx)
		requestID(&ctx, x)
		if status, _ := checkRequest(&ctx); status != 0 {
			b.Fatalf("checkRequest: %d", status)
		}
		snap.forwardHeaders(&ctx, x)
		filters.ReleaseExchange(x)
	}
}
