package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"golang.org/x/crypto/bcrypt"
)

// Authentication and access filters end to end: real requests through a gateway to a recording
// backend, which shows what reached the upstream (and whether anything did).

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// request sends method uri to the gateway with the given header pairs.
func request(t *testing.T, gw, method, uri string, header ...string) *fasthttp.Response {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(method)
	req.SetRequestURI("http://" + gw + uri)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return send(t, gw, req)
}

func expectStatus(t *testing.T, resp *fasthttp.Response, want int, what string) {
	t.Helper()
	if got := resp.StatusCode(); got != want {
		t.Fatalf("%s: status %d, want %d; body %s", what, got, want, resp.Body())
	}
}

func TestAPIKey_KeysFromConfigAndFileIdentifyTheConsumerAndAreHidden(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	dir := t.TempDir()
	keysFile := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(keysFile, []byte(fmt.Sprintf("- {consumer: partner, sha256: %s}\n", sha256Hex("partner-key"))), 0o600); err != nil {
		t.Fatal(err)
	}
	gw, _ := startGateway(t, filterConfig(b.Addr, fmt.Sprintf(`      - api_key:
          keys: [{consumer: mobile-app, sha256: %s}]
          keys_file: %s
`, sha256Hex("mobile-key"), keysFile)))

	resp := request(t, gw, "GET", "/orders", "X-Consumer", "admin")
	expectStatus(t, resp, 401, "no key")
	if got := string(resp.Header.Peek("WWW-Authenticate")); got != `APIKey realm="weir"` {
		t.Errorf("WWW-Authenticate %q", got)
	}
	expectStatus(t, request(t, gw, "GET", "/orders", "X-API-Key", "wrong"), 401, "unknown key")
	b.expectNone(t)

	for key, consumer := range map[string]string{"mobile-key": "mobile-app", "partner-key": "partner"} {
		expectStatus(t, request(t, gw, "GET", "/orders", "X-API-Key", key, "X-Consumer", "admin"), 200, key)
		got := b.take(t)
		if v := got.Header.Values("X-Consumer"); len(v) != 1 || v[0] != consumer {
			t.Errorf("%s: upstream X-Consumer %q, want only %q", key, v, consumer)
		}
		if v := got.Header.Get("X-Api-Key"); v != "" {
			t.Errorf("%s: the key reached the upstream: %q", key, v)
		}
	}
}

func TestAPIKey_FromTheQueryIsRemovedFromTheUpstreamTarget(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, filterConfig(b.Addr, fmt.Sprintf(`      - api_key:
          from: query:api_key
          keys: [{consumer: c1, sha256: %s}]
`, sha256Hex("k1"))))
	expectStatus(t, request(t, gw, "GET", "/items?page=2&api_key=k1&sort=asc"), 200, "key in the query")
	if got := b.take(t).Target; got != "/items?page=2&sort=asc" {
		t.Errorf("upstream target %q, want the key removed and the rest kept", got)
	}
	expectStatus(t, request(t, gw, "GET", "/items?api_key=k2"), 401, "wrong key in the query")
}

