package filters

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

// jsonUpstream is the end of a chain in these tests: it records the request's Accept-Encoding and
// answers like an upstream would (or fails, like the gateway's upstream step).
type jsonUpstream struct {
	status   int
	ctype    string
	encoding string
	body     string
	stream   bool
	reject   int // when non-zero, the gateway answers with this status instead of the upstream
	sawAE    *string
}

func (u jsonUpstream) Serve(x *Exchange) {
	if u.sawAE != nil {
		*u.sawAE = string(x.Ctx.Request.Header.Peek(fasthttp.HeaderAcceptEncoding))
	}
	if u.reject != 0 {
		x.Failed = true
		x.Reject(u.reject, "upstream unreachable")
		return
	}
	resp := &x.Ctx.Response
	resp.Header.SetNoDefaultContentType(true)
	resp.SetStatusCode(u.status)
	if u.ctype != "" {
		resp.Header.SetContentType(u.ctype)
	}
	if u.encoding != "" {
		resp.Header.SetContentEncoding(u.encoding)
	}
	resp.Header.Set("X-Upstream", "kept")
	if u.stream {
		resp.SetBodyStream(strings.NewReader(u.body), len(u.body))
	} else {
		resp.SetBodyString(u.body)
	}
	resp.Header.SetContentLength(len(u.body))
}

// serveJSON runs one request with method through a json filter built from cfg in front of up.
func serveJSON(t *testing.T, j *JSON, method string, up jsonUpstream) *fasthttp.RequestCtx {
	t.Helper()
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI("/x")
	ctx.Request.Header.Set(fasthttp.HeaderAcceptEncoding, "gzip, br")
	x := AcquireExchange(ctx)
	defer ReleaseExchange(x)
	j.Wrap(up).Serve(x)
	return ctx
}

func mustJSON(t testing.TB, cfg JSONConfig) *JSON {
	t.Helper()
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	j, err := NewJSON(cfg, Env{})
	if err != nil {
		t.Fatalf("NewJSON(%+v): %v", cfg, err)
	}
	return j
}

