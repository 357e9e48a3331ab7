package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// End-to-end specifications of the gateway's edge behaviour: what a backend receives and what a client
// gets back, observed on the wire on both sides.

// ---- helpers ----

// backendRequest is one request as a recording backend received it.
type backendRequest struct {
	Method string
	Target string // the request-target exactly as the gateway wrote it
	Proto  string
	Header http.Header // parsed from the raw header block: nothing defaulted or synthesized
	Body   string
	ConnID uint64
	Remote string
}

// recordingBackend is a real backend that records every request it receives.
type recordingBackend struct {
	Name string
	Addr string

	mu   sync.Mutex
	reqs []backendRequest
}

// startRecordingBackend starts a backend that records each request and then answers with respond, or,
// when respond is nil, with its own name as a text/plain body.
func startRecordingBackend(t *testing.T, name string, respond fasthttp.RequestHandler) *recordingBackend {
	t.Helper()
	b := &recordingBackend{Name: name}
	b.Addr = startBackend(t, func(ctx *fasthttp.RequestCtx) {
		r := backendRequest{
			Method: string(ctx.Method()),
			Target: string(ctx.Request.Header.RequestURI()),
			Proto:  string(ctx.Request.Header.Protocol()),
			Header: parseHeaderBlock(ctx.Request.Header.RawHeaders()),
			Body:   string(ctx.PostBody()),
			ConnID: ctx.ConnID(),
			Remote: ctx.RemoteAddr().String(),
		}
		b.mu.Lock()
		b.reqs = append(b.reqs, r)
		b.mu.Unlock()
		if respond != nil {
			respond(ctx)
			return
		}
		ctx.SetContentType("text/plain")
		ctx.WriteString(name)
	})
	return b
}

// requests returns what the backend received so far.
func (b *recordingBackend) requests() []backendRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]backendRequest(nil), b.reqs...)
}

// take returns the single request received since the last take or reset, failing the test otherwise.
func (b *recordingBackend) take(t *testing.T) backendRequest {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.reqs) != 1 {
		t.Fatalf("backend %q received %d requests, want exactly 1: %+v", b.Name, len(b.reqs), b.reqs)
	}
	r := b.reqs[0]
	b.reqs = nil
	return r
}

func (b *recordingBackend) reset() {
	b.mu.Lock()
	b.reqs = nil
	b.mu.Unlock()
}

// expectNone fails the test if the backend received anything.
func (b *recordingBackend) expectNone(t *testing.T) {
	t.Helper()
	if got := b.requests(); len(got) != 0 {
		t.Errorf("backend %q received %d requests, want none: %+v", b.Name, len(got), got)
	}
}

// parseHeaderBlock reads "Name: value" lines as received into an http.Header with canonical keys.
func parseHeaderBlock(raw []byte) http.Header {
	h := http.Header{}
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimRight(line, "\r")
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
		h[k] = append(h[k], strings.TrimSpace(value))
	}
	return h
}

// rawRequest builds a request with "Connection: close", so the gateway closes the connection after
// answering and rawExchange returns at once.
func rawRequest(requestLine string, headers ...string) string {
	var b strings.Builder
	b.WriteString(requestLine + "\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.String()
}

// parseResponse parses the first HTTP response in raw exactly as sent: net/http adds no headers.
func parseResponse(t *testing.T, raw string) (*http.Response, string) {
	t.Helper()
	return readResponse(t, bufio.NewReader(strings.NewReader(raw)), raw)
}

func readResponse(t *testing.T, br *bufio.Reader, context string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no HTTP response: %v\nreceived: %q", err, context)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response body: %v\nreceived: %q", err, context)
	}
	return resp, string(body)
}

// exchange sends raw to the gateway and parses its answer.
func exchange(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	return parseResponse(t, rawExchange(t, addr, raw))
}

// exchangeUntilClose sends raw and reads until the server closes the connection. closed is false if
// the connection was still open after within.
func exchangeUntilClose(t *testing.T, addr, raw string, within time.Duration) (got string, closed bool) {
	t.Helper()
	conn := dialAndWrite(t, addr, raw)
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(within))
	var out strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			var ne net.Error
			return out.String(), !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// checkJSONError checks a gateway-made answer: the status, a JSON body of exactly
// {"error": non-empty, "status": status, "request_id": the X-Request-Id header}. It returns the id.
func checkJSONError(t *testing.T, resp *http.Response, body string, status int) string {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d, want %d (body %q)", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e struct {
		Error     *string `json:"error"`
		Status    *int    `json:"status"`
		RequestID *string `json:"request_id"`
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Errorf("body is not the JSON error object: %v: %q", err, body)
		return ""
	}
	switch {
	case e.Error == nil || *e.Error == "":
		t.Errorf("body has no error text: %q", body)
	case e.Status == nil || *e.Status != status:
		t.Errorf("body status is not %d: %q", status, body)
	case e.RequestID == nil || *e.RequestID == "":
		t.Errorf("body has no request_id: %q", body)
	case *e.RequestID != resp.Header.Get("X-Request-Id"):
		t.Errorf("body request_id %q differs from X-Request-Id header %q", *e.RequestID, resp.Header.Get("X-Request-Id"))
	}
	if e.RequestID == nil {
		return ""
	}
	return *e.RequestID
}

// ---- 1. hop-by-hop headers ----

