package gateway

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
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

// writeCountingListener counts the Write calls on the connections it accepts: each is one system
// call on the socket.
type writeCountingListener struct {
	net.Listener
	writes atomic.Int64
}

func (l *writeCountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &writeCountingConn{Conn: c, writes: &l.writes}, nil
}

type writeCountingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *writeCountingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func TestBodies_ResponseThatFitsTheWriteBufferLeavesInOneWrite(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 6<<10)
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetBody(body) })
	for _, tc := range []struct {
		desc   string
		server string
		writes int64
	}{
		{"default write_buffer_bytes (8KiB): head and 6 KiB body together", "", 1},
		{"write_buffer_bytes 4KiB: the buffer fills, then the rest", "server:\n  write_buffer_bytes: 4KiB\n", 2},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			snap, err := Compile("test.yaml", []byte(tc.server+oneRouteConfig("", backend)))
			if err != nil {
				t.Fatal(err)
			}
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := &writeCountingListener{Listener: inner}
			serveOn(t, snap, ln, io.Discard)

			resp := get(t, inner.Addr().String(), "/big")
			if resp.StatusCode() != 200 || len(resp.Body()) != len(body) {
				t.Fatalf("got %d with %d body bytes, want 200 with %d", resp.StatusCode(), len(resp.Body()), len(body))
			}
			if got := ln.writes.Load(); got != tc.writes {
				t.Errorf("the response took %d writes to the client connection, want %d", got, tc.writes)
			}
		})
	}
}