func TestJSON_ShapesBodies(t *testing.T) {
	user := `{"id":1,"name":"Ann","password":"pw","email":"a@x.io","profile":{"email":"p@x.io","ssn":"123","name":"Ann Lee"}}`
	for _, tc := range []struct {
		desc string
		cfg  JSONConfig
		in   string
		want string
	}{
		// target
		{"target picks a member", JSONConfig{Target: "data"}, `{"data":{"id":1},"meta":{"n":2}}`, `{"id":1}`},
		{"target follows nested objects", JSONConfig{Target: "a.b"}, `{"a":{"x":0,"b":[1,2]}}`, `[1,2]`},
		{"target may be a scalar", JSONConfig{Target: "data"}, `{"data":"s"}`, `"s"`},
		{"target may be null", JSONConfig{Target: "data"}, `{"data":null}`, `null`},
		// allow
		{"allow keeps only the listed members", JSONConfig{Allow: []string{"id", "name"}}, user, `{"id":1,"name":"Ann"}`},
		{"allow keeps the body's order, not the list's", JSONConfig{Allow: []string{"name", "id"}}, user, `{"id":1,"name":"Ann"}`},
		{"allow into a nested object keeps only what is allowed inside",
			JSONConfig{Allow: []string{"id", "profile.email"}}, user, `{"id":1,"profile":{"email":"p@x.io"}}`},
		{"allow of a whole object keeps it as it is",
			JSONConfig{Allow: []string{"profile"}}, user, `{"profile":{"email":"p@x.io","ssn":"123","name":"Ann Lee"}}`},
		{"allow through a member that is not an object drops it",
			JSONConfig{Allow: []string{"id", "profile.email"}}, `{"id":1,"profile":"none"}`, `{"id":1}`},
		{"allow reaches through an array into its objects",
			JSONConfig{Allow: []string{"items.id"}}, `{"items":[{"id":1,"x":2},3,[{"id":4,"y":5}]],"z":1}`, `{"items":[{"id":1},3,[{"id":4}]]}`},
		{"allow through a scalar drops it", JSONConfig{Allow: []string{"items.id"}}, `{"items":7}`, `{}`},
		{"allow with only missing paths leaves an empty object", JSONConfig{Allow: []string{"nope", "a.b"}}, user, `{}`},
		{"allow into an empty nested object", JSONConfig{Allow: []string{"p.a"}}, `{"p":{},"q":1}`, `{"p":{}}`},
		// deny
		{"deny removes members", JSONConfig{Deny: []string{"password", "profile.ssn"}}, user,
			`{"id":1,"name":"Ann","email":"a@x.io","profile":{"email":"p@x.io","name":"Ann Lee"}}`},
		{"deny of missing paths changes nothing", JSONConfig{Deny: []string{"nope", "id.x", "profile.nope"}}, `{"id":1,"profile":{"a":1}}`, `{"id":1,"profile":{"a":1}}`},
		{"deny inside an allowed object", JSONConfig{Allow: []string{"id", "profile"}, Deny: []string{"profile.ssn"}}, user,
			`{"id":1,"profile":{"email":"p@x.io","name":"Ann Lee"}}`},
		{"deny removes every duplicate of a key", JSONConfig{Deny: []string{"a"}}, `{"a":1,"b":2,"a":3}`, `{"b":2}`},
		{"deny reaches into arrays, nested ones too", JSONConfig{Deny: []string{"items.secret"}},
			`{"items":[{"secret":1,"a":2},[{"secret":3}]]}`, `{"items":[{"a":2},[{}]]}`},
		{"deny on an array root of arrays", JSONConfig{Deny: []string{"password"}}, `[[{"password":1,"id":2}]]`, `[[{"id":2}]]`},
		// rename
		{"rename keeps the member's position", JSONConfig{Rename: map[string]string{"email": "contact"}},
			`{"id":1,"email":"a@x.io","name":"Ann"}`, `{"id":1,"contact":"a@x.io","name":"Ann"}`},
		{"rename inside a nested object", JSONConfig{Rename: map[string]string{"profile.name": "profile.full_name"}},
			`{"profile":{"name":"Ann Lee","email":"e"},"name":"Ann"}`, `{"profile":{"full_name":"Ann Lee","email":"e"},"name":"Ann"}`},
		{"rename replaces a member that already has the new name", JSONConfig{Rename: map[string]string{"email": "contact"}},
			`{"contact":"old","email":"new","id":1}`, `{"contact":"new","id":1}`},
		{"rename whose member is missing leaves a member with the new name alone", JSONConfig{Rename: map[string]string{"email": "contact"}},
			`{"contact":"old","id":1}`, `{"contact":"old","id":1}`},
		{"renames happen at once, so they can swap", JSONConfig{Rename: map[string]string{"a": "b", "b": "a"}},
			`{"a":1,"b":2}`, `{"b":1,"a":2}`},
		{"rename of a parent and of its child", JSONConfig{Rename: map[string]string{"profile": "user", "profile.name": "profile.full"}},
			`{"profile":{"name":"n"}}`, `{"user":{"full":"n"}}`},
		{"rename of a denied-away neighbour's name keeps the renamed value", JSONConfig{Deny: []string{"contact"}, Rename: map[string]string{"email": "contact"}},
			`{"contact":"old","email":"new"}`, `{"contact":"new"}`},
		{"rename to a key that needs escaping", JSONConfig{Rename: map[string]string{"a": `q"<`}}, `{"a":1}`, `{"q\"\u003c":1}`},
		// wrap
		{"wrap puts the body under a key", JSONConfig{Wrap: "result"}, `{"id":1}`, `{"result":{"id":1}}`},
		{"wrap with a dotted path nests", JSONConfig{Wrap: "meta.result"}, `[1]`, `{"meta":{"result":[1]}}`},
		{"wrap of a scalar body", JSONConfig{Wrap: "result"}, ` 42 `, `{"result":42}`},
		// array roots
		{"an array root is shaped element by element, non-objects kept",
			JSONConfig{Allow: []string{"id"}}, `[{"id":1,"x":2},3,"s",null,[{"id":9,"x":1}],{"x":1},{"id":2}]`,
			`[{"id":1},3,"s",null,[{"id":9}],{},{"id":2}]`},
		{"an array at the target is shaped element by element",
			JSONConfig{Target: "data", Deny: []string{"secret"}, Wrap: "items"}, `{"data":[{"id":1,"secret":"s"},{"id":2}],"total":2}`,
			`{"items":[{"id":1},{"id":2}]}`},
		{"an empty array", JSONConfig{Allow: []string{"id"}}, `[]`, `[]`},
		{"an empty object", JSONConfig{Allow: []string{"id"}}, `{ }`, `{}`},
		{"a scalar root is left as it is", JSONConfig{Allow: []string{"id"}}, `"text"`, `"text"`},
		// everything together, in order: target, allow, deny, rename, wrap
		{"all settings", JSONConfig{
			Target: "data",
			Allow:  []string{"id", "email", "profile"},
			Deny:   []string{"profile.ssn"},
			Rename: map[string]string{"email": "contact", "profile.name": "profile.full_name"},
			Wrap:   "result",
		}, `{"data":` + user + `,"meta":{}}`, `{"result":{"id":1,"contact":"a@x.io","profile":{"email":"p@x.io","full_name":"Ann Lee"}}}`},
		// the text itself
		{"untouched values keep their bytes, whitespace and number spelling",
			JSONConfig{Allow: []string{"n", "f", "p"}}, "{\n  \"n\": 12345678901234567890123,\n  \"f\": 1.0E+2,\n  \"p\": {\"x\": [1, 2]},\n  \"z\": 0\n}",
			`{"n":12345678901234567890123,"f":1.0E+2,"p":{"x": [1, 2]}}`},
		{"escaped keys in the body are matched by their value", JSONConfig{Allow: []string{"name"}}, `{"n\u0061me":"x","nam":1}`, `{"name":"x"}`},
		{"keys that need escaping are written escaped", JSONConfig{Deny: []string{"z"}}, `{"a\"b\\c\n":1,"z":2}`, `{"a\"b\\c\n":1}`},
		{"HTML characters and U+2028/2029 are escaped for browsers", JSONConfig{Deny: []string{"z"}},
			"{\"a\":\"<script>&\u2028\u2029\",\"k<\":1,\"u\":\"\\u003c\"}", `{"a":"\u003cscript\u003e\u0026\u2028\u2029","k\u003c":1,"u":"\u003c"}`},
		{"invalid UTF-8 becomes U+FFFD", JSONConfig{Wrap: "r"}, "{\"a\":\"x\xffy\"}", `{"r":{"a":"x\ufffdy"}}`},
		{"unicode passes through", JSONConfig{Wrap: "r"}, `{"a":"héllo 😀"}`, `{"r":{"a":"héllo 😀"}}`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			j := mustJSON(t, tc.cfg)
			ctx := serveJSON(t, j, "GET", jsonUpstream{status: 200, ctype: "application/json", body: tc.in})
			resp := &ctx.Response
			if got := string(resp.Body()); got != tc.want {
				t.Errorf("body\n got %s\nwant %s", got, tc.want)
			}
			if !json.Valid(resp.Body()) {
				t.Errorf("output is not valid JSON: %s", resp.Body())
			}
			if resp.Header.ContentLength() != len(tc.want) {
				t.Errorf("Content-Length %d, want %d", resp.Header.ContentLength(), len(tc.want))
			}
			if string(resp.Header.Peek("X-Upstream")) != "kept" || string(resp.Header.ContentType()) != "application/json" {
				t.Errorf("other headers changed: %s", resp.Header.String())
			}
			if j.Shaped() != 1 {
				t.Errorf("Shaped() = %d, want 1; skipped %v", j.Shaped(), j.Skipped())
			}
		})
	}
}