func TestEdge_HopByHopHeadersStrippedBothWays(t *testing.T) {
	b := startRecordingBackend(t, "b", func(ctx *fasthttp.RequestCtx) {
		h := &ctx.Response.Header
		h.Set("Connection", "X-Secret")
		h.Set("X-Secret", "s3cr3t")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", `Basic realm="internal"`)
		h.Set("X-Ordinary", "visible")
		ctx.SetContentType("text/plain")
		ctx.WriteString("ok")
	})
	// Precondition, so the client-side assertions below can fail: the backend really sends them.
	direct, _ := exchange(t, b.Addr, "GET /direct HTTP/1.1\r\nHost: h\r\n\r\n")
	for _, k := range []string{"X-Secret", "Keep-Alive", "Proxy-Authenticate"} {
		if direct.Header.Get(k) == "" {
			t.Fatalf("precondition: backend does not send %s itself: %v", k, direct.Header)
		}
	}
	if !strings.Contains(direct.Header.Get("Connection"), "X-Secret") {
		t.Fatalf("precondition: backend does not send Connection: X-Secret: %v", direct.Header)
	}
	b.reset()

	gw, _ := startGateway(t, oneRouteConfig("", b.Addr))
	resp, body := exchange(t, gw, "GET /hop HTTP/1.1\r\n"+
		"Host: h\r\n"+
		"Connection: keep-alive, X-Hop\r\n"+
		"X-Hop: listed-in-connection\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"Te: trailers\r\n"+
		"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"+
		"Upgrade: websocket\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"X-Ordinary: kept\r\n"+
		"\r\n")

	got := b.take(t)
	for _, k := range []string{"Connection", "X-Hop", "Keep-Alive", "Te", "Proxy-Authorization", "Upgrade", "Proxy-Connection"} {
		if v, ok := got.Header[k]; ok {
			t.Errorf("backend received hop-by-hop %s: %q", k, v)
		}
	}
	if v := got.Header["X-Ordinary"]; len(v) != 1 || v[0] != "kept" {
		t.Errorf("backend received X-Ordinary %q, want [kept]", v)
	}

	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("client got %d %q, want 200 \"ok\"", resp.StatusCode, body)
	}
	for _, k := range []string{"X-Secret", "Keep-Alive", "Proxy-Authenticate"} {
		if v, ok := resp.Header[k]; ok {
			t.Errorf("client received hop-by-hop %s: %q", k, v)
		}
	}
	for _, v := range resp.Header.Values("Connection") {
		if strings.Contains(strings.ToLower(v), "x-secret") {
			t.Errorf("client received the backend's Connection: %q", v)
		}
	}
	if v := resp.Header.Get("X-Ordinary"); v != "visible" {
		t.Errorf("client received X-Ordinary %q, want visible", v)
	}
}

// A Connection header may arrive as several lines, which form one list (RFC 9110 §5.3); every name in
// every line is hop-by-hop. fasthttp also reports a lone "close" line as the whole header.
func TestEdge_HopByHopNamesFromEveryConnectionLineStripped(t *testing.T) {
	// The backend answers raw bytes, so its Connection header really is two lines.
	b := startRecordingBackend(t, "b", func(ctx *fasthttp.RequestCtx) {
		head := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Ordinary: visible\r\nX-Secret: s3cr3t\r\n"
		switch string(ctx.Path()) {
		case "/resp-two-lines":
			head += "Connection: keep-alive\r\nConnection: X-Secret\r\n"
		case "/resp-close-line":
			head += "Connection: X-Secret\r\nConnection: close\r\n"
		default:
			head += "Connection: X-Secret\r\n"
		}
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) { _, _ = io.WriteString(c, head+"\r\nok") })
	})
	gw, _ := startGateway(t, oneRouteConfig("", b.Addr))

	cases := []struct {
		desc       string
		path       string
		connection []string // the client's Connection lines
	}{
		{desc: "request: name in the second of two Connection lines", path: "/req-two-lines", connection: []string{"keep-alive", "X-Hop"}},
		{desc: "request: name in a Connection line followed by a close line", path: "/req-close-line", connection: []string{"X-Hop", "close"}},
		{desc: "response: name in the second of two Connection lines", path: "/resp-two-lines", connection: []string{"keep-alive, X-Hop"}},
		{desc: "response: name in a Connection line followed by a close line", path: "/resp-close-line", connection: []string{"keep-alive, X-Hop"}},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			b.reset()
			headers := []string{"Host: h", "X-Hop: listed-in-connection", "X-Ordinary: kept"}
			for _, c := range tc.connection {
				headers = append(headers, "Connection: "+c)
			}
			raw := "GET " + tc.path + " HTTP/1.1\r\n" + strings.Join(headers, "\r\n") + "\r\n\r\n"
			resp, body := exchange(t, gw, raw)
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("client got %d %q", resp.StatusCode, body)
			}
			got := b.take(t)
			if v, ok := got.Header["X-Hop"]; ok {
				t.Errorf("backend received X-Hop %q, named in the client's Connection", v)
			}
			if v := got.Header["X-Ordinary"]; len(v) != 1 || v[0] != "kept" {
				t.Errorf("backend received X-Ordinary %q, want [kept]", v)
			}
			if v, ok := resp.Header["X-Secret"]; ok {
				t.Errorf("client received X-Secret %q, named in the backend's Connection", v)
			}
			if v := resp.Header.Get("X-Ordinary"); v != "visible" {
				t.Errorf("client received X-Ordinary %q, want visible", v)
			}
		})
	}
}

// A chunked request may end with trailer fields. fasthttp folds them into the header list after the
// body, outside the raw header block the hop-by-hop strip reads, so each would otherwise reach the
// backend as an ordinary header: a forged Forwarded or X_real_ip, an Upgrade. Like nginx, the gateway
// drops request trailers; header lines of the same name keep their own values only.
func TestEdge_RequestTrailerFieldsNeverReachTheBackend(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, oneRouteConfig("", b.Addr))
	trailers := "Forwarded: for=6.6.6.6\r\nX_real_ip: 6.6.6.6\r\nUpgrade: h2c\r\nX-Ordinary: from-trailer\r\n" +
		"X-Trailer-Only: t\r\nUser-Agent: trailer-agent\r\n\r\n"
	// fasthttp turns an empty chunked body into Content-Length: 0, so that case is checked apart.
	for _, body := range []string{"abc", ""} {
		t.Run(fmt.Sprintf("%d-byte body", len(body)), func(t *testing.T) {
			b.reset()
			chunks := "0\r\n"
			if body != "" {
				chunks = fmt.Sprintf("%x\r\n%s\r\n0\r\n", len(body), body)
			}
			resp, got := exchange(t, gw, "PUT /t HTTP/1.1\r\nHost: h\r\nUser-Agent: header-agent\r\nX-Ordinary: from-header\r\n"+
				"Trailer: X-Ordinary, X-Trailer-Only\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"+chunks+trailers)
			if resp.StatusCode != 200 || got != "b" {
				t.Fatalf("client got %d %q, want 200 \"b\"", resp.StatusCode, got)
			}
			req := b.take(t)
			if req.Body != body {
				t.Errorf("backend received body %q, want %q", req.Body, body)
			}
			for _, k := range []string{"Forwarded", "X_real_ip", "Upgrade", "X-Trailer-Only", "Trailer"} {
				if v, ok := req.Header[textproto.CanonicalMIMEHeaderKey(k)]; ok {
					t.Errorf("backend received trailer field %s as a header: %q", k, v)
				}
			}
			if v := req.Header["X-Ordinary"]; len(v) != 1 || v[0] != "from-header" {
				t.Errorf("backend received X-Ordinary %q, want only the header's [from-header]", v)
			}
			if v := req.Header["User-Agent"]; len(v) != 1 || v[0] != "header-agent" {
				t.Errorf("backend received User-Agent %q, want only the header's [header-agent]", v)
			}
		})
	}
}