// A reload that changes only the keys file's content takes effect: the file is part of the
// filter's identity.
func TestAPIKey_ChangedKeysFileIsReadAgainAtReload(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	dir := t.TempDir()
	keysFile := filepath.Join(dir, "keys.yaml")
	write := func(key string) {
		if err := os.WriteFile(keysFile, []byte(fmt.Sprintf("- {consumer: c, sha256: %s}\n", sha256Hex(key))), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("old-key")
	config := filterConfig(b.Addr, "      - api_key: {keys_file: keys.yaml}\n")
	path := filepath.Join(dir, "config.yaml")
	opts := Options{Log: zerolog.Nop()}
	first, err := CompileWith(path, []byte(config), opts)
	if err != nil {
		t.Fatal(err)
	}
	gw, srv := serveSnapshot(t, first)
	expectStatus(t, request(t, gw, "GET", "/", "X-API-Key", "old-key"), 200, "old key")
	write("new-key")
	opts.Previous = first
	second, err := CompileWith(path, []byte(config), opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.current.Store(second) // what a reload does once the new snapshot compiled
	expectStatus(t, request(t, gw, "GET", "/", "X-API-Key", "new-key"), 200, "new key after the reload")
	expectStatus(t, request(t, gw, "GET", "/", "X-API-Key", "old-key"), 401, "old key after the reload")
}

func basicHeader(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func TestBasicAuth_UsersInlineAndFromAnHtpasswdFile(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	// htpasswd -B writes $2y$, which is the same algorithm as Go's $2a$.
	carol := "$2y$" + strings.TrimPrefix(hash("carol-pw"), "$2a$")
	if err := os.WriteFile(users, []byte("# team\ncarol:"+carol+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gw, _ := startGateway(t, filterConfig(b.Addr, fmt.Sprintf(`      - basic_auth:
          realm: orders
          users: {alice: %q}
          users_file: %s
          max_failures: 3
`, hash("alice-pw"), users)))

	resp := request(t, gw, "GET", "/")
	expectStatus(t, resp, 401, "no credentials")
	if got := string(resp.Header.Peek("WWW-Authenticate")); got != `Basic realm="orders", charset="UTF-8"` {
		t.Errorf("WWW-Authenticate %q", got)
	}
	for user, pw := range map[string]string{"alice": "alice-pw", "carol": "carol-pw"} {
		for range 2 { // the second time from the cache
			expectStatus(t, request(t, gw, "GET", "/", "Authorization", basicHeader(user, pw)), 200, user)
			got := b.take(t)
			if got.Header.Get("X-Consumer") != user || got.Header.Get("Authorization") != "" {
				t.Errorf("%s: upstream X-Consumer %q, Authorization %q; want the user and no credentials",
					user, got.Header.Get("X-Consumer"), got.Header.Get("Authorization"))
			}
		}
	}
	// Failed checks are limited per client: three, then 429 without a check, even for a right
	// password not yet remembered.
	for i, creds := range [][2]string{{"alice", "guess1"}, {"nobody", "guess2"}, {"carol", "guess3"}} {
		expectStatus(t, request(t, gw, "GET", "/", "Authorization", basicHeader(creds[0], creds[1])), 401, fmt.Sprint("failure ", i))
	}
	expectStatus(t, request(t, gw, "GET", "/", "Authorization", basicHeader("alice", "guess4")), 429, "fourth failure")
	// alice's credentials were verified before: the remembered check needs no new bcrypt run.
	expectStatus(t, request(t, gw, "GET", "/", "Authorization", basicHeader("alice", "alice-pw")), 200, "cached after the limit")
	b.take(t)
	b.expectNone(t)
}

func TestCORS_PreflightAnsweredByWeirAndActualRequestsGetTheHeaders(t *testing.T) {
	b := startRecordingBackend(t, "b", func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("Vary", "Accept-Encoding")
	})
	gw, _ := startGateway(t, filterConfig(b.Addr, fmt.Sprintf(`      - cors:
          allow_origins: [https://app.example.com, "https://*.example.org"]
          allow_credentials: true
          expose_headers: [X-Total]
          max_age: 1h
      - api_key: {keys: [{consumer: c, sha256: %s}]}
`, sha256Hex("k"))))

	resp := request(t, gw, "OPTIONS", "/orders", "Origin", "https://app.example.com",
		"Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "content-type, x-api-key")
	expectStatus(t, resp, 204, "preflight from an allowed origin (no API key: preflights carry none)")
	for name, want := range map[string]string{
		"Access-Control-Allow-Origin":      "https://app.example.com",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Methods":     "GET, HEAD, POST, PUT, PATCH, DELETE",
		"Access-Control-Allow-Headers":     "content-type, x-api-key",
		"Access-Control-Max-Age":           "3600",
	} {
		if got := string(resp.Header.Peek(name)); got != want {
			t.Errorf("preflight %s: %q, want %q", name, got, want)
		}
	}
	if len(resp.Body()) != 0 {
		t.Errorf("preflight body %q, want none", resp.Body())
	}
	resp = request(t, gw, "OPTIONS", "/orders", "Origin", "https://evil.example.net", "Access-Control-Request-Method", "GET")
	expectStatus(t, resp, 204, "preflight from another origin")
	if got := resp.Header.Peek("Access-Control-Allow-Origin"); got != nil {
		t.Errorf("a disallowed origin got Access-Control-Allow-Origin %q", got)
	}
	b.expectNone(t)

	for origin, allowed := range map[string]bool{
		"https://app.example.com": true, "https://a.b.example.org": true, "https://example.org": false,
		"https://app.example.com.evil.net": false, "http://app.example.com": false,
	} {
		resp = request(t, gw, "GET", "/orders", "Origin", origin, "X-API-Key", "k")
		expectStatus(t, resp, 200, origin)
		b.take(t)
		got := string(resp.Header.Peek("Access-Control-Allow-Origin"))
		if allowed && (got != origin || string(resp.Header.Peek("Access-Control-Expose-Headers")) != "X-Total") {
			t.Errorf("%s: Access-Control-Allow-Origin %q, expose %q", origin, got, resp.Header.Peek("Access-Control-Expose-Headers"))
		}
		if !allowed && got != "" {
			t.Errorf("%s is not allowed but got Access-Control-Allow-Origin %q", origin, got)
		}
		if v := string(resp.Header.Peek("Vary")); v != "Accept-Encoding, Origin" {
			t.Errorf("%s: Vary %q, want the upstream's with Origin added", origin, v)
		}
	}
	// A rejection by a later filter carries the CORS fields too, so a browser script can read it.
	resp = request(t, gw, "GET", "/orders", "Origin", "https://app.example.com")
	expectStatus(t, resp, 401, "no API key")
	if got := string(resp.Header.Peek("Access-Control-Allow-Origin")); got != "https://app.example.com" {
		t.Errorf("401: Access-Control-Allow-Origin %q", got)
	}
}

func TestAccess_AllowAndDenyOnTheClientAddressBehindTrustedProxies(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	config := "server: {trusted_proxies: [127.0.0.1/32]}\n" + filterConfig(b.Addr, `      - access:
          allow: [203.0.113.0/24, 198.51.100.7]
          deny: [203.0.113.66]
`)
	gw, _ := startGateway(t, config)
	for xff, want := range map[string]int{
		"203.0.113.9":                 200,
		"198.51.100.7":                200,
		"203.0.113.66":                403,
		"198.51.100.8":                403,
		"":                            403, // the peer itself, 127.0.0.1, is not allowed
		"203.0.113.9, 192.0.2.1":      403, // the right-most untrusted hop is the client
		"192.0.2.1, 203.0.113.9":      200,
		"not-an-address, 203.0.113.9": 200,
	} {
		var header []string
		if xff != "" {
			header = []string{"X-Forwarded-For", xff}
		}
		expectStatus(t, request(t, gw, "GET", "/", header...), want, "X-Forwarded-For "+xff)
	}
}

func TestRateLimit_KeyedByConsumer(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, filterConfig(b.Addr, fmt.Sprintf(`      - api_key: {keys: [{consumer: alice, sha256: %s}, {consumer: bob, sha256: %s}]}
      - rate_limit: {rate: 1, per: 1h, key: consumer}
`, sha256Hex("ka"), sha256Hex("kb"))))
	expectStatus(t, request(t, gw, "GET", "/", "X-API-Key", "ka"), 200, "alice's first")
	expectStatus(t, request(t, gw, "GET", "/", "X-API-Key", "ka"), 429, "alice's second")
	expectStatus(t, request(t, gw, "GET", "/", "X-API-Key", "kb"), 200, "bob's first: his own bucket")
}

func TestAccessLog_NamesTheConsumer(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	snap, err := Compile("test.yaml", []byte(filterConfig(b.Addr, fmt.Sprintf("      - api_key: {keys: [{consumer: mobile-app, sha256: %s}]}\n", sha256Hex("k")))))
	if err != nil {
		t.Fatal(err)
	}
	var log lockedBuffer
	gw, _ := serveSnapshotLogged(t, snap, &log)
	expectStatus(t, request(t, gw, "GET", "/", "X-API-Key", "k"), 200, "with a key")
	expectStatus(t, request(t, gw, "GET", "/"), 401, "without")
	waitFor(t, "two access lines", func() bool { return len(log.lines()) == 2 })
	lines := log.lines()
	if !strings.Contains(lines[0], `"consumer":"mobile-app"`) || strings.Contains(lines[1], "consumer") {
		t.Errorf("access lines:\n%s", strings.Join(lines, "\n"))
	}
	if strings.Contains(strings.Join(lines, "\n"), `"k"`) {
		t.Errorf("the API key reached the access log:\n%s", strings.Join(lines, "\n"))
	}
}

func TestAdmin_TokenRequiredExceptForProbesAndPublicMetrics(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	dir := t.TempDir()
	token := "3f9c2a7d41e8b6c05f1a9e2d7c4b8a61"
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := strings.Replace(reloadConfig("v1", b.Addr, "/"), "admin: {listen: \"127.0.0.1:0\"}",
		"admin: {listen: \"127.0.0.1:0\", token_file: admin-token, metrics_public: true}", 1)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startRun(t, path)
	for _, tc := range []struct {
		method, path, auth string
		want               int
	}{
		{"GET", "/config", "", 401},
		{"GET", "/config", "Bearer wrong-token-of-some-length", 401},
		{"GET", "/config", "Bearer " + token[:len(token)-1], 401},
		{"GET", "/config", "Basic " + token, 401},
		{"GET", "/config", "Bearer " + token, 200},
		{"GET", "/debug/pprof/cmdline", "", 401},
		{"POST", "/reload", "", 401},
		{"POST", "/reload", "bearer " + token, 200},
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/metrics", "", 200},
	} {
		req := fasthttp.AcquireRequest()
		req.Header.SetMethod(tc.method)
		req.SetRequestURI("http://" + g.admin + tc.path)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp := fasthttp.AcquireResponse()
		if err := fasthttp.Do(req, resp); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != tc.want {
			t.Errorf("%s %s with %q: %d, want %d", tc.method, tc.path, tc.auth, resp.StatusCode(), tc.want)
		}
		if tc.want == 401 && string(resp.Header.Peek("WWW-Authenticate")) != `Bearer realm="weir admin"` {
			t.Errorf("%s %s: 401 without the Bearer challenge", tc.method, tc.path)
		}
		if bytes.Contains(resp.Body(), []byte(token)) {
			t.Errorf("%s %s: the token is in the answer", tc.method, tc.path)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
}

// X-Consumer is weir's to write: a client's is removed on every route, authenticated or not, and
// whatever proxy it came through.
func TestConsumerHeader_FromTheClientNeverReachesTheUpstream(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	for _, trusted := range []string{"", "server: {trusted_proxies: [127.0.0.1/32]}\n"} {
		gw, _ := startGateway(t, trusted+oneRouteConfig("", b.Addr))
		expectStatus(t, request(t, gw, "GET", "/", "X-Consumer", "admin", "X_Consumer", "admin"), 200, "spoofed consumer")
		got := b.take(t)
		if v := got.Header.Values("X-Consumer"); len(v) != 0 {
			t.Errorf("trusted %q: upstream got X-Consumer %q", trusted, v)
		}
		if v := got.Header.Values("X_consumer"); len(v) != 0 {
			t.Errorf("trusted %q: upstream got X_Consumer %q", trusted, v)
		}
	}
}

func TestCompile_AuthFilterProblems(t *testing.T) {
	route := func(methods, filters string) string {
		return "upstreams:\n  u:\n    targets: [{url: \"http://127.0.0.1:9\"}]\nroutes:\n  - name: r\n    match: {path: /" + methods +
			"}\n    upstream: u\n    filters:\n" + filters
	}
	runProblemCases(t, []problemCase{
		{
			desc: "api_key: bad source, digest and consumer; no key at all",
			yaml: route("", `      - api_key:
          from: cookie:k
          keys: [{consumer: "a b", sha256: 00}, {consumer: c, sha256: nothex}]
      - api_key: {}
`),
			want: []string{
				`test.yaml:10: routes[0].filters[0].api_key.from: unknown source "cookie:k"; use header:NAME or query:NAME`,
				`test.yaml:11: routes[0].filters[0].api_key.keys[0].consumer: a consumer name is required: letters, digits and -_.@: (it is sent upstream as X-Consumer)`,
				`test.yaml:11: routes[0].filters[0].api_key.keys[1].sha256: must be the key's SHA-256 digest as 64 hex digits (printf %s "$KEY" | sha256sum)`,
				`test.yaml:12: routes[0].filters[1].api_key.keys: no key is declared: list keys or name a keys_file`,
			},
		},
		{
			desc: "basic_auth: a hash that is not bcrypt, a missing users file",
			yaml: route("", `      - basic_auth:
          users: {alice: "{SHA}abc"}
          users_file: /nonexistent/users
`),
			want: []string{
				`test.yaml:10: routes[0].filters[0].basic_auth.users.alice: the hash of "alice" is not a bcrypt hash ($2y$...: htpasswd -nbB USER PASSWORD makes one)`,
				`test.yaml:11: routes[0].filters[0].basic_auth.users_file: cannot read it: open /nonexistent/users: no such file or directory`,
			},
		},
		{
			desc: "cors: * with credentials, bad origins; access: bad networks",
			yaml: route("", `      - cors:
          allow_origins: ["*", "app.example.com", "https://a.*.example.com"]
          allow_credentials: true
      - access: {allow: [10.0.0.1/8, nonsense]}
`),
			want: []string{
				`test.yaml:10: routes[0].filters[0].cors.allow_origins[0]: "*" cannot go with allow_credentials: true (browsers refuse it); list the origins`,
				`test.yaml:10: routes[0].filters[0].cors.allow_origins[1]: "app.example.com" is not an origin: want scheme://host[:port], like https://app.example.com`,
				`test.yaml:10: routes[0].filters[0].cors.allow_origins[2]: a wildcard stands only for the first label, like https://*.example.com`,
				`test.yaml:12: routes[0].filters[1].access.allow[0]: 10.0.0.1/8 has host bits set; the network is 10.0.0.0/8`,
				`test.yaml:12: routes[0].filters[1].access.allow[1]: "nonsense" is neither a network (10.0.0.0/8, 2001:db8::/32) nor an address`,
			},
		},
		{
			desc: "cors after an authenticating filter",
			yaml: route("", `      - api_key: {keys: [{consumer: c, sha256: `+sha256Hex("k")+`}]}
      - cors: {allow_origins: [https://app.example.com]}
`),
			want: []string{`test.yaml:10: routes[0].filters[1].cors: cors must come before api_key in the route's filters: browsers send preflight requests without credentials`},
		},
		{
			desc: "cors on a route whose methods leave out OPTIONS",
			yaml: route(", methods: [GET]", `      - cors: {allow_origins: [https://app.example.com]}
`),
			want: []string{`test.yaml:9: routes[0].filters[0].cors: the route's match.methods leave out OPTIONS, so preflight requests would get 405 before cors answers them; add OPTIONS`},
		},
		{
			desc: "admin token file unreadable",
			yaml: "admin: {token_file: /nonexistent/token}\n",
			want: []string{
				"test.yaml: routes: no routes are defined; add at least one under routes",
				`test.yaml:1: admin.token_file: cannot read the token: open /nonexistent/token: no such file or directory`,
			},
		},
	})
}

func TestCompile_JWTFilterProblems(t *testing.T) {
	runProblemCases(t, []problemCase{{
		desc: "jwt: both key sources, HS256, a bad header, a bad source",
		yaml: `upstreams:
  u:
    targets: [{url: "http://127.0.0.1:9"}]
routes:
  - name: r
    match: {path: /}
    upstream: u
    filters:
      - jwt:
          jwks_url: https://idp.example.com/jwks.json
          jwks_file: jwks.json
          algorithms: [RS256, HS256, none]
          forward_claims: {sub: "X User"}
          from: [query:token]
          required_claims: {scope: []}
`,
		want: []string{
			`test.yaml:10: routes[0].filters[0].jwt.jwks_url: set exactly one of jwks_url and jwks_file`,
			`test.yaml:12: routes[0].filters[0].jwt.algorithms[1]: unknown or refused algorithm "HS256"; use RS256, RS384, RS512, PS256, ES256, ES384, EdDSA (HMAC and none are never accepted)`,
			`test.yaml:12: routes[0].filters[0].jwt.algorithms[2]: unknown or refused algorithm "none"; use RS256, RS384, RS512, PS256, ES256, ES384, EdDSA (HMAC and none are never accepted)`,
			`test.yaml:13: routes[0].filters[0].jwt.forward_claims.sub: "X User" is not a header name`,
			`test.yaml:14: routes[0].filters[0].jwt.from[0]: unknown source "query:token"; use header:Authorization, header:NAME or cookie:NAME`,
			`test.yaml:15: routes[0].filters[0].jwt.required_claims.scope: list the values the claim must hold`,
		},
	}})
}
