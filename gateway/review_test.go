package gateway

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// Regression tests for the findings of the first review of the core gateway.

// startRawBodyBackend is a net/http backend (a different HTTP stack from weir's) that answers with
// exactly the request body and headers it received.
func startRawBodyBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		for k, v := range r.Header {
			w.Header()["Seen-"+k] = v
		}
		w.Write(body)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestReview_ConnectionCannotRemoveHeadersWeirSets(t *testing.T) {
	addr := startRawBodyBackend(t)
	gw, _ := startGateway(t, oneRouteConfig("", addr))
	raw := rawExchange(t, gw, "GET /x HTTP/1.1\r\nHost: api.example.com\r\nX-Request-Id: keep-me\r\n"+
		"Connection: X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Request-Id, Host, Content-Length\r\n"+
		"Connection: close\r\n\r\n")
	for _, want := range []string{
		"Seen-X-Forwarded-For: 127.0.0.1", "Seen-X-Forwarded-Proto: http",
		"Seen-X-Forwarded-Host: api.example.com", "Seen-X-Request-Id: ",
	} {
		if !strings.Contains(raw, want) {
			t.Errorf("the backend did not see %q; a client named it in Connection:\n%s", want, raw)
		}
	}
}

func TestReview_CookieHeaderReachesTheBackendAsSent(t *testing.T) {
	addr := startRawBodyBackend(t)
	gw, _ := startGateway(t, oneRouteConfig("", addr))
	raw := rawExchange(t, gw, "GET /x HTTP/1.1\r\nHost: h\r\nCookie: a=\"x y\"; flag\r\nConnection: close\r\n\r\n")
	if !strings.Contains(raw, "Seen-Cookie: a=\"x y\"; flag\r\n") {
		t.Fatalf("Cookie was rewritten on the way:\n%s", raw)
	}
}

func TestReview_MultipartBodyIsRelayedByteForByte(t *testing.T) {
	addr := startRawBodyBackend(t)
	gw, _ := startGateway(t, oneRouteConfig("", addr))
	body := "--B\r\nContent-Disposition: form-data; name=\"z\"\r\nContent-Type: application/json\r\n\r\n{\"a\":1}\r\n" +
		"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfirst?\r\n--B--\r\n"
	for _, tc := range []struct{ desc, body string }{
		{"well-formed, fields in an order fasthttp would not keep", body},
		{"malformed: weir relays it, the upstream judges", "--B\r\nno headers at all"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			req.SetRequestURI("http://" + gw + "/upload")
			req.Header.SetMethod("POST")
			req.Header.SetContentType("multipart/form-data; boundary=B")
			req.SetBodyString(tc.body)
			resp := send(t, gw, req)
			if resp.StatusCode() != 200 || string(resp.Body()) != tc.body {
				t.Fatalf("status %d; backend received %q, want %q", resp.StatusCode(), resp.Body(), tc.body)
			}
		})
	}
}

func TestReview_AnyMethodRouteTakesNonStandardMethods(t *testing.T) {
	addr := startRawBodyBackend(t)
	gw, _ := startGateway(t, oneRouteConfig("", addr))
	for _, m := range []string{"PATCH", "QUERY", "PURGE", "PROPFIND"} {
		raw := rawExchange(t, gw, m+" /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
		if s := statusOf(t, raw); s != 200 {
			t.Errorf("%s on an any-method route: %d, want 200", m, s)
		}
	}
}

func TestReview_LargeUpstreamHeadersWithinTheLimitAreRelayed(t *testing.T) {
	cookie := strings.Repeat("c", 1000)
	addr := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		for i := 0; i < 5; i++ {
			ctx.Response.Header.Add("X-Big", fmt.Sprint(i, cookie))
		}
	})
	gw, _ := startGateway(t, oneRouteConfig("", addr))
	if resp := get(t, gw, "/x"); resp.StatusCode() != 200 {
		t.Fatalf("5 KB of response headers: %d, want 200 (max_response_header_bytes defaults to 16KiB)", resp.StatusCode())
	}
	small, _ := startGateway(t, oneRouteConfig("    max_response_header_bytes: 2KiB\n", addr))
	if resp := get(t, small, "/x"); resp.StatusCode() != 502 {
		t.Fatalf("5 KB of headers over a 2KiB limit: %d, want 502", resp.StatusCode())
	}
}

