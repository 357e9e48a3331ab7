package gateway

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const conditionRoutes = `upstreams:
  u: {targets: [{url: "http://127.0.0.1:9"}]}
routes:
  - {name: plain, match: {path: "/api/users/{id}"}, upstream: u}
  - name: canary
    match:
      path: "/api/users/{id}"
      headers: [{name: X-Canary, value: "on"}]
    upstream: u
  - name: staging-beta
    match:
      path: "/api/users/{id}"
      headers: [{name: x-env, regex: "^stag"}]
      cookies: [{name: beta, value: "1"}]
    upstream: u
  - name: debug
    match:
      path: "/api/users/{id}"
      methods: [GET]
      headers: [{name: X-Debug, present: true}]
    upstream: u
  - name: v2
    match:
      path: "/api/users/{id}"
      query: [{name: version, value: "2"}]
    upstream: u
  - name: only-flagged
    match:
      path: /flagged
      query: [{name: flag, present: true}]
    upstream: u
  - name: host-beta
    match:
      hosts: [beta.example.com]
      path: /flagged
      cookies: [{name: beta, value: "1"}]
    upstream: u
  - name: posts
    match: {path: /posts, methods: [POST], headers: [{name: X-Canary, value: "on"}]}
    upstream: u
  - name: gets
    match: {path: /posts, methods: [GET]}
    upstream: u
`

// Among routes with the same path, more conditions are tried first, ties in file order, and a
// request meeting none falls to the route without conditions, or gets 404.
func TestMatch_HeaderQueryAndCookieConditions(t *testing.T) {
	snap, err := Compile("test.yaml", []byte(conditionRoutes))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc, method, host, uri string
		header                  []string
		want                    string // route name; "404" or "405 ALLOW" when none
	}{
		{"no condition met", "GET", "a", "/api/users/1", nil, "plain"},
		{"header value", "GET", "a", "/api/users/1", []string{"X-Canary", "on"}, "canary"},
		{"header name case-insensitive", "GET", "a", "/api/users/1", []string{"x-canary", "on"}, "canary"},
		{"header value exact", "GET", "a", "/api/users/1", []string{"X-Canary", "On"}, "plain"},
		{"two conditions beat one", "GET", "a", "/api/users/1", []string{"X-Canary", "on", "X-Env", "staging", "Cookie", "beta=1"}, "staging-beta"},
		{"all conditions must hold", "GET", "a", "/api/users/1", []string{"X-Env", "staging", "Cookie", "beta=0"}, "plain"},
		{"regex", "GET", "a", "/api/users/1", []string{"X-Env", "stage-2", "Cookie", "a=b; beta=1"}, "staging-beta"},
		{"regex anchored", "GET", "a", "/api/users/1", []string{"X-Env", "prestag", "Cookie", "beta=1"}, "plain"},
		{"presence, empty value", "GET", "a", "/api/users/1", []string{"X-Debug", ""}, "plain"},
		{"presence", "GET", "a", "/api/users/1", []string{"X-Debug", "1"}, "debug"},
		{"presence, for GET only", "PUT", "a", "/api/users/1", []string{"X-Debug", "1"}, "plain"},
		{"ties keep file order", "GET", "a", "/api/users/1?version=2", []string{"X-Canary", "on"}, "canary"},
		{"query value", "GET", "a", "/api/users/1?a=b&version=2", nil, "v2"},
		{"query value exact", "GET", "a", "/api/users/1?version=20", nil, "plain"},
		{"no route without conditions: 404", "GET", "a", "/flagged", nil, "404"},
		{"query presence", "GET", "a", "/flagged?flag", nil, "only-flagged"},
		{"host table first", "GET", "beta.example.com", "/flagged?flag", []string{"Cookie", "beta=1"}, "host-beta"},
		{"then any host", "GET", "beta.example.com", "/flagged?flag", nil, "only-flagged"},
		{"method-specific conditions unmet: 404, not 405", "POST", "a", "/posts", nil, "404"},
		{"method-specific conditions met", "POST", "a", "/posts", []string{"X-Canary", "on"}, "posts"},
		{"other methods: 405", "DELETE", "a", "/posts", nil, "405 GET, POST"},
	} {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(tc.method)
		ctx.Request.SetRequestURI(tc.uri)
		for i := 0; i+1 < len(tc.header); i += 2 {
			ctx.Request.Header.Set(tc.header[i], tc.header[i+1])
		}
		r, allow := snap.match(&ctx, []byte(tc.host), ctx.Path())
		got := "404"
		switch {
		case r != nil:
			got = r.Name
		case allow != "":
			got = "405 " + allow
		}
		if got != tc.want {
			t.Errorf("%s: %s %s%s %q matched %s, want %s", tc.desc, tc.method, tc.host, tc.uri, tc.header, got, tc.want)
		}
	}
}