func TestJSON_PassesThroughWhatItCannotOrMustNotShape(t *testing.T) {
	const body = `{"data":{"id":1,"password":"pw"}}`
	cfg := JSONConfig{Target: "data", Deny: []string{"password"}}
	ok := jsonUpstream{status: 200, ctype: "application/json", body: body}
	with := func(f func(*jsonUpstream)) jsonUpstream { u := ok; f(&u); return u }
	for _, tc := range []struct {
		desc   string
		cfg    *JSONConfig // nil: cfg
		method string      // "": GET
		up     jsonUpstream
		reason string // "" means shaped
	}{
		{desc: "a plain JSON response is shaped", up: ok},
		{desc: "201 is shaped", up: with(func(u *jsonUpstream) { u.status = 201 })},
		{desc: "charset parameter", up: with(func(u *jsonUpstream) { u.ctype = "application/json; charset=utf-8" })},
		{desc: "upper-case type", up: with(func(u *jsonUpstream) { u.ctype = "Application/JSON" })},
		{desc: "+json type", up: with(func(u *jsonUpstream) { u.ctype = "application/problem+json" })},
		{desc: "vendor +json type with parameters", up: with(func(u *jsonUpstream) { u.ctype = "application/vnd.api+json ; ext=v1" })},
		{desc: "identity encoding", up: with(func(u *jsonUpstream) { u.encoding = "Identity" })},

		{desc: "the gateway answered (upstream unreachable)", up: with(func(u *jsonUpstream) { u.reject = 502 }), reason: JSONSkipNotAnswered},
		{desc: "404", up: with(func(u *jsonUpstream) { u.status = 404 }), reason: JSONSkipStatus},
		{desc: "500", up: with(func(u *jsonUpstream) { u.status = 500 }), reason: JSONSkipStatus},
		{desc: "206 partial content", up: with(func(u *jsonUpstream) { u.status = 206 }), reason: JSONSkipStatus},
		{desc: "204 no content", up: with(func(u *jsonUpstream) { u.status = 204; u.body = "" }), reason: JSONSkipStatus},
		{desc: "HEAD", method: "HEAD", up: ok, reason: JSONSkipHead},
		{desc: "text/plain", up: with(func(u *jsonUpstream) { u.ctype = "text/plain" }), reason: JSONSkipContentType},
		{desc: "text/json", up: with(func(u *jsonUpstream) { u.ctype = "text/json" }), reason: JSONSkipContentType},
		{desc: "application/jsonx", up: with(func(u *jsonUpstream) { u.ctype = "application/jsonx" }), reason: JSONSkipContentType},
		{desc: "application/json-seq", up: with(func(u *jsonUpstream) { u.ctype = "application/json-seq" }), reason: JSONSkipContentType},
		{desc: "bare +json", up: with(func(u *jsonUpstream) { u.ctype = "application/+json" }), reason: JSONSkipContentType},
		{desc: "no Content-Type", up: with(func(u *jsonUpstream) { u.ctype = "" }), reason: JSONSkipContentType},
		{desc: "gzip body", up: with(func(u *jsonUpstream) { u.encoding = "gzip"; u.body = "\x1f\x8b\x08\x00garbage" }), reason: JSONSkipEncoding},
		{desc: "br body", up: with(func(u *jsonUpstream) { u.encoding = "br" }), reason: JSONSkipEncoding},
		{desc: "streamed body", up: with(func(u *jsonUpstream) { u.stream = true }), reason: JSONSkipStream},
		{desc: "body over max_body_bytes", cfg: &JSONConfig{Target: "data", MaxBodyBytes: len(body) - 1}, up: ok, reason: JSONSkipTooLarge},
		{desc: "truncated JSON", up: with(func(u *jsonUpstream) { u.body = body[:len(body)-1] }), reason: JSONSkipInvalidJSON},
		{desc: "trailing garbage", up: with(func(u *jsonUpstream) { u.body = body + " x" }), reason: JSONSkipInvalidJSON},
		{desc: "two documents", up: with(func(u *jsonUpstream) { u.body = body + body }), reason: JSONSkipInvalidJSON},
		{desc: "empty body", up: with(func(u *jsonUpstream) { u.body = "" }), reason: JSONSkipInvalidJSON},
		// sonic.Get would find "data" and not look further: lazy validation.
		{desc: "error after the target", up: with(func(u *jsonUpstream) { u.body = `{"data":{"id":1},"x":tru}` }), reason: JSONSkipInvalidJSON},
		// sonic.Valid accepts these; encoding/json does not.
		{desc: "unknown escape", up: with(func(u *jsonUpstream) { u.body = `{"data":{"id":"\x"}}` }), reason: JSONSkipInvalidJSON},
		{desc: "short \\u escape", up: with(func(u *jsonUpstream) { u.body = `{"data":{"id":"\u12"}}` }), reason: JSONSkipInvalidJSON},
		{desc: "raw control character in a string", up: with(func(u *jsonUpstream) { u.body = "{\"data\":{\"id\":\"a\tb\"}}" }), reason: JSONSkipInvalidJSON},
		{desc: "target missing", up: with(func(u *jsonUpstream) { u.body = `{"result":{"id":1}}` }), reason: JSONSkipMissingTarget},
		{desc: "target through an array", cfg: &JSONConfig{Target: "data.id"}, up: with(func(u *jsonUpstream) { u.body = `{"data":[{"id":1}]}` }), reason: JSONSkipMissingTarget},
		{desc: "target through a scalar", cfg: &JSONConfig{Target: "data.id"}, up: with(func(u *jsonUpstream) { u.body = `{"data":"x"}` }), reason: JSONSkipMissingTarget},
		{desc: "target on an array root", up: with(func(u *jsonUpstream) { u.body = `[{"data":1}]` }), reason: JSONSkipMissingTarget},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := cfg
			if tc.cfg != nil {
				c = *tc.cfg
			}
			j := mustJSON(t, c)
			method := tc.method
			if method == "" {
				method = "GET"
			}
			var sawAE string
			tc.up.sawAE = &sawAE
			ctx := serveJSON(t, j, method, tc.up)
			if sawAE != "" {
				t.Errorf("upstream saw Accept-Encoding %q", sawAE)
			}
			if got := string(ctx.Request.Header.Peek(fasthttp.HeaderAcceptEncoding)); got != "gzip, br" {
				t.Errorf("client's Accept-Encoding afterwards: %q", got)
			}
			skipped := j.Skipped()
			if tc.reason == "" {
				if j.Shaped() != 1 || string(ctx.Response.Body()) != `{"id":1}` {
					t.Errorf("not shaped: body %s, skipped %v", ctx.Response.Body(), skipped)
				}
				return
			}
			if j.Shaped() != 0 || skipped[tc.reason] != 1 {
				t.Errorf("Shaped %d, Skipped %v; want one %s", j.Shaped(), skipped, tc.reason)
			}
			for r, n := range skipped {
				if r != tc.reason && n != 0 {
					t.Errorf("also counted as %s", r)
				}
			}
			if tc.up.reject != 0 {
				if len(ctx.Response.Body()) != 0 || ctx.Response.StatusCode() != 200 {
					t.Errorf("the filter touched a response the gateway renders: %d %q", ctx.Response.StatusCode(), ctx.Response.Body())
				}
				return
			}
			if method == "HEAD" {
				return
			}
			if got := string(ctx.Response.Body()); got != tc.up.body {
				t.Errorf("body changed: %q, want %q", got, tc.up.body)
			}
			if ctx.Response.Header.ContentLength() != len(tc.up.body) && !tc.up.stream {
				t.Errorf("Content-Length %d, want %d", ctx.Response.Header.ContentLength(), len(tc.up.body))
			}
		})
	}
}