// A request framed both by Content-Length and by chunked encoding is read one way by weir and may have
// been read the other way by whatever stood in front of it: the ambiguity request smuggling is made of.
// RFC 9112 §6.3 lets a server reject it; like nginx, the gateway answers 400 and never forwards it.
func TestEdge_ContentLengthWithChunkedRejected(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, oneRouteConfig("", b.Addr))
	for _, order := range [][2]string{
		{"Content-Length: 4", "Transfer-Encoding: chunked"},
		{"Transfer-Encoding: chunked", "Content-Length: 4"},
	} {
		t.Run(order[0]+" then "+order[1], func(t *testing.T) {
			b.reset()
			raw := "PUT /cl-te HTTP/1.1\r\nHost: h\r\n" + order[0] + "\r\n" + order[1] + "\r\n\r\n0\r\n\r\n" +
				"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
			got, closed := exchangeUntilClose(t, gw, raw, 3*time.Second)
			if !closed {
				t.Errorf("connection still open after an ambiguously framed request")
			}
			if statusOf(t, got) != 400 {
				t.Fatalf("client got %q, want 400", got)
			}
			if n := strings.Count(got, "HTTP/1.1 "); n != 1 {
				t.Errorf("client got %d responses, want 1 (the pipelined request must not be served): %q", n, got)
			}
			b.expectNone(t)
		})
	}
}

// ---- 2. X-Forwarded-* ----

// fillerLines is n header lines X-Filler-0: 0 .. X-Filler-(n-1): n-1, to push lines past the ones the
// hop-by-hop strip plans one by one.
func fillerLines(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "X-Filler-%d: %d\r\n", i, i)
	}
	return b.String()
}

// When a message has more than the strip plans line by line (upstream/hop.go: 128 lines, 32 names in
// Connection, or an obs-folded line), headers go by name; every name any Connection line lists must
// still go, wherever it stands.
func TestEdge_ConnectionNamesStrippedWhenTheStripFallsBackToNames(t *testing.T) {
	var names []string
	for i := 0; i < 40; i++ {
		names = append(names, fmt.Sprintf("X-C%d", i))
	}
	addr := startRawBodyBackend(t)
	gw, _ := startGateway(t, oneRouteConfig("", addr))
	for _, tc := range []struct{ desc, headers string }{
		{"the 40th of 40 names in Connection", "Connection: " + strings.Join(names, ", ") + "\r\nX-C39: secret\r\n"},
		{"a named header after 140 other lines", "Connection: X-C39\r\n" + fillerLines(140) + "X-C39: secret\r\n"},
		{"a name in a folded Connection line", "Connection: keep-alive,\r\n X-C39\r\nX-C39: secret\r\n"},
	} {
		t.Run("request: "+tc.desc, func(t *testing.T) {
			raw := rawExchange(t, gw, "GET /x HTTP/1.1\r\nHost: h\r\n"+tc.headers+"X-Ordinary: kept\r\nConnection: close\r\n\r\n")
			if !strings.Contains(raw, "200 OK") || !strings.Contains(raw, "Seen-X-Ordinary: kept") {
				t.Fatalf("precondition: the request did not reach the backend intact:\n%s", raw)
			}
			if strings.Contains(raw, "secret") {
				t.Errorf("X-C39, named in Connection, reached the backend:\n%s", raw)
			}
		})
	}

	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: "+strings.Join(names, ", ")+
				"\r\nX-C39: secret\r\nX-Ordinary: visible\r\n\r\nok")
		})
	})
	gw2, _ := startGateway(t, oneRouteConfig("", backend))
	t.Run("response: the 40th of 40 names in Connection", func(t *testing.T) {
		raw := rawExchange(t, gw2, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
		if !strings.Contains(raw, "200 OK") || !strings.Contains(raw, "X-Ordinary: visible") {
			t.Fatalf("precondition: the response did not arrive intact:\n%s", raw)
		}
		if strings.Contains(raw, "secret") {
			t.Errorf("X-C39, named in the upstream's Connection, reached the client:\n%s", raw)
		}
	})
}

// A request with more header lines than the strip plans line by line (upstream/hop.go maxLines) falls
// back to deleting by name; weir then adds its own forwarding headers without searching for the
// client's, so every client copy must be gone wherever it stood.
func TestEdge_ForwardingHeadersReplacedPastTheLinesTheStripPlans(t *testing.T) {
	addr := startRawBodyBackend(t)
	gw, _ := startGateway(t, oneRouteConfig("", addr))
	raw := rawExchange(t, gw, "GET /x HTTP/1.1\r\nHost: h\r\n"+fillerLines(140)+
		"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\n"+
		"Upgrade: websocket\r\nConnection: close\r\n\r\n")
	for _, bad := range []string{"6.6.6.6", "evil", "https", "websocket"} {
		if strings.Contains(raw, bad) {
			t.Errorf("%q reached the backend", bad)
		}
	}
	for _, line := range []string{"X-Forwarded-For: 127.0.0.1\r\n", "X-Forwarded-Host: h\r\n", "X-Forwarded-Proto: http\r\n", "X-Filler-139: 139\r\n"} {
		if n := strings.Count(raw, line); n != 1 {
			t.Errorf("backend got %q %d times, want once", line, n)
		}
	}
	if t.Failed() {
		t.Logf("backend saw:\n%s", raw)
	}
}