func TestCompile_ConditionProblems(t *testing.T) {
	runProblemCases(t, []problemCase{{
		desc: "bad regex, two or no kinds of condition, a missing name, duplicate conditions",
		yaml: `upstreams:
  u: {targets: [{url: "http://127.0.0.1:9"}]}
routes:
  - name: a
    match:
      path: /x
      headers: [{name: X-A, regex: "(["}, {name: X-B, value: "1", present: true}, {name: X-C}]
      cookies: [{value: "1"}]
    upstream: u
  - {name: b, match: {path: /y, query: [{name: v, value: "2"}]}, upstream: u}
  - {name: c, match: {path: /y, query: [{name: v, value: "2"}]}, upstream: u}
`,
		want: []string{
			"test.yaml:7: routes[0].match.headers[0].regex: invalid regular expression: error parsing regexp: missing closing ]: `[`",
			`test.yaml:7: routes[0].match.headers[1]: give exactly one of value, regex or present: true`,
			`test.yaml:7: routes[0].match.headers[2]: give exactly one of value, regex or present: true`,
			`test.yaml:8: routes[0].match.cookies[0].name: a cookie condition needs a name (a valid cookie name)`,
			`test.yaml:11: routes[2].match: route "b" already matches the same host, path, method and conditions; give one of them another condition (headers, query, cookies) or remove it`,
		},
	}})
}

// A route without conditions pays nothing for its neighbours' conditions, and a route with header
// conditions allocates nothing.
func BenchmarkMatch_Conditions(b *testing.B) {
	snap, err := Compile("bench.yaml", []byte(conditionRoutes))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name   string
		header []string
	}{
		{"none-met", nil},
		{"header", []string{"X-Canary", "on"}},
		{"regex-and-cookie", []string{"X-Env", "staging", "Cookie", "session=abc; beta=1"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod("GET")
			ctx.Request.SetRequestURI("/api/users/42?version=1")
			for i := 0; i+1 < len(bc.header); i += 2 {
				ctx.Request.Header.Set(bc.header[i], bc.header[i+1])
			}
			host, path := []byte("localhost"), []byte("/api/users/42")
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if r, _ := snap.match(&ctx, host, path); r == nil {
					b.Fatal("no route")
				}
				ctx.ResetUserValues()
			}
		})
	}
}

// End to end: one path, two pools, chosen by a cookie and a header.
func TestMatch_ConditionsPickThePoolEndToEnd(t *testing.T) {
	stable, beta := startRecordingBackend(t, "stable", nil), startRecordingBackend(t, "beta", nil)
	gw, _ := startGateway(t, `upstreams:
  stable: {targets: [{url: "http://`+stable.Addr+`"}]}
  beta: {targets: [{url: "http://`+beta.Addr+`"}]}
routes:
  - {name: users, match: {path: "/users/{id}"}, upstream: stable}
  - name: users-beta
    match: {path: "/users/{id}", cookies: [{name: beta, value: "1"}], headers: [{name: X-Env, present: true}]}
    upstream: beta
`)
	expectStatus(t, request(t, gw, "GET", "/users/7", "Cookie", "beta=1", "X-Env", "x"), 200, "beta tester")
	beta.take(t)
	stable.expectNone(t)
	expectStatus(t, request(t, gw, "GET", "/users/7", "Cookie", "beta=1"), 200, "cookie only")
	stable.take(t)
	beta.expectNone(t)
}

// routes[].timeout replaces the pool's per-attempt timeout, longer or shorter.
func TestRoute_TimeoutOverridesThePools(t *testing.T) {
	slow := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(300 * time.Millisecond)
		ctx.SetBodyString("late")
	})
	gw, _ := startGateway(t, `upstreams:
  u: {targets: [{url: "http://`+slow+`"}], timeout: 100ms, retries: {attempts: 1}}
  patient: {targets: [{url: "http://`+slow+`"}], timeout: 5s, retries: {attempts: 1}}
routes:
  - {name: default, match: {path: /default}, upstream: u}
  - {name: reports, match: {path: /reports}, upstream: u, timeout: 2s}
  - {name: hurried, match: {path: /hurried}, upstream: patient, timeout: 50ms}
`)
	expectStatus(t, request(t, gw, "GET", "/default"), 504, "the pool's 100ms")
	expectStatus(t, request(t, gw, "GET", "/reports"), 200, "the route's 2s")
	expectStatus(t, request(t, gw, "GET", "/hurried"), 504, "the route's 50ms on a 5s pool")
}
