package gateway

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

// rwBackend remembers the last request it received, as it arrived on the wire, and answers 200
// with headers a rewrite may want to hide.
type rwBackend struct {
	addr string
	mu   sync.Mutex
	last rwReceived
}

type rwReceived struct {
	target string // request target as received: path and raw query
	query  string // raw query string
	host   string
	method string
	head   string // the whole request head, for header checks
}

func startRWBackend(t *testing.T) *rwBackend {
	b := &rwBackend{}
	b.addr = startBackend(t, func(ctx *fasthttp.RequestCtx) {
		b.mu.Lock()
		b.last = rwReceived{
			target: string(ctx.Request.Header.RequestURI()),
			query:  string(ctx.URI().QueryString()),
			host:   string(ctx.Request.Header.Host()),
			method: string(ctx.Method()),
			head:   ctx.Request.Header.String(),
		}
		b.mu.Unlock()
		ctx.Response.Header.Set("Server", "backend/1.0")
		ctx.Response.Header.Set("X-Powered-By", "php")
		ctx.SetContentType("text/plain")
		ctx.WriteString("ok")
	})
	return b
}

func (b *rwBackend) received() rwReceived {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// rwConfig is one route with the given match path to target, running one rewrite filter whose
// settings are a YAML flow mapping.
func rwConfig(target, routePath, rewrite string) string {
	return fmt.Sprintf(`upstreams:
  backend:
    targets: [{url: "http://%s"}]
routes:
  - name: rw
    match: {path: %q}
    upstream: backend
    filters:
      - rewrite: %s
`, target, routePath, rewrite)
}

// headerLines splits a request or response head into its header lines.
func rwHeaderLines(head string) []string {
	lines := strings.Split(strings.TrimRight(head, "\r\n"), "\r\n")
	return lines[1:]
}

func rwHasLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func TestRewriteE2E_EachSettingChangesWhatTheBackendReceives(t *testing.T) {
	backend := startRWBackend(t)
	for _, tc := range []struct {
		desc      string
		route     string
		rewrite   string
		method    string
		target    string
		headers   []string // name, value, ...
		want      rwReceived
		wantLines []string // header lines the backend must see
		noLines   []string // header names it must not see
	}{
		{desc: "strip_prefix", route: "/api/{rest:*}", rewrite: "{strip_prefix: /api}",
			target: "/api/users/1?a=1", want: rwReceived{target: "/users/1?a=1"}},
		{desc: "strip_prefix of the whole path", route: "/{rest:*}", rewrite: "{strip_prefix: /api}",
			target: "/api", want: rwReceived{target: "/"}},
		{desc: "strip_prefix leaves a longer first segment alone", route: "/{rest:*}", rewrite: "{strip_prefix: /api}",
			target: "/apiary/x", want: rwReceived{target: "/apiary/x"}},
		{desc: "add_prefix", route: "/{rest:*}", rewrite: "{add_prefix: /v2}",
			target: "/users/1", want: rwReceived{target: "/v2/users/1"}},
		{desc: "strip_prefix and add_prefix", route: "/api/{rest:*}", rewrite: "{strip_prefix: /api, add_prefix: /v2}",
			target: "/api/users/1", want: rwReceived{target: "/v2/users/1"}},
		{desc: "strip_prefix keeps escapes escaped", route: "/api/{rest:*}", rewrite: "{strip_prefix: /api}",
			target: "/api/a%20b/%C3%A9", want: rwReceived{target: "/a%20b/%C3%A9"}},
		{desc: "path template with {id} and {rest}", route: "/api/{id}/{rest:*}", rewrite: `{path: "/v2/users/{id}/files/{rest}"}`,
			target: "/api/42/docs/a.txt?x=1", want: rwReceived{target: "/v2/users/42/files/docs/a.txt?x=1"}},
		{desc: "regex", route: "/{rest:*}", rewrite: `{regex: {pattern: "^/old/(.*)$", replace: "/new/$1"}}`,
			target: "/old/a/b", want: rwReceived{target: "/new/a/b"}},
		{desc: "host", route: "/{rest:*}", rewrite: "{host: users.internal}",
			target: "/x", want: rwReceived{target: "/x", host: "users.internal"}},
		{desc: "request_headers remove Host sends the target's address", route: "/{rest:*}", rewrite: "{request_headers: {remove: [Host]}}",
			target: "/x", want: rwReceived{target: "/x", host: backend.addr}},
		{desc: "method", route: "/{rest:*}", rewrite: "{method: POST}",
			target: "/x", want: rwReceived{target: "/x", method: "POST"}},
		{desc: "request_headers", route: "/{rest:*}",
			rewrite: "{request_headers: {set: {X-Gateway: weir}, add: {X-Tag: b}, remove: [Cookie, X-Debug]}}",
			target:  "/x", headers: []string{"X-Gateway", "client", "X-Tag", "a", "Cookie", "s=1", "X-Debug", "1", "X-Keep", "k"},
			want:      rwReceived{target: "/x"},
			wantLines: []string{"X-Gateway: weir", "X-Tag: a", "X-Tag: b", "X-Keep: k"},
			noLines:   []string{"Cookie", "X-Debug"}},
		{desc: "query set, add and remove", route: "/{rest:*}", rewrite: `{query: {set: {v: "2"}, add: {tag: x}, remove: [debug]}}`,
			target: "/x?debug=1&keep=%7E&v=1", want: rwReceived{target: "/x?keep=%7E&v=2&tag=x"}},
		{desc: "query remove of the only parameter", route: "/{rest:*}", rewrite: "{query: {remove: [debug]}}",
			target: "/x?debug=1", want: rwReceived{target: "/x"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			gw, _ := startGateway(t, rwConfig(backend.addr, tc.route, tc.rewrite))
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			req.SetRequestURI("http://" + gw + tc.target)
			req.Header.SetHost("api.example.com")
			req.UseHostHeader = true
			if tc.method != "" {
				req.Header.SetMethod(tc.method)
			}
			for i := 0; i+1 < len(tc.headers); i += 2 {
				req.Header.Add(tc.headers[i], tc.headers[i+1])
			}
			resp := send(t, gw, req)
			if resp.StatusCode() != 200 || string(resp.Body()) != "ok" {
				t.Fatalf("client got %d %q", resp.StatusCode(), resp.Body())
			}
			got := backend.received()
			if got.target != tc.want.target {
				t.Errorf("backend got target %q, want %q", got.target, tc.want.target)
			}
			wantHost := tc.want.host
			if wantHost == "" {
				wantHost = "api.example.com"
			}
			if got.host != wantHost {
				t.Errorf("backend got Host %q, want %q", got.host, wantHost)
			}
			wantMethod := tc.want.method
			if wantMethod == "" {
				wantMethod = "GET"
			}
			if got.method != wantMethod {
				t.Errorf("backend got method %q, want %q", got.method, wantMethod)
			}
			lines := rwHeaderLines(got.head)
			for _, l := range tc.wantLines {
				if !rwHasLine(lines, l) {
					t.Errorf("backend did not get %q:\n%s", l, got.head)
				}
			}
			for _, n := range tc.noLines {
				for _, l := range lines {
					if strings.HasPrefix(strings.ToLower(l), strings.ToLower(n)+":") {
						t.Errorf("backend got %q", l)
					}
				}
			}
		})
	}
}

func TestRewriteE2E_ResponseHeadersOnUpstreamAnswersAndOnA502(t *testing.T) {
	const rw = "{response_headers: {set: {X-Frame-Options: DENY}, add: {X-Served-By: weir}, remove: [Server, X-Powered-By]}}"
	t.Run("upstream answer", func(t *testing.T) {
		backend := startRWBackend(t)
		gw, _ := startGateway(t, rwConfig(backend.addr, "/{rest:*}", rw))
		resp := get(t, gw, "/x")
		if resp.StatusCode() != 200 || string(resp.Body()) != "ok" {
			t.Fatalf("got %d %q", resp.StatusCode(), resp.Body())
		}
		checkRewrittenResponseHeaders(t, &resp.Header)
	})
	t.Run("unreachable target", func(t *testing.T) {
		gw, _ := startGateway(t, rwConfig(closedAddr(t), "/{rest:*}", rw))
		resp := get(t, gw, "/x")
		if resp.StatusCode() != 502 || !strings.Contains(string(resp.Body()), `"status":502`) {
			t.Fatalf("got %d %q", resp.StatusCode(), resp.Body())
		}
		if ct := string(resp.Header.ContentType()); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		checkRewrittenResponseHeaders(t, &resp.Header)
	})
}

func checkRewrittenResponseHeaders(t *testing.T, h *fasthttp.ResponseHeader) {
	t.Helper()
	if v := string(h.Peek("X-Frame-Options")); v != "DENY" {
		t.Errorf("X-Frame-Options %q; want DENY", v)
	}
	if v := string(h.Peek("X-Served-By")); v != "weir" {
		t.Errorf("X-Served-By %q; want weir", v)
	}
	for _, n := range []string{"Server", "X-Powered-By"} {
		if v := h.Peek(n); len(v) > 0 {
			t.Errorf("%s: %s reached the client", n, v)
		}
	}
	if len(h.Peek("X-Request-Id")) == 0 {
		t.Errorf("no X-Request-Id")
	}
}

func TestRewriteE2E_HEADRewrittenToGETStillGetsABodilessAnswer(t *testing.T) {
	backend := startRWBackend(t)
	gw, _ := startGateway(t, rwConfig(backend.addr, "/{rest:*}", "{method: GET}"))
	// Two requests on one connection: a body wrongly sent after the first answer would be read as the
	// start of the second.
	raw := rawExchange(t, gw, "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if got := backend.received(); got.method != "GET" || got.target != "/y" {
		t.Fatalf("backend last got %s %s", got.method, got.target)
	}
	first, second, ok := strings.Cut(raw, "\r\n\r\n")
	if !ok || statusOf(t, first) != 200 || !strings.Contains(first, "Content-Length: 2") {
		t.Fatalf("first answer:\n%s", raw)
	}
	if !strings.HasPrefix(second, "HTTP/1.1 200") || !strings.HasSuffix(second, "\r\n\r\nok") {
		t.Fatalf("the HEAD answer carried a body, or the GET got none:\n%s", raw)
	}
}

func TestRewriteE2E_AccessLogShowsTheClientsMethodPathAndHost(t *testing.T) {
	backend := startRWBackend(t)
	snap, err := Compile("test.yaml", []byte("log: {access: true}\n"+rwConfig(backend.addr, "/{rest:*}", "{method: POST, add_prefix: /v2, host: internal.example}")))
	if err != nil {
		t.Fatal(err)
	}
	access := &lockedBuffer{}
	gw, _ := serveSnapshotLogged(t, snap, access)
	get(t, gw, "/x")
	if got := backend.received().method; got != "POST" {
		t.Fatalf("backend got %s", got)
	}
	line := access.String()
	for _, want := range []string{`"method":"GET"`, `"path":"/x"`, `"host":"` + gw + `"`} {
		if !strings.Contains(line, want) {
			t.Errorf("access log lacks %s (the client's request, not the rewritten one): %s", want, line)
		}
	}
}

func TestRewriteE2E_BadSettingsArePointedAtInTheConfig(t *testing.T) {
	runProblemCases(t, []problemCase{{
		desc: "each bad setting on its own line",
		yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /api/users/{id}
    upstream: api
    filters:
      - rewrite:
          strip_prefix: /api
          path: /v2/users/{user}
          method: get
          request_headers:
            set:
              Connection: close
          query:
            remove: [debug, debug]
      - rewrite: {}
      - rewrite:
          strip_prefx: /api
`,
		want: []string{
			`test.yaml:12: routes[0].filters[0].rewrite.strip_prefix: cannot be combined with path: path, regex and strip_prefix/add_prefix are alternative ways to change the path; use one`,
			`test.yaml:13: routes[0].filters[0].rewrite.path: "/v2/users/{user}": {user} is not a parameter of the route's path /api/users/{id}; its parameters are id`,
			`test.yaml:14: routes[0].filters[0].rewrite.method: "get" is not an upper-case method name such as POST`,
			`test.yaml:17: routes[0].filters[0].rewrite.request_headers.set.Connection: Connection is a hop-by-hop header: it concerns one connection and is never forwarded`,
			`test.yaml:19: routes[0].filters[0].rewrite.query.remove[1]: "debug" is already named at query.remove[0]; name each parameter once, in one of set, add and remove`,
			`test.yaml:20: routes[0].filters[1].rewrite: changes nothing; give at least one of strip_prefix, add_prefix, path, regex, host, method, request_headers, response_headers, query`,
			`test.yaml:22: routes[0].filters[2].rewrite.strip_prefx: unknown key "strip_prefx"; did you mean "strip_prefix"?`,
		},
	}})
}