func TestEdge_ForwardedHeadersTrustOnlyConfiguredProxies(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	untrusted, _ := startGateway(t, oneRouteConfig("", b.Addr))
	trusted, _ := startGateway(t, "server:\n  trusted_proxies: [\"127.0.0.1/32\"]\n"+oneRouteConfig("", b.Addr))

	cases := []struct {
		desc    string
		gateway string
		headers []string
		want    map[string]string // header -> the single value the backend must see
		absent  []string
	}{
		{
			desc:    "untrusted peer without forwarding headers gets them set",
			gateway: untrusted,
			want:    map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "client.example"},
		},
		{
			desc:    "untrusted peer's X-Forwarded-For is replaced by the peer address",
			gateway: untrusted,
			headers: []string{"X-Forwarded-For: 203.0.113.9"},
			want:    map[string]string{"X-Forwarded-For": "127.0.0.1"},
		},
		{
			desc:    "untrusted peer's several X-Forwarded-For lines are all replaced",
			gateway: untrusted,
			headers: []string{"X-Forwarded-For: 203.0.113.9", "X-Forwarded-For: 198.51.100.7, 192.0.2.1"},
			want:    map[string]string{"X-Forwarded-For": "127.0.0.1"},
		},
		{
			desc:    "untrusted peer's X-Forwarded-Proto and -Host are overwritten",
			gateway: untrusted,
			headers: []string{"X-Forwarded-Proto: https", "X-Forwarded-Host: forged.example"},
			want:    map[string]string{"X-Forwarded-Proto": "http", "X-Forwarded-Host": "client.example"},
		},
		{
			desc:    "untrusted peer's Forwarded is removed",
			gateway: untrusted,
			headers: []string{"Forwarded: for=203.0.113.9;proto=https"},
			want:    map[string]string{"X-Forwarded-For": "127.0.0.1"},
			absent:  []string{"Forwarded"},
		},
		{
			desc:    "untrusted peer's X-Real-IP is removed",
			gateway: untrusted,
			headers: []string{"X-Real-IP: 203.0.113.9"},
			want:    map[string]string{"X-Forwarded-For": "127.0.0.1"},
			absent:  []string{"X-Real-Ip"},
		},
		{
			desc:    "trusted peer's X-Forwarded-For gets the peer appended",
			gateway: trusted,
			headers: []string{"X-Forwarded-For: 203.0.113.9"},
			want:    map[string]string{"X-Forwarded-For": "203.0.113.9, 127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "client.example"},
		},
		{
			desc:    "trusted peer's several X-Forwarded-For lines are joined in order, then the peer appended",
			gateway: trusted,
			headers: []string{"X-Forwarded-For: 198.51.100.7", "X-Forwarded-For: 203.0.113.9"},
			want:    map[string]string{"X-Forwarded-For": "198.51.100.7, 203.0.113.9, 127.0.0.1"},
		},
		{
			desc:    "trusted peer's X-Forwarded-Proto and -Host are kept",
			gateway: trusted,
			headers: []string{"X-Forwarded-Proto: https", "X-Forwarded-Host: public.example"},
			want:    map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.example"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			b.reset()
			headers := append([]string{"Host: client.example"}, tc.headers...)
			resp, body := exchange(t, tc.gateway, rawRequest("GET /xff HTTP/1.1", headers...))
			if resp.StatusCode != 200 {
				t.Fatalf("client got %d %q, want 200", resp.StatusCode, body)
			}
			got := b.take(t)
			for k, want := range tc.want {
				if v := got.Header[k]; len(v) != 1 || v[0] != want {
					t.Errorf("backend received %s %q, want exactly [%q]", k, v, want)
				}
			}
			for _, k := range tc.absent {
				if v, ok := got.Header[k]; ok {
					t.Errorf("backend received %s %q, want none", k, v)
				}
			}
		})
	}
}

// ---- 3. Host ----

func TestEdge_ClientHostReachesBackendUnchanged(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, oneRouteConfig("", b.Addr))
	for _, tc := range []struct{ desc, host string }{
		{desc: "plain name", host: "api.example.com"},
		{desc: "name with port", host: "api.example.com:8443"},
		{desc: "mixed case is not rewritten", host: "Api.Example.COM"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			b.reset()
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			req.SetRequestURI("http://" + gw + "/host")
			req.Header.SetHost(tc.host)
			req.UseHostHeader = true
			if resp := send(t, gw, req); resp.StatusCode() != 200 {
				t.Fatalf("client got %d %q", resp.StatusCode(), resp.Body())
			}
			if got := b.take(t).Header["Host"]; len(got) != 1 || got[0] != tc.host {
				t.Errorf("backend received Host %q, want [%q] (gateway listens on %s, backend on %s)", got, tc.host, gw, b.Addr)
			}
		})
	}
}

// ---- 4. no headers invented by fasthttp ----

func TestEdge_NoDefaultHeadersAddedOnTheWayUp(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, oneRouteConfig("", b.Addr))
	cases := []struct {
		desc   string
		raw    string
		absent []string
		body   string
	}{
		{
			desc:   "request without User-Agent arrives without one",
			raw:    rawRequest("GET /ua HTTP/1.1", "Host: h"),
			absent: []string{"User-Agent"},
		},
		{
			desc:   "POST body without Content-Type arrives without one",
			raw:    "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\nConnection: close\r\n\r\npayload",
			absent: []string{"Content-Type"},
			body:   "payload",
		},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			b.reset()
			resp, body := exchange(t, gw, tc.raw)
			if resp.StatusCode != 200 {
				t.Fatalf("client got %d %q", resp.StatusCode, body)
			}
			got := b.take(t)
			for _, k := range tc.absent {
				if v, ok := got.Header[k]; ok {
					t.Errorf("backend received %s %q, which the client did not send", k, v)
				}
			}
			if got.Body != tc.body {
				t.Errorf("backend received body %q, want %q", got.Body, tc.body)
			}
		})
	}
}

// untypedBackend answers a non-empty body with neither Content-Type nor Server, and checks that it
// really sends neither.
func untypedBackend(t *testing.T) *recordingBackend {
	t.Helper()
	b := startRecordingBackend(t, "b", func(ctx *fasthttp.RequestCtx) { ctx.WriteString("untyped body") })
	direct, _ := exchange(t, b.Addr, rawRequest("GET /direct HTTP/1.1", "Host: h"))
	for _, k := range []string{"Content-Type", "Server"} {
		if _, ok := direct.Header[k]; ok {
			t.Fatalf("precondition: backend sends %s itself: %v", k, direct.Header)
		}
	}
	return b
}