func TestJSON_SkippedListsEveryReason(t *testing.T) {
	j := mustJSON(t, JSONConfig{Wrap: "r"})
	got := j.Skipped()
	for _, r := range []string{JSONSkipNotAnswered, JSONSkipStatus, JSONSkipHead, JSONSkipContentType, JSONSkipEncoding,
		JSONSkipStream, JSONSkipTooLarge, JSONSkipInvalidJSON, JSONSkipMissingTarget} {
		if v, ok := got[r]; !ok || v != 0 {
			t.Errorf("Skipped()[%q] = %d, %v", r, v, ok)
		}
	}
	if len(got) != 9 {
		t.Errorf("Skipped() has %d reasons: %v", len(got), got)
	}
}

func TestJSON_NoAcceptEncodingLeavesNone(t *testing.T) {
	j := mustJSON(t, JSONConfig{Wrap: "r"})
	ctx := new(fasthttp.RequestCtx)
	x := AcquireExchange(ctx)
	defer ReleaseExchange(x)
	var saw string
	j.Wrap(jsonUpstream{status: 200, ctype: "application/json", body: `1`, sawAE: &saw}).Serve(x)
	if ctx.Request.Header.Peek(fasthttp.HeaderAcceptEncoding) != nil || string(ctx.Response.Body()) != `{"r":1}` {
		t.Errorf("Accept-Encoding %q, body %s", ctx.Request.Header.Peek(fasthttp.HeaderAcceptEncoding), ctx.Response.Body())
	}
}