func TestReview_PathTricksForOtherDecodersAreRefused(t *testing.T) {
	var hits atomic.Int64
	addr := startBackend(t, func(ctx *fasthttp.RequestCtx) { hits.Add(1) })
	gw, _ := startGateway(t, oneRouteConfig("", addr))
	for _, path := range []string{
		"/public/..;/admin/secret", "/public/.;/x", "/public/..;x=1/admin", "/public/..%3B/admin",
		"/public/%2e%2e;/admin", "/public/%252e%252e/admin", "/a%3bb",
	} {
		raw := rawExchange(t, gw, "GET "+path+" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
		if s := statusOf(t, raw); s != 400 {
			t.Errorf("%s: %d, want 400", path, s)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("the backend saw %d of the refused requests", hits.Load())
	}
	for _, path := range []string{"/items;v=1", "/a/..b/c", "/a/b..;c"} {
		raw := rawExchange(t, gw, "GET "+path+" HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
		if s := statusOf(t, raw); s != 200 {
			t.Errorf("%s is harmless but got %d", path, s)
		}
	}
}

func TestReview_UnderscoreSpellingsOfForwardingHeadersAreDropped(t *testing.T) {
	addr := startRawBodyBackend(t)
	gw, _ := startGateway(t, oneRouteConfig("", addr))
	raw := rawExchange(t, gw, "GET /x HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\n"+
		"X_Forwarded_Proto: https\r\nX_Forwarded_Host: evil\r\nX_Request_Id: forged\r\nConnection: close\r\n\r\n")
	if strings.Contains(raw, "6.6.6.6") || strings.Contains(raw, "evil") || strings.Contains(raw, "https") || strings.Contains(raw, "forged") {
		t.Fatalf("an underscore spelling reached the backend:\n%s", raw)
	}
}

func TestReview_MalformedResponseIsNotRetried(t *testing.T) {
	var requests atomic.Int64
	addr := startRawTCP(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 4096)
		if n, _ := c.Read(buf); bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
			requests.Add(1)
		}
		c.Write([]byte("HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"))
	})
	gw, _ := startGateway(t, oneRouteConfig("", addr))
	for _, m := range []string{"GET", "PUT"} {
		requests.Store(0)
		req := fasthttp.AcquireRequest()
		req.SetRequestURI("http://" + gw + "/x")
		req.Header.SetMethod(m)
		if s := send(t, gw, req).StatusCode(); s != 502 {
			t.Errorf("%s: %d, want 502", m, s)
		}
		fasthttp.ReleaseRequest(req)
		if n := requests.Load(); n != 1 {
			t.Errorf("%s reached the upstream %d times; a malformed answer must not be retried", m, n)
		}
	}
}

func TestReview_RepeatedHeadersKeepTheirOrderWhenOthersAreStripped(t *testing.T) {
	// The backend echoes the request's Via lines in order and answers with repeated Link and
	// WWW-Authenticate lines among hop-by-hop ones.
	addr := startRawTCP(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 8192)
		n, _ := c.Read(buf)
		var via []string
		for _, line := range strings.Split(string(buf[:n]), "\r\n") {
			if v, ok := strings.CutPrefix(line, "Via: "); ok {
				via = append(via, v)
			}
		}
		body := strings.Join(via, "|")
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nLink: <a>\r\nKeep-Alive: timeout=5\r\n"+
			"WWW-Authenticate: Negotiate\r\nLink: <b>\r\nWWW-Authenticate: Basic\r\nX-Last: 1\r\n"+
			"Content-Length: %d\r\n\r\n%s", len(body), body)
	})
	gw, _ := startGateway(t, oneRouteConfig("", addr))
	raw := rawExchange(t, gw, "GET /x HTTP/1.1\r\nHost: h\r\nVia: 1 first\r\nConnection: keep-alive, X-Hop\r\n"+
		"X-Hop: a\r\nVia: 2 second\r\nX-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\nVia: 3 third\r\nConnection: close\r\n\r\n")
	head, body, _ := strings.Cut(raw, "\r\n\r\n")
	if body != "1 first|2 second|3 third" {
		t.Errorf("the backend received Via lines as %q, want them in the order sent", body)
	}
	var links, auth []string
	for _, line := range strings.Split(head, "\r\n") {
		if v, ok := strings.CutPrefix(line, "Link: "); ok {
			links = append(links, v)
		}
		if v, ok := strings.CutPrefix(line, "Www-Authenticate: "); ok {
			auth = append(auth, v)
		}
		if strings.HasPrefix(line, "Keep-Alive") {
			t.Errorf("hop-by-hop %q reached the client", line)
		}
	}
	if strings.Join(links, " ") != "<a> <b>" || strings.Join(auth, " ") != "Negotiate Basic" {
		t.Errorf("client got Link %q and WWW-Authenticate %q, want them in the order the upstream sent", links, auth)
	}
}

// A trusted proxy that passes on an empty X-Forwarded-Proto or -Host (its own unset variable, say) gets
// weir's value in that line's place, not a second line after the empty one: upstreams read the first.
func TestReview_TrustedPeersEmptyForwardedProtoAndHostAreReplaced(t *testing.T) {
	addr := startRawBodyBackend(t)
	gw, _ := startGateway(t, "server:\n  trusted_proxies: [\"127.0.0.1/32\"]\n"+oneRouteConfig("", addr))
	raw := rawExchange(t, gw, "GET /x HTTP/1.1\r\nHost: api.example.com\r\n"+
		"X-Forwarded-Proto:\r\nX-Forwarded-Host: \r\nConnection: close\r\n\r\n")
	for _, tc := range []struct{ name, want string }{
		{"Seen-X-Forwarded-Proto", "http"},
		{"Seen-X-Forwarded-Host", "api.example.com"},
	} {
		var got []string
		for _, line := range strings.Split(raw, "\r\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && k == tc.name {
				got = append(got, strings.TrimSpace(v))
			}
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("the backend saw %s = %q, want exactly [%q]", strings.TrimPrefix(tc.name, "Seen-"), got, tc.want)
		}
	}
	if t.Failed() {
		t.Logf("exchange:\n%s", raw)
	}
}