func TestEdge_ResponseWithoutServerHeaderReachesClientWithoutOne(t *testing.T) {
	gw, _ := startGateway(t, oneRouteConfig("", untypedBackend(t).Addr))
	resp, body := exchange(t, gw, rawRequest("GET /plain HTTP/1.1", "Host: h"))
	if resp.StatusCode != 200 || body != "untyped body" {
		t.Fatalf("client got %d %q, want 200 \"untyped body\"", resp.StatusCode, body)
	}
	if v, ok := resp.Header["Server"]; ok {
		t.Errorf("client received Server %q, which the backend did not send", v)
	}
}

func TestEdge_ResponseWithoutContentTypeReachesClientWithoutOne(t *testing.T) {
	gw, _ := startGateway(t, oneRouteConfig("", untypedBackend(t).Addr))
	resp, body := exchange(t, gw, rawRequest("GET /plain HTTP/1.1", "Host: h"))
	if resp.StatusCode != 200 || body != "untyped body" {
		t.Fatalf("client got %d %q, want 200 \"untyped body\"", resp.StatusCode, body)
	}
	if v, ok := resp.Header["Content-Type"]; ok {
		t.Errorf("client received Content-Type %q, which the backend did not send", v)
	}
}

// ---- 5. HTTP/1.0 clients ----

func TestEdge_HTTP10ClientReachesBackendAsHTTP11OverOneUpstreamConnection(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, oneRouteConfig("", b.Addr))

	for i := 0; i < 2; i++ {
		// Separate client connections, each closed by the gateway after its answer (HTTP/1.0 without
		// keep-alive, RFC 9112 §9.3).
		raw, closed := exchangeUntilClose(t, gw, "GET /x HTTP/1.0\r\nHost: h\r\n\r\n", 2*time.Second)
		resp, body := parseResponse(t, raw)
		if resp.StatusCode != 200 || body != "b" {
			t.Fatalf("request %d: client got %d %q", i+1, resp.StatusCode, body)
		}
		if !closed {
			t.Errorf("request %d: the gateway kept an HTTP/1.0 connection without keep-alive open", i+1)
		}
	}

	reqs := b.requests()
	if len(reqs) != 2 {
		t.Fatalf("backend received %d requests, want 2", len(reqs))
	}
	conns, remotes := map[uint64]bool{}, map[string]bool{}
	for i, r := range reqs {
		if r.Proto != "HTTP/1.1" {
			t.Errorf("request %d reached the backend as %s, want HTTP/1.1", i+1, r.Proto)
		}
		if v, ok := r.Header["Connection"]; ok {
			t.Errorf("request %d reached the backend with Connection %q", i+1, v)
		}
		conns[r.ConnID] = true
		remotes[r.Remote] = true
	}
	if len(conns) != 1 || len(remotes) != 1 {
		t.Errorf("two HTTP/1.0 requests used %d backend connections (remotes %v), want 1 reused", len(conns), remotes)
	}
}

func TestEdge_HTTP10KeepAliveClientKeepsItsConnection(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, oneRouteConfig("", b.Addr))

	conn, err := net.Dial("tcp", gw)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i := 1; i <= 2; i++ {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(conn, "GET /ka/%d HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", i); err != nil {
			t.Fatalf("request %d: write on the kept-alive connection: %v", i, err)
		}
		resp, body := readResponse(t, br, fmt.Sprintf("response %d", i))
		if resp.StatusCode != 200 || body != "b" {
			t.Fatalf("request %d: got %d %q", i, resp.StatusCode, body)
		}
		if v := resp.Header.Get("Connection"); !strings.EqualFold(v, "keep-alive") {
			t.Fatalf("request %d: Connection = %q, want keep-alive", i, v)
		}
	}
	reqs := b.requests()
	if len(reqs) != 2 || reqs[0].Target != "/ka/1" || reqs[1].Target != "/ka/2" {
		t.Fatalf("backend received %+v, want /ka/1 then /ka/2", reqs)
	}
	for i, r := range reqs {
		if r.Proto != "HTTP/1.1" {
			t.Errorf("request %d reached the backend as %s, want HTTP/1.1", i+1, r.Proto)
		}
	}
}

// HTTP/1.0 does not require Host. Such a request matches a route without hosts and must be served;
// upstream it is HTTP/1.1, which needs a Host, so the gateway has to supply one.
func TestEdge_HTTP10RequestWithoutHostServedByAnyHostRoute(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, oneRouteConfig("", b.Addr))
	resp, body := exchange(t, gw, "GET /x HTTP/1.0\r\n\r\n")
	if resp.StatusCode != 200 || body != "b" {
		t.Fatalf("client got %d %q, want 200 from the backend", resp.StatusCode, body)
	}
	got := b.take(t)
	if got.Proto != "HTTP/1.1" || got.Target != "/x" {
		t.Errorf("backend received %s %s, want HTTP/1.1 /x", got.Proto, got.Target)
	}
	if h := got.Header["Host"]; len(h) != 1 || h[0] == "" {
		t.Errorf("backend received Host %q, want one non-empty Host as HTTP/1.1 requires", h)
	}
}

// ---- 6. CONNECT and TRACE ----

func TestEdge_ConnectAndTraceAnswered501WithoutReachingBackend(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, oneRouteConfig("", b.Addr))
	for _, tc := range []struct{ desc, raw string }{
		{desc: "CONNECT in authority form", raw: rawRequest("CONNECT backend.example:443 HTTP/1.1", "Host: backend.example:443")},
		{desc: "TRACE", raw: rawRequest("TRACE /x HTTP/1.1", "Host: h")},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			raw := rawExchange(t, gw, tc.raw)
			if code := statusOf(t, raw); code != 501 {
				t.Fatalf("status line says %d, want 501: %q", code, raw)
			}
			resp, body := parseResponse(t, raw)
			checkJSONError(t, resp, body, 501)
		})
	}
	b.expectNone(t)
}

// ---- 7. request-target forms ----