// One filter serves many requests at once; nothing of a request may be shared.
func TestJSON_ConcurrentRequests(t *testing.T) {
	j := mustJSON(t, JSONConfig{Target: "data", Allow: []string{"id", "p.e"}, Rename: map[string]string{"id": "key"}, Wrap: "r"})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				n := strings.Repeat("x", (g*7+i)%50)
				in := `{"data":[{"id":"` + n + `","p":{"e":1,"s":2}},{"id":2}]}`
				want := `{"r":[{"key":"` + n + `","p":{"e":1}},{"key":2}]}`
				ctx := new(fasthttp.RequestCtx)
				x := AcquireExchange(ctx)
				j.Wrap(jsonUpstream{status: 200, ctype: "application/json", body: in}).Serve(x)
				if got := string(ctx.Response.Body()); got != want {
					t.Errorf("got %s, want %s", got, want)
				}
				ReleaseExchange(x)
			}
		}(g)
	}
	wg.Wait()
	if j.Shaped() != 1600 {
		t.Errorf("Shaped() = %d", j.Shaped())
	}
}

func TestNewJSON_ValidationErrors(t *testing.T) {
	for _, tc := range []struct {
		desc string
		cfg  JSONConfig
		want []string
	}{
		{"nothing set", JSONConfig{MaxBodyBytes: 1}, []string{
			`: set at least one of target, allow, deny, rename or wrap`}},
		{"max_body_bytes", JSONConfig{Wrap: "r", MaxBodyBytes: -1}, []string{
			`max_body_bytes: must be more than 0 bytes, got -1`}},
		{"bad paths", JSONConfig{Target: "a..b", Wrap: ".r", Allow: []string{"", "a.", "ok"}, Deny: []string{"x y", "."}, MaxBodyBytes: 1}, []string{
			`target: invalid path "a..b"; write keys separated by dots, like profile.email`,
			`wrap: invalid path ".r"; write keys separated by dots, like profile.email`,
			`allow[0]: invalid path ""; write keys separated by dots, like profile.email`,
			`allow[1]: invalid path "a."; write keys separated by dots, like profile.email`,
			`deny[1]: invalid path "."; write keys separated by dots, like profile.email`}},
		{"empty lists", JSONConfig{Allow: []string{}, Deny: []string{}, Rename: map[string]string{}, MaxBodyBytes: 1}, []string{
			`allow: the list is empty, which would drop everything; leave allow out to keep every member`,
			`deny: the list is empty; list at least one path or leave deny out`,
			`rename: the mapping is empty; map at least one path or leave rename out`}},
		{"overlapping allow and deny paths", JSONConfig{
			Allow: []string{"id", "profile.email", "id", "profile"},
			Deny:  []string{"a.b", "a", "a.b"}, MaxBodyBytes: 1}, []string{
			`allow[2]: "id" is listed twice (also allow[0])`,
			`allow[3]: "profile" contains allow[1] "profile.email"; list only one of them`,
			`deny[1]: "a" contains deny[0] "a.b"; list only one of them`,
			`deny[2]: "a.b" is listed twice (also deny[0])`}},
		{"allow and deny naming the same path", JSONConfig{Allow: []string{"id", "profile.email"}, Deny: []string{"id", "profile"}, MaxBodyBytes: 1}, []string{
			`deny[0]: "id" is also in allow[0]; a path is either allowed or denied`,
			`deny[1]: "profile" removes allow[1] "profile.email" entirely; deny something inside an allowed path instead`}},
		{"renames", JSONConfig{
			Allow: []string{"a", "b", "p", "c.d"},
			Deny:  []string{"p.x"},
			Rename: map[string]string{
				"a":     "p.a", // another object
				"p.n":   "n",   // another object
				"b":     "b",   // itself
				"p.x":   "p.y", // denied
				"zz":    "z",   // not allowed
				"p.m":   "p.k",
				"p.o":   "p.k", // same new name
				"c":     "a",   // replaces an allowed member
				"c.d.e": "c.d.f",
			}, MaxBodyBytes: 1}, []string{
			`rename.a: "p.a" is not in the same object as "a"; a rename stays inside its parent object (write "a")`,
			`rename.b: renames "b" to itself`,
			`rename.c: new name "a" would replace allow[0] "a"`,
			`rename.p.n: "n" is not in the same object as "p.n"; a rename stays inside its parent object (write "p.n")`,
			`rename.p.o: "p.k" is also the new name of rename.p.m`,
			`rename.p.x: "p.x" is removed by deny[0] "p.x" before renames run`,
			`rename.zz: "zz" is not kept by allow, so there is nothing to rename`}},
		{"bad rename paths", JSONConfig{Rename: map[string]string{"a..b": "c", "d": ""}, MaxBodyBytes: 1}, []string{
			`rename.a..b: invalid path "a..b"; write keys separated by dots, like profile.email`,
			`rename.d: invalid path ""; write keys separated by dots, like profile.email`}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			j, err := NewJSON(tc.cfg, Env{})
			if err == nil {
				t.Fatalf("no error; filter %+v", j)
			}
			got := configErrorTexts(err)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors\n got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestNewJSON_AcceptsValidSettings(t *testing.T) {
	for _, cfg := range []JSONConfig{
		{Target: "data", MaxBodyBytes: 1},
		{Wrap: "a.b", MaxBodyBytes: 1},
		{Allow: []string{"id", "profile.email"}, Deny: []string{"profile.email.x", "other"}, MaxBodyBytes: 1},
		{Allow: []string{"profile"}, Deny: []string{"profile.ssn"}, Rename: map[string]string{"profile": "user", "profile.a": "profile.b"}, MaxBodyBytes: 1},
		{Allow: []string{"p.e"}, Rename: map[string]string{"p": "q"}, MaxBodyBytes: 1},
		{Rename: map[string]string{"a": "b", "b": "a"}, MaxBodyBytes: 1},
		{Deny: []string{"contact"}, Rename: map[string]string{"email": "contact"}, MaxBodyBytes: 1},
	} {
		if _, err := NewJSON(cfg, Env{}); err != nil {
			t.Errorf("NewJSON(%+v): %v", cfg, err)
		}
	}
}

// validJSON must agree with encoding/json.Valid: sonic's own validator does not check strings.
func TestValidJSON_AgreesWithEncodingJSON(t *testing.T) {
	cases := []string{
		`{}`, `[]`, `1`, `"s"`, `null`, ` {"a" : [1, {"b":"c"}]} `, `"\u00e9\"\\\/\b\f\n\r\t"`,
		`"\u12"`, `"\x"`, `"\'"`, "\"\t\"", "\"\x00\"", "\"\x7f\"", "\"\xff\"", `"\uD800"`, `"a\`, `"`,
		`{"a":1,}`, `[1,]`, `01`, `1.`, `-`, `{"a" 1}`, `{1:2}`, `tru`, `[1 2]`, "[1]\x00", "\ufeff[1]", ``, ` `,
		`"` + strings.Repeat("abcdefgh", 5) + `\u00zz"`, `"` + strings.Repeat("abcdefgh", 5) + "\x01" + `"`,
		`["` + strings.Repeat("ab\"", 1) + `"]`,
		// sonic accepts an unclosed top-level string ending on a 32-byte boundary.
		`"` + strings.Repeat("0", 32), ` "` + strings.Repeat("0", 64), `"` + strings.Repeat("0", 31) + `\"`,
		`"` + strings.Repeat("0", 32) + `"`, ` "` + strings.Repeat("0", 64) + `" `,
	}
	for _, c := range cases {
		if got, want := validJSON([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("validJSON(%q) = %v, encoding/json says %v", c, got, want)
		}
	}
	// Random edits of valid documents, dense in escapes, quotes and control characters.
	seeds := []string{
		`{"a":[1,2,{"b":"c\n\"d\u00e9"}],"e":-1.5e3,"f":null,"g":true,"h":"0123456789abcdef\\"}`,
		`[{"x":"\u00e9\ud83d\ude00"},false,"long string with no escapes at all, long enough for words"]`,
	}
	alpha := []byte("{}[]\",:\\ 0123456789.eE+-tfnulrsabu/\x01\t\n\x7f\xc3\xa9")
	r := rand.New(rand.NewSource(1))
	n := 100000
	if testing.Short() {
		n = 10000
	}
	for i := 0; i < n; i++ {
		b := []byte(seeds[r.Intn(len(seeds))])
		for k := 0; k < 1+r.Intn(3); k++ {
			p := r.Intn(len(b))
			switch r.Intn(3) {
			case 0:
				b[p] = alpha[r.Intn(len(alpha))]
			case 1:
				b = append(b[:p], b[p+1:]...)
			default:
				b = append(b[:p], append([]byte{alpha[r.Intn(len(alpha))]}, b[p:]...)...)
			}
		}
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json says %v", b, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"a":"b\n"}`, `"\u12"`, "\"\t\"", `[1,{"x":[]}]`, ` "top level" `,
		"{\n  \"a\": [1, \"x\\ty\", {\"b\": null}],\n  \"c\": \"\\u00e9\"\n}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

// Shaped output is always valid JSON equal, as a value, to shaping the decoded body.
func TestJSON_OutputIsValidForRandomDocuments(t *testing.T) {
	j := mustJSON(t, JSONConfig{Allow: []string{"a", "b.c", "d"}, Deny: []string{"d.x"}, Rename: map[string]string{"a": "z", "b.c": "b.y"}, Wrap: "w"})
	r := rand.New(rand.NewSource(2))
	var gen func(depth int) any
	gen = func(depth int) any {
		switch k := r.Intn(7); {
		case depth > 3 || k == 0:
			return r.Intn(100)
		case k == 1:
			return "s<&>\u2028" + strings.Repeat("q\"\\", r.Intn(2))
		case k == 2:
			return []any{gen(depth + 1), gen(depth + 1)}
		default:
			m := map[string]any{}
			for _, key := range []string{"a", "b", "c", "d", "x", "y", "z"} {
				if r.Intn(2) == 0 {
					m[key] = gen(depth + 1)
				}
			}
			return m
		}
	}
	for i := 0; i < 500; i++ {
		doc := gen(0)
		in, _ := json.Marshal(doc)
		bufs := &jsonBufs{}
		out, reason := j.transform(in, bufs)
		if reason != shapedOK || !json.Valid(out) {
			t.Fatalf("transform(%s) = %s, %d", in, out, reason)
		}
		var got any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"w": referenceShape(doc)}
		if !jsonEqual(got, want) {
			t.Fatalf("transform(%s)\n got %s", in, out)
		}
	}
}

// referenceShape applies the test's settings to a decoded document the slow, obvious way.
func referenceShape(doc any) any {
	bRules := func(b map[string]any) map[string]any {
		nb := map[string]any{}
		if v, ok := b["c"]; ok {
			nb["y"] = v
		}
		return nb
	}
	dRules := func(d map[string]any) map[string]any {
		nd := map[string]any{}
		for k, v := range d {
			if k != "x" {
				nd[k] = v
			}
		}
		return nd
	}
	shape := func(m map[string]any) map[string]any {
		out := map[string]any{}
		if v, ok := m["a"]; ok {
			out["z"] = v
		}
		switch b := m["b"].(type) {
		case map[string]any, []any: // a scalar b has nothing the allow path could keep
			out["b"] = throughArrays(b, bRules)
		}
		if d, ok := m["d"]; ok {
			out["d"] = throughArrays(d, dRules)
		}
		return out
	}
	return throughArrays(doc, shape)
}

// throughArrays applies f to v if it is an object and to every object inside v if it is an array
// (nested arrays too), and leaves other values as they are: how the filter's rules reach through arrays.
func throughArrays(v any, f func(map[string]any) map[string]any) any {
	switch t := v.(type) {
	case map[string]any:
		return f(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = throughArrays(e, f)
		}
		return out
	}
	return v
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestJSON_ShapedBodyDropsTheUpstreamsValidators(t *testing.T) {
	j, err := NewJSON(JSONConfig{Deny: []string{"secret"}, MaxBodyBytes: 1 << 20}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Request.SetRequestURI("/x")
	h := j.Wrap(handlerFunc(func(x *Exchange) {
		x.Ctx.Response.Header.SetContentType("application/json")
		x.Ctx.Response.Header.Set("ETag", `"abc"`)
		x.Ctx.Response.Header.Set("Digest", "sha-256=xyz")
		x.Ctx.Response.Header.Set("Cache-Control", "max-age=60")
		x.Ctx.Response.SetBodyString(`{"id":1,"secret":2}`)
	}))
	x := AcquireExchange(&ctx)
	defer ReleaseExchange(x)
	h.Serve(x)
	hdr := &ctx.Response.Header
	if string(ctx.Response.Body()) != `{"id":1}` || len(hdr.Peek("ETag")) != 0 || len(hdr.Peek("Digest")) != 0 ||
		string(hdr.Peek("Cache-Control")) != "max-age=60" {
		t.Fatalf("body %s, ETag %q, Digest %q, Cache-Control %q", ctx.Response.Body(), hdr.Peek("ETag"), hdr.Peek("Digest"), hdr.Peek("Cache-Control"))
	}
}
