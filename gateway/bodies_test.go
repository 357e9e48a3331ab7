package gateway

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestBodies_POSTBodyArrivesIntactAndResponseBodyReturnsIntact(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		sum := sha256.Sum256(ctx.PostBody())
		ctx.Response.Header.Set("X-Body-Sha256", fmt.Sprintf("%x", sum))
		ctx.Write(bytes.Repeat(ctx.PostBody(), 2))
	})
	gw, _ := startGateway(t, oneRouteConfig("", backend))
	body := bytes.Repeat([]byte("0123456789abcdef"), 64*1024/16*3) // 192 KiB
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://" + gw + "/upload")
	req.Header.SetMethod("POST")
	req.SetBody(body)
	resp := send(t, gw, req)
	if want := fmt.Sprintf("%x", sha256.Sum256(body)); string(resp.Header.Peek("X-Body-Sha256")) != want {
		t.Errorf("backend saw a different body: sha256 %s, want %s", resp.Header.Peek("X-Body-Sha256"), want)
	}
	if !bytes.Equal(resp.Body(), append(append([]byte(nil), body...), body...)) {
		t.Errorf("client got %d body bytes, want the %d the backend sent", len(resp.Body()), 2*len(body))
	}
}

func TestBodies_ChunkedRequestIsForwardedWithItsWholeBody(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		fmt.Fprintf(ctx, "%s|%d|%s", ctx.PostBody(), ctx.Request.Header.ContentLength(), ctx.Request.Header.Peek("Transfer-Encoding"))
	})
	gw, _ := startGateway(t, oneRouteConfig("", backend))
	raw := rawExchange(t, gw, "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"+
		"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	if statusOf(t, raw) != 200 || !strings.HasSuffix(raw, "hello world|11|") {
		t.Fatalf("chunked body was not forwarded whole as a Content-Length body: %q", raw)
	}
}

func TestBodies_HEADGetsTheUpstreamHeadersWithoutABody(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.Set("X-Method", string(ctx.Method()))
		ctx.WriteString("thirteen byte")
	})
	gw, _ := startGateway(t, oneRouteConfig("", backend))
	raw := rawExchange(t, gw, "HEAD /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	head, body, _ := strings.Cut(raw, "\r\n\r\n")
	if statusOf(t, raw) != 200 || !strings.Contains(head, "X-Method: HEAD") || body != "" {
		t.Fatalf("HEAD through the gateway: %q", raw)
	}
	if !strings.Contains(head, "Content-Length: 13") {
		t.Errorf("HEAD response should carry the GET's Content-Length 13: %q", head)
	}
}