func TestEdge_AbsoluteFormTargetRoutedAndForwardedByItsAuthority(t *testing.T) {
	good := startRecordingBackend(t, "good", nil)
	other := startRecordingBackend(t, "other", nil)
	gw, _ := startGateway(t, fmt.Sprintf(`upstreams:
  good: {targets: [{url: "http://%s"}]}
  other: {targets: [{url: "http://%s"}]}
routes:
  - name: good
    match: {hosts: [good.example], path: "/{rest:*}"}
    upstream: good
  - name: other
    match: {hosts: [other.example], path: "/{rest:*}"}
    upstream: other
`, good.Addr, other.Addr))

	resp, body := exchange(t, gw, rawRequest("GET http://other.example/x HTTP/1.1", "Host: good.example"))
	if resp.StatusCode != 200 || body != "other" {
		t.Fatalf("client got %d %q, want 200 from backend \"other\"", resp.StatusCode, body)
	}
	got := other.take(t)
	if h := got.Header["Host"]; len(h) != 1 || h[0] != "other.example" {
		t.Errorf("backend received Host %q, want [other.example]", h)
	}
	if got.Target != "/x" {
		t.Errorf("backend received target %q, want /x", got.Target)
	}
	good.expectNone(t)
}

func TestEdge_AuthorityAndAsteriskFormTargetsRejected(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, oneRouteConfig("", b.Addr))
	for _, tc := range []struct{ desc, raw string }{
		{desc: "authority form with GET", raw: rawRequest("GET other.example:80 HTTP/1.1", "Host: other.example:80")},
		{desc: "asterisk form", raw: rawRequest("OPTIONS * HTTP/1.1", "Host: h")},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			resp, body := exchange(t, gw, tc.raw)
			checkJSONError(t, resp, body, 400)
		})
	}
	b.expectNone(t)
}

func TestEdge_HeaderNameWithASpaceRejected(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, oneRouteConfig("", b.Addr))
	for _, tc := range []struct{ desc, header string }{
		{desc: "a space inside the name", header: "X Test: 1"},
		{desc: "a space inside a later header's name", header: "Accept: */*\r\nUser Agent: x"},
		{desc: "a folded continuation line", header: "X-A: 1\r\n X-B: 2"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			resp, body := exchange(t, gw, rawRequest("GET /x HTTP/1.1", "Host: h", tc.header))
			checkJSONError(t, resp, body, 400)
		})
	}
	b.expectNone(t)
	// A space in a value is fine.
	resp, _ := exchange(t, gw, rawRequest("GET /x HTTP/1.1", "Host: h", "X-Test: a b: c"))
	if resp.StatusCode != 200 || b.take(t).Header.Get("X-Test") != "a b: c" {
		t.Fatalf("a header value with spaces: %d", resp.StatusCode)
	}
}

// ---- 8. path normalization ----

func TestEdge_PathRoutedAndForwardedAsTheSameNormalizedPath(t *testing.T) {
	admin := startRecordingBackend(t, "admin", nil)
	public := startRecordingBackend(t, "public", nil)
	gw, _ := startGateway(t, fmt.Sprintf(`upstreams:
  admin: {targets: [{url: "http://%s"}]}
  public: {targets: [{url: "http://%s"}]}
routes:
  - name: admin
    match: {path: "/admin/{rest:*}"}
    upstream: admin
  - name: public
    match: {path: "/public/{rest:*}"}
    upstream: public
`, admin.Addr, public.Addr))
	backends := map[string]*recordingBackend{"admin": admin, "public": public}

	cases := []struct {
		desc       string
		path       string // sent exactly as written
		wantStatus int
		wantRoute  string // backend that must answer; "" when none may be reached
		wantPath   string // path that backend must receive
	}{
		{desc: "dot-dot segment leaves the public prefix", path: "/public/../admin/secret", wantStatus: 200, wantRoute: "admin", wantPath: "/admin/secret"},
		{desc: "encoded dot-dot segment leaves the public prefix", path: "/public/%2e%2e/admin/secret", wantStatus: 200, wantRoute: "admin", wantPath: "/admin/secret"},
		{desc: "dot segment is removed", path: "/public/./x", wantStatus: 200, wantRoute: "public", wantPath: "/public/x"},
		{desc: "empty segments are collapsed", path: "//public//x", wantStatus: 200, wantRoute: "public", wantPath: "/public/x"},
		{desc: "encoded slash is refused", path: "/public%2F..%2Fadmin/secret", wantStatus: 400},
		{desc: "encoded backslash is refused", path: "/public/..%5Cadmin", wantStatus: 400},
		{desc: "encoded NUL is refused", path: "/public/a%00b", wantStatus: 400},
		{desc: "raw backslash is refused", path: `/public\..\admin`, wantStatus: 400},
		{desc: "encoded CR LF is refused", path: "/public/a%0d%0aX-Injected:%20yes", wantStatus: 400},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			admin.reset()
			public.reset()
			resp, body := exchange(t, gw, rawRequest("GET "+tc.path+" HTTP/1.1", "Host: h"))
			if tc.wantStatus != 200 {
				checkJSONError(t, resp, body, tc.wantStatus)
				admin.expectNone(t)
				public.expectNone(t)
				return
			}
			if resp.StatusCode != 200 || body != tc.wantRoute {
				t.Fatalf("client got %d from %q, want 200 from %q", resp.StatusCode, body, tc.wantRoute)
			}
			got := backends[tc.wantRoute].take(t)
			if got.Target != tc.wantPath {
				t.Errorf("backend %q received path %q, want %q", tc.wantRoute, got.Target, tc.wantPath)
			}
			if !strings.HasPrefix(got.Target, "/"+tc.wantRoute+"/") {
				t.Errorf("routed to %q but forwarded %q: routing and forwarding disagree", tc.wantRoute, got.Target)
			}
			for name, other := range backends {
				if name != tc.wantRoute {
					other.expectNone(t)
				}
			}
		})
	}
}

// ---- 9. size limits ----

