package gateway

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

// jsonRouteConfig is one route /{rest:*} to target with a json filter whose settings are settings
// (YAML, indented for the filter's mapping).
func jsonRouteConfig(target, settings string) string {
	return filterConfig(target, "      - json:\n"+settings)
}

const jsonE2ESettings = `          target: data
          allow: [id, name, email, profile.email]
          deny: [profile.email.internal]
          rename: {email: contact, profile.email: profile.mail}
          wrap: result
`

const jsonE2EUser = `{"data":{"id":7,"name":"Ann <admin>","email":"a@x.io","password":"pw","profile":{"email":"p@x.io","ssn":"123"}},"meta":{"page":1}}`

// jsonBackend answers by path and records the Accept-Encoding of every request it gets.
type jsonBackend struct {
	mu  sync.Mutex
	aes []string
}

func (b *jsonBackend) acceptEncodings() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.aes...)
}

func (b *jsonBackend) handle(ctx *fasthttp.RequestCtx) {
	b.mu.Lock()
	b.aes = append(b.aes, string(ctx.Request.Header.Peek(fasthttp.HeaderAcceptEncoding)))
	b.mu.Unlock()
	ctx.Response.Header.Set("X-Backend", "yes")
	ctx.SetContentType("application/json; charset=utf-8")
	switch string(ctx.Path()) {
	case "/user":
		ctx.WriteString(jsonE2EUser)
	case "/problem":
		ctx.SetContentType("application/vnd.api+json")
		ctx.WriteString(`{"data":[{"id":1,"email":"a"},{"id":2,"password":"x"},"s"]}`)
	case "/chunked":
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			w.WriteString(`{"data":{"id":1,`)
			w.Flush()
			w.WriteString(`"email":"c@x.io","x":1}}`)
		})
	case "/text":
		ctx.SetContentType("text/plain")
		ctx.WriteString(jsonE2EUser)
	case "/gzip":
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write([]byte(jsonE2EUser))
		zw.Close()
		ctx.Response.Header.Set(fasthttp.HeaderContentEncoding, "gzip")
		ctx.Write(buf.Bytes())
	case "/invalid":
		ctx.WriteString(`{"data":{"id":1},"x":tru}`)
	case "/missing":
		ctx.WriteString(`{"items":[]}`)
	case "/notfound":
		ctx.SetStatusCode(404)
		ctx.WriteString(`{"data":{"id":1,"password":"pw"},"error":"no such user"}`)
	}
}

func TestJSONFilter_ShapesResponsesThroughTheGateway(t *testing.T) {
	be := &jsonBackend{}
	gw, _ := startGateway(t, jsonRouteConfig(startBackend(t, be.handle), jsonE2ESettings))

	for _, tc := range []struct {
		path string
		want string // "" means the backend's body unchanged
		orig string
	}{
		{path: "/user", want: `{"result":{"id":7,"name":"Ann \u003cadmin\u003e","contact":"a@x.io","profile":{"mail":"p@x.io"}}}`},
		{path: "/problem", want: `{"result":[{"id":1,"contact":"a"},{"id":2},"s"]}`},
		{path: "/chunked", want: `{"result":{"id":1,"contact":"c@x.io"}}`},
		{path: "/text", orig: jsonE2EUser},
		{path: "/invalid", orig: `{"data":{"id":1},"x":tru}`},
		{path: "/missing", orig: `{"items":[]}`},
		{path: "/notfound", orig: `{"data":{"id":1,"password":"pw"},"error":"no such user"}`},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			req.SetRequestURI("http://" + gw + tc.path)
			req.Header.Set(fasthttp.HeaderAcceptEncoding, "gzip, deflate, br")
			resp := send(t, gw, req)
			want := tc.want
			if want == "" {
				want = tc.orig
			}
			if got := string(resp.Body()); got != want {
				t.Errorf("body\n got %s\nwant %s", got, want)
			}
			if resp.Header.ContentLength() != len(want) {
				t.Errorf("Content-Length %d, want %d", resp.Header.ContentLength(), len(want))
			}
			if string(resp.Header.Peek("X-Backend")) != "yes" {
				t.Errorf("the backend's headers were lost: %s", resp.Header.String())
			}
			if len(resp.Header.Peek(fasthttp.HeaderContentEncoding)) != 0 {
				t.Errorf("Content-Encoding %q on a JSON body", resp.Header.Peek(fasthttp.HeaderContentEncoding))
			}
		})
	}
	for i, ae := range be.acceptEncodings() {
		if ae != "" {
			t.Errorf("backend request %d carried Accept-Encoding %q", i, ae)
		}
	}
}

