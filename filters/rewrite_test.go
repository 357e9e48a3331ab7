package filters

import (
	"bufio"
	"bytes"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/pattern"
)

func mustPattern(t testing.TB, p string) *pattern.Pattern {
	t.Helper()
	pat, err := pattern.Parse(p)
	if err != nil {
		t.Fatal(err)
	}
	return pat
}

func TestNewRewrite_RejectsBadSettings(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		route string // the route's path pattern; /{rest:*} if empty
		cfg   RewriteConfig
		want  []string
	}{
		{"nothing configured", "", RewriteConfig{},
			[]string{": changes nothing; give at least one of strip_prefix, add_prefix, path, regex, host, method, request_headers, response_headers, query"}},
		{"only empty sections", "", RewriteConfig{Query: QueryRewrite{Set: map[string]string{}}, RequestHeaders: HeaderRewrite{Remove: []string{}}},
			[]string{": changes nothing; give at least one of strip_prefix, add_prefix, path, regex, host, method, request_headers, response_headers, query"}},
		{"path and regex", "/api/users/{id}", RewriteConfig{Path: "/v2/users/{id}", Regex: &RegexRewrite{Pattern: "^/a"}},
			[]string{"regex: cannot be combined with path: path, regex and strip_prefix/add_prefix are alternative ways to change the path; use one"}},
		{"path and prefixes", "/api/users/{id}", RewriteConfig{Path: "/v2/users/{id}", StripPrefix: "/api", AddPrefix: "/v2"},
			[]string{
				"strip_prefix: cannot be combined with path: path, regex and strip_prefix/add_prefix are alternative ways to change the path; use one",
				"add_prefix: cannot be combined with path: path, regex and strip_prefix/add_prefix are alternative ways to change the path; use one",
			}},
		{"regex and add_prefix", "", RewriteConfig{Regex: &RegexRewrite{Pattern: "^/a"}, AddPrefix: "/v2"},
			[]string{"add_prefix: cannot be combined with regex: path, regex and strip_prefix/add_prefix are alternative ways to change the path; use one"}},
		{"strip_prefix without leading slash", "", RewriteConfig{StripPrefix: "api"},
			[]string{`strip_prefix: "api" must start with /`}},
		{"strip_prefix with trailing slash", "", RewriteConfig{StripPrefix: "/api/"},
			[]string{`strip_prefix: "/api/" must not end with /`}},
		{"strip_prefix /", "", RewriteConfig{StripPrefix: "/"},
			[]string{`strip_prefix: "/" strips nothing; leave strip_prefix out`}},
		{"add_prefix /", "", RewriteConfig{AddPrefix: "/"},
			[]string{`add_prefix: "/" adds nothing; leave add_prefix out`}},
		{"add_prefix with trailing slash", "", RewriteConfig{AddPrefix: "/v2/"},
			[]string{`add_prefix: "/v2/" must not end with /`}},
		{"prefix percent-encoded", "", RewriteConfig{StripPrefix: "/a%20b"},
			[]string{`strip_prefix: "/a%20b" contains %; paths here are decoded, so write characters as themselves, not percent-encoded`}},
		{"prefix with a query", "", RewriteConfig{AddPrefix: "/v2?x=1"},
			[]string{`add_prefix: "/v2?x=1" contains '?'; it is a path only, without query or fragment (use the query setting)`}},
		{"prefix with a dot segment", "", RewriteConfig{StripPrefix: "/a/../b"},
			[]string{`strip_prefix: "/a/../b" has a "." or ".." segment; request paths are normalized and never contain one`}},
		{"prefix with an empty segment", "", RewriteConfig{StripPrefix: "/a//b"},
			[]string{`strip_prefix: "/a//b" has an empty segment ("//"); request paths are normalized and never contain one`}},
		{"prefix with a control character", "", RewriteConfig{AddPrefix: "/a\nb"},
			[]string{`add_prefix: "/a\nb" contains a control character`}},
		{"template naming an unknown parameter", "/api/users/{id}", RewriteConfig{Path: "/v2/users/{user}"},
			[]string{`path: "/v2/users/{user}": {user} is not a parameter of the route's path /api/users/{id}; its parameters are id`}},
		{"template naming several unknown", "/api/{org}/{rest:*}", RewriteConfig{Path: "/v2/{id}"},
			[]string{`path: "/v2/{id}": {id} is not a parameter of the route's path /api/{org}/{rest:*}; its parameters are org, rest`}},
		{"template on a route without parameters", "/status", RewriteConfig{Path: "/v2/{id}"},
			[]string{`path: "/v2/{id}": {id} is not a parameter of the route's path /status, which has none`}},
		{"template with the route's syntax", "/api/{rest:*}", RewriteConfig{Path: "/v2/{rest:*}"},
			[]string{`path: "/v2/{rest:*}": {rest:*} is not a parameter reference; write {name} with the name of one of the route's parameters`}},
		{"template with an unclosed brace", "/api/users/{id}", RewriteConfig{Path: "/v2/{id"},
			[]string{`path: "/v2/{id" has a { without a matching }`}},
		{"template with a stray brace", "/api/users/{id}", RewriteConfig{Path: "/v2/id}"},
			[]string{`path: "/v2/id}" has a } without a matching {`}},
		{"template without leading slash", "/api/users/{id}", RewriteConfig{Path: "v2/{id}"},
			[]string{`path: "v2/{id}" must start with /`}},
		{"template with an empty segment", "/api/users/{id}", RewriteConfig{Path: "/v2//{id}"},
			[]string{`path: "/v2//{id}" has an empty segment ("//"); request paths are normalized and never contain one`}},
		{"regex without pattern", "", RewriteConfig{Regex: &RegexRewrite{Replace: "/x"}},
			[]string{"regex.pattern: is required: the regular expression matched against the path"}},
		{"regex that does not compile", "", RewriteConfig{Regex: &RegexRewrite{Pattern: "^/(a", Replace: "/$1"}},
			[]string{"regex.pattern: invalid regular expression: error parsing regexp: missing closing ): `^/(a`"}},
		{"replace naming a missing group", "", RewriteConfig{Regex: &RegexRewrite{Pattern: "^/old/(.*)$", Replace: "/new/$2"}},
			[]string{"regex.replace: $2 refers to group 2, but the pattern has 1 group"}},
		{"replace naming a missing group in braces", "", RewriteConfig{Regex: &RegexRewrite{Pattern: "^/old/(a)(b)$", Replace: "/new/${3}"}},
			[]string{"regex.replace: ${3} refers to group 3, but the pattern has 2 groups"}},
		{"replace naming a missing named group", "", RewriteConfig{Regex: &RegexRewrite{Pattern: "^/old/(?P<rest>.*)$", Replace: "/new/$tail"}},
			[]string{`regex.replace: $tail refers to a group named "tail", which the pattern lacks`}},
		{"replace $1x, read by Go as the group 1x", "", RewriteConfig{Regex: &RegexRewrite{Pattern: "^/old/(.*)$", Replace: "/new/$1x"}},
			[]string{`regex.replace: $1x refers to a group named "1x", which the pattern lacks; write ${1}x for group 1 followed by "x"`}},
		{"replace with a lone $", "", RewriteConfig{Regex: &RegexRewrite{Pattern: "^/old/(.*)$", Replace: "/new/$/x"}},
			[]string{"regex.replace: the $ at offset 5 starts no group reference; write $$ for a literal $"}},
		{"host with a path", "", RewriteConfig{Host: "users.internal/x"},
			[]string{`host: "users.internal/x" is not a host name or host:port`}},
		{"host with a bad port", "", RewriteConfig{Host: "users.internal:99999"},
			[]string{`host: "users.internal:99999" is not a host name or host:port`}},
		{"lower-case method", "", RewriteConfig{Method: "post"},
			[]string{`method: "post" is not an upper-case method name such as POST`}},
		{"method with a space", "", RewriteConfig{Method: "PO ST"},
			[]string{`method: "PO ST" is not an upper-case method name such as POST`}},
		{"CONNECT", "", RewriteConfig{Method: "CONNECT"},
			[]string{"method: CONNECT is not forwarded by the gateway"}},
		{"TRACE", "", RewriteConfig{Method: "TRACE"},
			[]string{"method: TRACE is not forwarded by the gateway"}},
		{"HEAD", "", RewriteConfig{Method: "HEAD"},
			[]string{"method: HEAD would leave the client's request without a response body"}},
		{"hop-by-hop and framing headers", "", RewriteConfig{RequestHeaders: HeaderRewrite{
			Set:    map[string]string{"Connection": "close", "Proxy-Authorization": "x", "Content-Length": "3"},
			Add:    map[string]string{"TE": "trailers", "Upgrade": "h2c", "Transfer-Encoding": "chunked", "keep-alive": "1"},
			Remove: []string{"Connection"},
		}}, []string{
			"request_headers.set.Connection: Connection is a hop-by-hop header: it concerns one connection and is never forwarded",
			"request_headers.set.Content-Length: Content-Length is computed from the body",
			"request_headers.set.Proxy-Authorization: Proxy-Authorization is a hop-by-hop header: it concerns one connection and is never forwarded",
			"request_headers.add.TE: TE is a hop-by-hop header: it concerns one connection and is never forwarded",
			"request_headers.add.Transfer-Encoding: Transfer-Encoding is a hop-by-hop header: it concerns one connection and is never forwarded",
			"request_headers.add.Upgrade: Upgrade is a hop-by-hop header: it concerns one connection and is never forwarded",
			"request_headers.add.keep-alive: keep-alive is a hop-by-hop header: it concerns one connection and is never forwarded",
			"request_headers.remove[0]: Connection is a hop-by-hop header and is never forwarded; removing it does nothing",
		}},
		{"Host as a request header", "", RewriteConfig{RequestHeaders: HeaderRewrite{Set: map[string]string{"host": "a"}}},
			[]string{"request_headers.set.host: Host is set with the host setting"}},
		{"removing Host while setting it", "", RewriteConfig{Host: "a.internal", RequestHeaders: HeaderRewrite{Remove: []string{"Host"}}},
			[]string{"request_headers.remove[0]: Host cannot be removed when the host setting sets it; use one"}},
		{"X-Request-Id", "", RewriteConfig{
			RequestHeaders:  HeaderRewrite{Set: map[string]string{"X-Request-ID": "1"}},
			ResponseHeaders: HeaderRewrite{Remove: []string{"x-request-id"}},
		}, []string{
			"request_headers.set.X-Request-ID: X-Request-Id is managed by the gateway",
			"response_headers.remove[0]: X-Request-Id is managed by the gateway",
		}},
		{"invalid header names", "", RewriteConfig{ResponseHeaders: HeaderRewrite{
			Set: map[string]string{"X Frame": "DENY", "": "x"}, Remove: []string{"Server:"},
		}}, []string{
			`response_headers.set.: "" is not a valid header name`,
			`response_headers.set.X Frame: "X Frame" is not a valid header name`,
			`response_headers.remove[0]: "Server:" is not a valid header name`,
		}},
		{"header value with a line break", "", RewriteConfig{RequestHeaders: HeaderRewrite{Set: map[string]string{"X-A": "a\r\nX-Evil: 1"}}},
			[]string{"request_headers.set.X-A: the value contains a control character"}},
		{"a header named twice", "", RewriteConfig{RequestHeaders: HeaderRewrite{
			Set: map[string]string{"X-Tag": "a"}, Add: map[string]string{"x-tag": "b"}, Remove: []string{"X-TAG", "Cookie", "cookie"},
		}}, []string{
			"request_headers.add.x-tag: x-tag is already named at request_headers.set.X-Tag; name each header once, in one of set, add and remove",
			"request_headers.remove[0]: X-TAG is already named at request_headers.set.X-Tag; name each header once, in one of set, add and remove",
			"request_headers.remove[2]: cookie is already named at request_headers.remove[1]; name each header once, in one of set, add and remove",
		}},
		{"query parameters named twice or empty", "", RewriteConfig{Query: QueryRewrite{
			Set: map[string]string{"v": "2", "": "x"}, Add: map[string]string{"v": "3"}, Remove: []string{"debug", "", "debug"},
		}}, []string{
			"query.set: a parameter name cannot be empty",
			`query.add.v: "v" is already named at query.set.v; name each parameter once, in one of set, add and remove`,
			"query.remove[1]: a parameter name cannot be empty",
			`query.remove[2]: "debug" is already named at query.remove[0]; name each parameter once, in one of set, add and remove`,
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			route := tc.route
			if route == "" {
				route = "/{rest:*}"
			}
			f, err := NewRewrite(tc.cfg, Env{Pattern: mustPattern(t, route)})
			if err == nil {
				t.Fatalf("accepted: %+v", f)
			}
			got := configErrorTexts(err)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestNewRewrite_AcceptsTheDesignExample(t *testing.T) {
	_, err := NewRewrite(RewriteConfig{
		Path:            "/v2/users/{id}",
		Host:            "users.internal",
		Method:          "POST",
		RequestHeaders:  HeaderRewrite{Set: map[string]string{"X-Gateway": "weir"}, Add: map[string]string{"X-Tag": "a"}, Remove: []string{"Cookie"}},
		ResponseHeaders: HeaderRewrite{Set: map[string]string{"X-Frame-Options": "DENY"}, Add: map[string]string{}, Remove: []string{"Server"}},
		Query:           QueryRewrite{Set: map[string]string{"v": "2"}, Add: map[string]string{"tag": "x"}, Remove: []string{"debug"}},
	}, Env{Pattern: mustPattern(t, "/api/users/{id}")})
	if err != nil {
		t.Fatal(err)
	}
}

// rwUpstream is a terminal handler standing in for the upstream step: it serializes the request as the
// upstream client would send it, and answers (or fails, like an unreachable target).
type rwUpstream struct {
	sent   string // the request as written upstream, head only
	fail   bool
	answer func(*fasthttp.Response)
}

func (u *rwUpstream) Serve(x *Exchange) {
	req := &x.Ctx.Request
	req.UseHostHeader = true // as upstream.Pool.Forward does
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	if err := req.Write(w); err != nil {
		panic(err)
	}
	_ = w.Flush()
	u.sent, _, _ = strings.Cut(b.String(), "\r\n\r\n")
	if u.fail {
		x.Ctx.Response.Reset()
		x.Reject(502, "upstream unreachable")
		return
	}
	if u.answer != nil {
		u.answer(&x.Ctx.Response)
	}
}

// rwRun runs one request through a rewrite built from cfg for a route with pattern route. target is
// the request target, headers alternate names and values. It returns what went upstream (request line
// first) and the context, whose request and response hold the state after the chain.
func rwRun(t *testing.T, route string, cfg RewriteConfig, target string, up *rwUpstream, headers ...string) (string, *fasthttp.RequestCtx) {
	t.Helper()
	rw, err := NewRewrite(cfg, Env{Pattern: mustPattern(t, route)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.Header.SetMethod("GET")
	ctx.Request.SetRequestURI(target)
	ctx.Request.Header.SetHost("api.example.com")
	for i := 0; i+1 < len(headers); i += 2 {
		ctx.Request.Header.Add(headers[i], headers[i+1])
	}
	_ = ctx.Path() // the gateway routes on ctx.Path(), which parses the URI
	if up == nil {
		up = &rwUpstream{}
	}
	x := AcquireExchange(ctx)
	defer ReleaseExchange(x)
	rw.Wrap(up).Serve(x)
	return up.sent, ctx
}

func requestLine(sent string) string {
	line, _, _ := strings.Cut(sent, "\r\n")
	return line
}

func TestRewrite_PathAndQueryAsSentUpstream(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		route  string
		cfg    RewriteConfig
		target string
		want   string // request line sent upstream
	}{
		{"strip_prefix removes a whole-segment prefix", "/api/{rest:*}", RewriteConfig{StripPrefix: "/api"},
			"/api/users/1", "GET /users/1 HTTP/1.1"},
		{"strip_prefix turns the bare prefix into /", "/{rest:*}", RewriteConfig{StripPrefix: "/api"},
			"/api", "GET / HTTP/1.1"},
		{"strip_prefix leaves a longer segment alone", "/{rest:*}", RewriteConfig{StripPrefix: "/api"},
			"/apiary/x", "GET /apiary/x HTTP/1.1"},
		{"strip_prefix is case-sensitive", "/{rest:*}", RewriteConfig{StripPrefix: "/api"},
			"/API/x", "GET /API/x HTTP/1.1"},
		{"strip then add", "/api/{rest:*}", RewriteConfig{StripPrefix: "/api", AddPrefix: "/v2"},
			"/api/x?a=1", "GET /v2/x?a=1 HTTP/1.1"},
		{"add_prefix to /", "/{rest:*}", RewriteConfig{AddPrefix: "/v2"},
			"/", "GET /v2/ HTTP/1.1"},
		{"add_prefix even when strip_prefix does not match", "/{rest:*}", RewriteConfig{StripPrefix: "/api", AddPrefix: "/v2"},
			"/other", "GET /v2/other HTTP/1.1"},
		{"the rewritten path is re-encoded", "/api/{rest:*}", RewriteConfig{StripPrefix: "/api"},
			"/api/a%20b%3Fc", "GET /a%20b%3Fc HTTP/1.1"},
		{"a decoded % is not decoded a second time", "/api/{rest:*}", RewriteConfig{StripPrefix: "/api"},
			"/api/100%25", "GET /100%25 HTTP/1.1"},
		{"a doubly encoded dot-dot stays data", "/api/{rest:*}", RewriteConfig{StripPrefix: "/api"},
			"/api/%252e%252e/admin", "GET /%252e%252e/admin HTTP/1.1"},
		{"a doubly encoded slash stays data", "/api/{rest:*}", RewriteConfig{AddPrefix: "/v2"},
			"/api/a%252fb", "GET /v2/api/a%252fb HTTP/1.1"},
		{"template with one parameter", "/api/users/{id}", RewriteConfig{Path: "/v2/users/{id}"},
			"/api/users/42?x=1", "GET /v2/users/42?x=1 HTTP/1.1"},
		{"template with a catch-all", "/api/{id}/{rest:*}", RewriteConfig{Path: "/v2/{rest}/of/{id}"},
			"/api/7/a/b.txt", "GET /v2/a/b.txt/of/7 HTTP/1.1"},
		{"template with an empty catch-all", "/api/{id}/{rest:*}", RewriteConfig{Path: "/v2/{id}/{rest}"},
			"/api/7/", "GET /v2/7/ HTTP/1.1"},
		{"template with a parameter in a segment", "/files/{name}.json", RewriteConfig{Path: "/v2/{name}"},
			"/files/report.json", "GET /v2/report HTTP/1.1"},
		{"template value re-encoded", "/api/users/{id}", RewriteConfig{Path: "/v2/users/{id}"},
			"/api/users/a%25b%20c", "GET /v2/users/a%25b%20c HTTP/1.1"},
		{"template without parameters", "/api/users/{id}", RewriteConfig{Path: "/fixed"},
			"/api/users/42", "GET /fixed HTTP/1.1"},
		{"regex with $1", "/{rest:*}", RewriteConfig{Regex: &RegexRewrite{Pattern: "^/old/(.*)$", Replace: "/new/$1"}},
			"/old/x/y?q=1", "GET /new/x/y?q=1 HTTP/1.1"},
		{"regex with a named group", "/{rest:*}", RewriteConfig{Regex: &RegexRewrite{Pattern: "^/u/(?P<id>[0-9]+)$", Replace: "/users/${id}/"}},
			"/u/12", "GET /users/12/ HTTP/1.1"},
		{"regex that does not match", "/{rest:*}", RewriteConfig{Regex: &RegexRewrite{Pattern: "^/old/(.*)$", Replace: "/new/$1"}},
			"/other", "GET /other HTTP/1.1"},
		{"regex result gets a leading slash", "/{rest:*}", RewriteConfig{Regex: &RegexRewrite{Pattern: "^/api/"}},
			"/api/x", "GET /x HTTP/1.1"},
		{"query remove of the only parameter removes the query", "/{rest:*}", RewriteConfig{Query: QueryRewrite{Remove: []string{"debug"}}},
			"/x?debug=1", "GET /x HTTP/1.1"},
		{"query remove keeps the other parameters byte for byte", "/{rest:*}", RewriteConfig{Query: QueryRewrite{Remove: []string{"debug"}}},
			"/x?a=%7E&debug=1&b=c+d&debug&e=%2F", "GET /x?a=%7E&b=c+d&e=%2F HTTP/1.1"},
		{"query remove matches encoded names", "/{rest:*}", RewriteConfig{Query: QueryRewrite{Remove: []string{"de bug"}}},
			"/x?de+bug=1&de%20bug=2&de%2Bbug=3", "GET /x?de%2Bbug=3 HTTP/1.1"},
		{"query set replaces every occurrence", "/{rest:*}", RewriteConfig{Query: QueryRewrite{Set: map[string]string{"v": "2"}}},
			"/x?v=1&a=2&v=3", "GET /x?a=2&v=2 HTTP/1.1"},
		{"query set when absent", "/{rest:*}", RewriteConfig{Query: QueryRewrite{Set: map[string]string{"v": "2"}}},
			"/x", "GET /x?v=2 HTTP/1.1"},
		{"query set encodes its value", "/{rest:*}", RewriteConfig{Query: QueryRewrite{Set: map[string]string{"q": "a b&c=d/é"}}},
			"/x", "GET /x?q=a+b%26c%3Dd%2F%C3%A9 HTTP/1.1"},
		{"query add keeps existing occurrences", "/{rest:*}", RewriteConfig{Query: QueryRewrite{Add: map[string]string{"tag": "x"}}},
			"/x?tag=a", "GET /x?tag=a&tag=x HTTP/1.1"},
		{"query set, add and remove together", "/{rest:*}", RewriteConfig{Query: QueryRewrite{
			Set: map[string]string{"v": "2", "a": "1"}, Add: map[string]string{"tag": "x"}, Remove: []string{"debug"}}},
			"/x?debug=1&keep=yes&v=1", "GET /x?keep=yes&a=1&v=2&tag=x HTTP/1.1"},
		{"query rewrite drops empty pairs", "/{rest:*}", RewriteConfig{Query: QueryRewrite{Remove: []string{"debug"}}},
			"/x?&a=1&&debug&", "GET /x?a=1 HTTP/1.1"},
		{"path and query rewritten together", "/api/users/{id}", RewriteConfig{Path: "/v2/users/{id}", Query: QueryRewrite{Remove: []string{"debug"}}},
			"/api/users/42?debug=1", "GET /v2/users/42 HTTP/1.1"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			sent, _ := rwRun(t, tc.route, tc.cfg, tc.target, nil)
			if got := requestLine(sent); got != tc.want {
				t.Fatalf("sent %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRewrite_QueryRemoveAfterQueryArgsWereParsed(t *testing.T) {
	// An earlier step reading QueryArgs makes fasthttp build the request line from its parsed args;
	// the rewritten query string must win all the same.
	rw, err := NewRewrite(RewriteConfig{Query: QueryRewrite{Remove: []string{"debug"}}}, Env{Pattern: mustPattern(t, "/{rest:*}")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.SetRequestURI("/x?debug=1")
	ctx.Request.Header.SetHost("h")
	_ = ctx.QueryArgs().Peek("debug")
	up := &rwUpstream{}
	x := AcquireExchange(ctx)
	defer ReleaseExchange(x)
	rw.Wrap(up).Serve(x)
	if got := requestLine(up.sent); got != "GET /x HTTP/1.1" {
		t.Fatalf("sent %q", got)
	}
	if n := ctx.QueryArgs().Len(); n != 0 {
		t.Fatalf("QueryArgs has %d args after the rewrite", n)
	}
}

func TestRewrite_LaterStepsSeeTheRewrittenPath(t *testing.T) {
	_, ctx := rwRun(t, "/api/{rest:*}", RewriteConfig{StripPrefix: "/api"}, "/api/a%25b", nil)
	if string(ctx.Path()) != "/a%b" {
		t.Fatalf("ctx.Path() = %q after the rewrite", ctx.Path())
	}
}

func TestRewrite_RequestHostMethodAndHeaders(t *testing.T) {
	cfg := RewriteConfig{
		Host:   "users.internal:8080",
		Method: "POST",
		RequestHeaders: HeaderRewrite{
			Set:    map[string]string{"X-Gateway": "weir", "x-lower": "v"},
			Add:    map[string]string{"X-Tag": "b"},
			Remove: []string{"Cookie", "X-Secret"},
		},
	}
	sent, ctx := rwRun(t, "/{rest:*}", cfg, "/x", nil,
		"X-Gateway", "client", "X-Gateway", "client2", "X-Tag", "a", "Cookie", "s=1", "X-Secret", "1", "X-Other", "o")
	lines := strings.Split(sent, "\r\n")
	if lines[0] != "POST /x HTTP/1.1" {
		t.Errorf("request line %q", lines[0])
	}
	has := func(line string) bool {
		for _, l := range lines[1:] {
			if l == line {
				return true
			}
		}
		return false
	}
	for _, want := range []string{"Host: users.internal:8080", "X-Gateway: weir", "X-Lower: v", "X-Tag: a", "X-Tag: b", "X-Other: o"} {
		if !has(want) {
			t.Errorf("no %q in what went upstream:\n%s", want, sent)
		}
	}
	for _, gone := range []string{"Cookie", "X-Secret", "X-Gateway: client"} {
		if strings.Contains(sent, gone) {
			t.Errorf("%q went upstream:\n%s", gone, sent)
		}
	}
	if m := string(ctx.Method()); m != "GET" {
		t.Errorf("after the upstream answered the method is %q; want the client's GET back", m)
	}
}

func TestRewrite_RemovingHostLeavesItForTheTargetAddress(t *testing.T) {
	var host string
	rw, err := NewRewrite(RewriteConfig{RequestHeaders: HeaderRewrite{Remove: []string{"Host"}}}, Env{Pattern: mustPattern(t, "/{rest:*}")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.SetRequestURI("/x")
	ctx.Request.Header.SetHost("api.example.com")
	x := AcquireExchange(ctx)
	defer ReleaseExchange(x)
	rw.Wrap(handlerFunc(func(x *Exchange) { host = string(x.Ctx.Request.Header.Host()) })).Serve(x)
	if host != "" {
		t.Fatalf("Host is %q; want it empty, for upstream.Pool.Forward to fill in the target", host)
	}
}

type handlerFunc func(*Exchange)

func (f handlerFunc) Serve(x *Exchange) { f(x) }

func TestRewrite_ResponseHeadersOnUpstreamAnswersAndGatewayErrors(t *testing.T) {
	cfg := RewriteConfig{ResponseHeaders: HeaderRewrite{
		Set:    map[string]string{"X-Frame-Options": "DENY"},
		Add:    map[string]string{"Vary": "Origin"},
		Remove: []string{"Server", "X-Powered-By"},
	}}
	for _, tc := range []struct {
		desc string
		up   *rwUpstream
		want []string
	}{
		{"upstream answer", &rwUpstream{answer: func(r *fasthttp.Response) {
			r.Header.Set("Server", "nginx")
			r.Header.Set("X-Powered-By", "php")
			r.Header.Set("X-Frame-Options", "SAMEORIGIN")
			r.Header.Add("Vary", "Accept")
		}}, []string{"X-Frame-Options: DENY", "Vary: Accept", "Vary: Origin"}},
		{"gateway error", &rwUpstream{fail: true}, []string{"X-Frame-Options: DENY", "Vary: Origin"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, ctx := rwRun(t, "/{rest:*}", cfg, "/x", tc.up)
			head := ctx.Response.Header.String()
			for _, w := range tc.want {
				if !strings.Contains(head, w+"\r\n") {
					t.Errorf("no %q in\n%s", w, head)
				}
			}
			for _, gone := range []string{"Server", "X-Powered-By", "SAMEORIGIN"} {
				if strings.Contains(head, gone) {
					t.Errorf("%q left in\n%s", gone, head)
				}
			}
		})
	}
}

// raceEnabled reports whether the test binary was built with -race, which changes allocation counts.
// (A file-level //go:build !race would also hide every other rewrite test from race runs.)
func raceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

type rwNop struct{}

func (rwNop) Serve(*Exchange) {}

// rwAllocRig serves one request at a time through a rewrite and a terminal that does nothing, on a
// real RequestCtx reset to the same client request before each run.
type rwAllocRig struct {
	h      Handler
	ctx    *fasthttp.RequestCtx
	target string
}

func newRWAllocRig(tb testing.TB, route string, cfg RewriteConfig, target string) *rwAllocRig {
	tb.Helper()
	rw, err := NewRewrite(cfg, Env{Pattern: mustPattern(tb, route)})
	if err != nil {
		tb.Fatal(err)
	}
	return &rwAllocRig{h: rw.Wrap(rwNop{}), ctx: new(fasthttp.RequestCtx), target: target}
}

func (r *rwAllocRig) do() {
	req := &r.ctx.Request
	req.Reset()
	r.ctx.Response.Reset()
	req.Header.SetMethod(fasthttp.MethodGet)
	req.SetRequestURI(r.target)
	req.Header.SetHost("api.example.com")
	req.Header.SetCookie("session", "1")
	req.Header.Set("X-Tag", "client")
	r.ctx.Response.Header.Set("Server", "backend")
	_ = r.ctx.Path()
	x := AcquireExchange(r.ctx)
	r.h.Serve(x)
	ReleaseExchange(x)
}

var rwStaticCfg = RewriteConfig{
	StripPrefix:     "/api",
	AddPrefix:       "/v2",
	Host:            "users.internal",
	Method:          "POST",
	RequestHeaders:  HeaderRewrite{Set: map[string]string{"X-Gateway": "weir"}, Add: map[string]string{"X-Tag": "a"}, Remove: []string{"Cookie"}},
	ResponseHeaders: HeaderRewrite{Set: map[string]string{"X-Frame-Options": "DENY"}, Remove: []string{"Server"}},
	Query:           QueryRewrite{Set: map[string]string{"v": "2"}, Remove: []string{"debug"}},
}

var rwTemplateCfg = RewriteConfig{
	Path:           "/v2/orgs/{org}/files/{rest}",
	RequestHeaders: HeaderRewrite{Set: map[string]string{"X-Gateway": "weir"}},
}

func TestRewrite_AllocsNothingForStaticAndTemplateRewrites(t *testing.T) {
	if raceEnabled() {
		t.Skip("the race detector changes allocation counts")
	}
	for _, tc := range []struct {
		desc, route, target string
		cfg                 RewriteConfig
	}{
		{"prefixes, host, method, headers, query", "/api/{rest:*}", "/api/users/42?debug=1&a=%7E", rwStaticCfg},
		{"path template", "/api/{org}/{rest:*}", "/api/acme/a/b/c.txt?x=1", rwTemplateCfg},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := newRWAllocRig(t, tc.route, tc.cfg, tc.target)
			for i := 0; i < 10; i++ {
				r.do()
			}
			if n := testing.AllocsPerRun(1000, r.do); n != 0 {
				t.Fatalf("%.2f allocations per request; want 0", n)
			}
		})
	}
}

func BenchmarkRewrite(b *testing.B) {
	for _, bc := range []struct {
		name, route, target string
		cfg                 RewriteConfig
	}{
		{"baseline", "/api/{rest:*}", "/api/users/42?debug=1&a=%7E", rwStaticCfg},
		{"static", "/api/{rest:*}", "/api/users/42?debug=1&a=%7E", rwStaticCfg},
		{"template", "/api/{org}/{rest:*}", "/api/acme/a/b/c.txt?x=1", rwTemplateCfg},
		{"regex", "/{rest:*}", "/old/users/42", RewriteConfig{Regex: &RegexRewrite{Pattern: "^/old/(.*)$", Replace: "/new/$1"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := newRWAllocRig(b, bc.route, bc.cfg, bc.target)
			if bc.name == "baseline" {
				r.h = rwNop{} // the request setup alone, to subtract from the others
			}
			r.do()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r.do()
			}
		})
	}
}

func TestRewrite_ClientMethodIsRestoredEvenWhenTheChainPanics(t *testing.T) {
	rw, err := NewRewrite(RewriteConfig{Method: "GET"}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	h := rw.Wrap(panicking{})
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("HEAD")
	ctx.Request.SetRequestURI("/x")
	x := AcquireExchange(&ctx)
	defer ReleaseExchange(x)
	func() {
		defer func() { _ = recover() }()
		h.Serve(x)
	}()
	if m := string(ctx.Request.Header.Method()); m != "HEAD" {
		t.Fatalf("after a panic the request's method is %s; the 500 would be framed for it instead of HEAD", m)
	}
}

type panicking struct{}

func (panicking) Serve(*Exchange) { panic("bug after the rewrite") }