func TestEdge_OversizedRequestsRejectedBeforeTheBackend(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, "server:\n  max_body_bytes: 1KiB\n  max_header_bytes: 2KiB\n"+oneRouteConfig("", b.Addr))
	post := func(n int) string {
		return fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			n, strings.Repeat("b", n))
	}
	cases := []struct {
		desc       string
		raw        string
		wantStatus int
	}{
		{desc: "body under the limit passes", raw: post(512), wantStatus: 200},
		{desc: "2KiB body over a 1KiB limit gets 413", raw: post(2048), wantStatus: 413},
		{desc: "2KiB chunked body over a 1KiB limit gets 413", raw: "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n800\r\n" + strings.Repeat("c", 2048) + "\r\n0\r\n\r\n", wantStatus: 413},
		{desc: "headers under the limit pass", raw: rawRequest("GET /h HTTP/1.1", "Host: h", "X-Big: "+strings.Repeat("a", 1024)), wantStatus: 200},
		{desc: "4KiB header over a 2KiB limit gets 431", raw: rawRequest("GET /h HTTP/1.1", "Host: h", "X-Big: "+strings.Repeat("a", 4096)), wantStatus: 431},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			b.reset()
			resp, body := exchange(t, gw, tc.raw)
			if tc.wantStatus == 200 {
				if resp.StatusCode != 200 {
					t.Fatalf("client got %d %q, want 200", resp.StatusCode, body)
				}
				b.take(t)
				return
			}
			checkJSONError(t, resp, body, tc.wantStatus)
			b.expectNone(t)
		})
	}
}

// ---- 10. read timeout ----

func TestEdge_StalledClientCutOffByReadTimeoutWhileOthersAreServed(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, "server:\n  read_timeout: 1s\n"+oneRouteConfig("", b.Addr))
	cases := []struct{ desc, partial string }{
		{desc: "stalls inside the headers", partial: "GET /stalled HTTP/1.1\r\nHost: h\r\nX-Partial: "},
		{desc: "stalls inside the body", partial: "POST /stalled HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nonly-part"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			b.reset()
			conn, err := net.Dial("tcp", gw)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			if _, err := io.WriteString(conn, tc.partial); err != nil {
				t.Fatal(err)
			}

			// While the stalled connection waits, other clients on their own connections are served.
			for i := 0; i < 4; i++ {
				if resp := get(t, gw, "/meanwhile"); resp.StatusCode() != 200 {
					t.Fatalf("concurrent client got %d %q", resp.StatusCode(), resp.Body())
				}
				time.Sleep(40 * time.Millisecond)
			}

			_ = conn.SetReadDeadline(start.Add(4 * time.Second))
			got, err := io.ReadAll(conn)
			elapsed := time.Since(start)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("stalled connection still open after %v", elapsed)
			}
			// The upper bound is the 4 s read deadline above (a loaded machine may be slow to close);
			// closing before read_timeout would mean something other than the timeout cut it.
			if elapsed < 950*time.Millisecond {
				t.Errorf("stalled connection closed after %v, before the 1s read_timeout", elapsed)
			}
			if len(got) > 0 {
				resp, body := parseResponse(t, string(got))
				checkJSONError(t, resp, body, 408)
			}
			reqs := b.requests()
			for _, r := range reqs {
				if r.Target != "/meanwhile" {
					t.Errorf("backend received %q from the stalled client", r.Target)
				}
			}
			if len(reqs) != 4 {
				t.Errorf("backend received %d requests, want the 4 concurrent ones", len(reqs))
			}
		})
	}
}

// ---- 11. request IDs ----

func TestEdge_RequestIDKeptWhenSaneElseGenerated(t *testing.T) {
	// The backend's own X-Request-Id must not reach the client next to (or instead of) the gateway's.
	b := startRecordingBackend(t, "b", func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("X-Request-Id", "from-backend")
		ctx.WriteString("b")
	})
	gw, _ := startGateway(t, oneRouteConfig("", b.Addr))
	insane := `has spaces and "quotes" ` + strings.Repeat("x", 200)
	cases := []struct {
		desc     string
		sent     string // "" for none
		wantKept bool
	}{
		{desc: "sane id is kept", sent: "abc-123", wantKept: true},
		{desc: "id with spaces, quotes and 200+ characters is replaced", sent: insane},
		{desc: "id too long is replaced", sent: strings.Repeat("a", 129)},
		{desc: "missing id is generated"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			b.reset()
			headers := []string{"Host: h"}
			if tc.sent != "" {
				headers = append(headers, "X-Request-ID: "+tc.sent)
			}
			resp, body := exchange(t, gw, rawRequest("GET /id HTTP/1.1", headers...))
			if resp.StatusCode != 200 {
				t.Fatalf("client got %d %q", resp.StatusCode, body)
			}
			clientIDs := resp.Header.Values("X-Request-Id")
			upstreamIDs := b.take(t).Header["X-Request-Id"]
			if len(clientIDs) != 1 || len(upstreamIDs) != 1 {
				t.Fatalf("want one id each way; client got %q, backend got %q", clientIDs, upstreamIDs)
			}
			if clientIDs[0] != upstreamIDs[0] {
				t.Errorf("client got id %q, backend got %q; want the same", clientIDs[0], upstreamIDs[0])
			}
			if tc.wantKept {
				if clientIDs[0] != tc.sent {
					t.Errorf("id = %q, want the client's %q", clientIDs[0], tc.sent)
				}
			} else if !generatedID.MatchString(clientIDs[0]) {
				t.Errorf("id = %q, want a generated 32-hex-char id", clientIDs[0])
			}
		})
	}

	t.Run("generated ids differ per request", func(t *testing.T) {
		r1, _ := exchange(t, gw, rawRequest("GET /id HTTP/1.1", "Host: h"))
		r2, _ := exchange(t, gw, rawRequest("GET /id HTTP/1.1", "Host: h"))
		if a, c := r1.Header.Get("X-Request-Id"), r2.Header.Get("X-Request-Id"); a == c {
			t.Errorf("two requests got the same generated id %q", a)
		}
	})

	for _, tc := range []struct{ desc, sent string }{
		{desc: "404 body carries the generated id of its header"},
		{desc: "404 body carries the client's sane id", sent: "trace-77"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			nf := startRecordingBackend(t, "nf", nil)
			gw404, _ := startGateway(t, fmt.Sprintf(`upstreams:
  b: {targets: [{url: "http://%s"}]}
routes:
  - name: only
    match: {path: "/only"}
    upstream: b
`, nf.Addr))
			headers := []string{"Host: h"}
			if tc.sent != "" {
				headers = append(headers, "X-Request-ID: "+tc.sent)
			}
			resp, body := exchange(t, gw404, rawRequest("GET /elsewhere HTTP/1.1", headers...))
			id := checkJSONError(t, resp, body, 404)
			if tc.sent != "" && id != tc.sent {
				t.Errorf("404 id = %q, want the client's %q", id, tc.sent)
			}
			if tc.sent == "" && !generatedID.MatchString(id) {
				t.Errorf("404 id = %q, want a generated 32-hex-char id", id)
			}
			nf.expectNone(t)
		})
	}
}