func TestJSONFilter_CompressedAnswerPassesThroughUnchanged(t *testing.T) {
	be := &jsonBackend{}
	gw, _ := startGateway(t, jsonRouteConfig(startBackend(t, be.handle), jsonE2ESettings))
	resp := get(t, gw, "/gzip")
	if string(resp.Header.Peek(fasthttp.HeaderContentEncoding)) != "gzip" {
		t.Fatalf("Content-Encoding %q", resp.Header.Peek(fasthttp.HeaderContentEncoding))
	}
	plain, err := resp.BodyGunzip()
	if err != nil || string(plain) != jsonE2EUser {
		t.Errorf("gzip body not passed through: %q, %v", plain, err)
	}
}

func TestJSONFilter_HEADKeepsTheUpstreamHeaders(t *testing.T) {
	be := &jsonBackend{}
	gw, _ := startGateway(t, jsonRouteConfig(startBackend(t, be.handle), jsonE2ESettings))
	raw := rawExchange(t, gw, "HEAD /user HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	head, body, _ := strings.Cut(raw, "\r\n\r\n")
	if statusOf(t, raw) != 200 || body != "" || !strings.Contains(head, fmt.Sprintf("Content-Length: %d", len(jsonE2EUser))) {
		t.Errorf("HEAD through the json filter: %q", raw)
	}
}

func TestJSONFilter_LeavesTheGatewaysOwnErrorAlone(t *testing.T) {
	gw, _ := startGateway(t, jsonRouteConfig(closedAddr(t), jsonE2ESettings))
	resp := get(t, gw, "/user")
	body := string(resp.Body())
	if resp.StatusCode() != 502 || !strings.HasPrefix(body, `{"error":"`) || !strings.Contains(body, `"status":502`) {
		t.Errorf("got %d %s, want the gateway's 502 error body", resp.StatusCode(), body)
	}
	if resp.Header.ContentLength() != len(body) {
		t.Errorf("Content-Length %d for %d bytes", resp.Header.ContentLength(), len(body))
	}
}

func TestJSONFilter_ConfigProblems(t *testing.T) {
	const head = `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
    filters:
`
	runProblemCases(t, []problemCase{
		{
			desc: "bad settings are reported on their own lines",
			yaml: head + `      - json:
          allow:
            - id
            - id
          deny: [id]
          rename:
            profile.name: full_name
          max_body_bytes: 0
`,
			want: []string{
				`test.yaml:14: routes[0].filters[0].json.allow[1]: "id" is listed twice (also allow[0])`,
				`test.yaml:15: routes[0].filters[0].json.deny[0]: "id" is also in allow[0]; a path is either allowed or denied`,
				`test.yaml:17: routes[0].filters[0].json.rename.profile.name: "full_name" is not in the same object as "profile.name"; a rename stays inside its parent object (write "profile.full_name")`,
				`test.yaml:18: routes[0].filters[0].json.max_body_bytes: must be more than 0 bytes, got 0`,
			},
		},
		{
			desc: "a json filter with nothing to do",
			yaml: head + `      - json:
`,
			want: []string{
				`test.yaml:11: routes[0].filters[0].json: set at least one of target, allow, deny, rename or wrap`,
			},
		},
		{
			desc: "unknown key",
			yaml: head + `      - json: {tagret: data}
`,
			want: []string{
				`test.yaml:11: routes[0].filters[0].json.tagret: unknown key "tagret"; did you mean "target"?`,
			},
		},
		{
			desc: "valid settings compile",
			yaml: head + `      - json: {target: data, allow: [id], wrap: result, max_body_bytes: 1024}
`,
		},
	})
}