// ---- 12. 404, 405 and host matching ----

func TestEdge_UnknownPathIs404AndWrongMethodIs405WithAllow(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, fmt.Sprintf(`upstreams:
  b: {targets: [{url: "http://%s"}]}
routes:
  - name: items
    match: {path: "/items", methods: [GET, PUT]}
    upstream: b
`, b.Addr))
	cases := []struct {
		desc       string
		method     string
		path       string
		wantStatus int
		wantAllow  string
	}{
		{desc: "GET on the route passes", method: "GET", path: "/items", wantStatus: 200},
		{desc: "PUT on the route passes", method: "PUT", path: "/items", wantStatus: 200},
		{desc: "unknown path is 404", method: "GET", path: "/nothing-here", wantStatus: 404},
		{desc: "POST on a GET/PUT path is 405", method: "POST", path: "/items", wantStatus: 405, wantAllow: "GET, PUT"},
		{desc: "DELETE on a GET/PUT path is 405", method: "DELETE", path: "/items", wantStatus: 405, wantAllow: "GET, PUT"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			b.reset()
			resp, body := exchange(t, gw, rawRequest(tc.method+" "+tc.path+" HTTP/1.1", "Host: h"))
			if tc.wantStatus == 200 {
				if resp.StatusCode != 200 || body != "b" {
					t.Fatalf("client got %d %q, want 200 from the backend", resp.StatusCode, body)
				}
				if got := b.take(t); got.Method != tc.method {
					t.Errorf("backend received %s, want %s", got.Method, tc.method)
				}
				return
			}
			checkJSONError(t, resp, body, tc.wantStatus)
			if got := resp.Header.Get("Allow"); got != tc.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tc.wantAllow)
			}
			b.expectNone(t)
		})
	}
}

func TestEdge_RoutesMatchByExactWildcardOrAnyHost(t *testing.T) {
	exact := startRecordingBackend(t, "exact", nil)
	wild := startRecordingBackend(t, "wild", nil)
	anyHost := startRecordingBackend(t, "any", nil)
	gw, _ := startGateway(t, fmt.Sprintf(`upstreams:
  exact: {targets: [{url: "http://%s"}]}
  wild: {targets: [{url: "http://%s"}]}
  any: {targets: [{url: "http://%s"}]}
routes:
  - name: exact
    match: {hosts: [api.example.com], path: "/{rest:*}"}
    upstream: exact
  - name: wild
    match: {hosts: ["*.example.com"], path: "/{rest:*}"}
    upstream: wild
  - name: any
    match: {path: "/{rest:*}"}
    upstream: any
`, exact.Addr, wild.Addr, anyHost.Addr))
	cases := []struct{ desc, host, want string }{
		{desc: "exact host", host: "api.example.com", want: "exact"},
		{desc: "exact host in other case with port", host: "API.Example.com:8080", want: "exact"},
		{desc: "subdomain matches the wildcard", host: "a.example.com", want: "wild"},
		{desc: "wildcard ignores case and port", host: "A.Example.COM:8080", want: "wild"},
		{desc: "deeper subdomain matches the wildcard", host: "x.y.example.com", want: "wild"},
		{desc: "wildcard does not match the bare domain", host: "example.com", want: "any"},
		{desc: "wildcard does not match a name merely ending in it", host: "badexample.com", want: "any"},
		{desc: "exact host with a trailing dot", host: "api.example.com.", want: "exact"},
		{desc: "route without hosts takes any other host", host: "unrelated.test", want: "any"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			resp, body := exchange(t, gw, rawRequest("GET /where HTTP/1.1", "Host: "+tc.host))
			if resp.StatusCode != 200 || body != tc.want {
				t.Errorf("Host %q answered %d by %q, want 200 by %q", tc.host, resp.StatusCode, body, tc.want)
			}
		})
	}
}

// A 405's Allow lists every method the request's host accepts on the path, whichever host table the
// route lives in, and a path that exists for the host only under other methods is a 405, not a 404.
func TestEdge_MethodNotAllowedConsidersEveryRouteForTheHost(t *testing.T) {
	b := startRecordingBackend(t, "b", nil)
	gw, _ := startGateway(t, fmt.Sprintf(`upstreams:
  b: {targets: [{url: "http://%s"}]}
routes:
  - name: exact-items
    match: {hosts: [api.example.com], path: "/items", methods: [GET]}
    upstream: b
  - name: exact-other
    match: {hosts: [api.example.com], path: "/other", methods: [GET]}
    upstream: b
  - name: any-items
    match: {path: "/items", methods: [POST]}
    upstream: b
  - name: any-things
    match: {path: "/things", methods: [DELETE]}
    upstream: b
`, b.Addr))
	cases := []struct {
		desc       string
		request    string
		wantStatus int
		wantAllow  string
	}{
		{desc: "GET /items is served by the host's route", request: "GET /items", wantStatus: 200},
		{desc: "POST /items is served by the any-host route", request: "POST /items", wantStatus: 200},
		{desc: "DELETE /things is served by the any-host route", request: "DELETE /things", wantStatus: 200},
		{desc: "PUT /items is 405 allowing both tables' methods", request: "PUT /items", wantStatus: 405, wantAllow: "GET, POST"},
		{desc: "PUT /things is 405 allowing the any-host route's method", request: "PUT /things", wantStatus: 405, wantAllow: "DELETE"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			b.reset()
			resp, body := exchange(t, gw, rawRequest(tc.request+" HTTP/1.1", "Host: api.example.com"))
			if tc.wantStatus == 200 {
				if resp.StatusCode != 200 || body != "b" {
					t.Fatalf("client got %d %q, want 200 from the backend", resp.StatusCode, body)
				}
				b.take(t)
				return
			}
			checkJSONError(t, resp, body, tc.wantStatus)
			if got := resp.Header.Get("Allow"); got != tc.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tc.wantAllow)
			}
			b.expectNone(t)
		})
	}
}
