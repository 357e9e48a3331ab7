package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/valyala/bytebufferpool"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
	"github.com/weir-gateway/weir/upstream"
)

// isWebSocketUpgrade reports whether a request asks to become a WebSocket (RFC 6455 §4.1): an
// HTTP/1.1 GET with Upgrade: websocket and Connection listing upgrade. It is read before the
// hop-by-hop strip removes both headers.
func isWebSocketUpgrade(h *fasthttp.RequestHeader) bool {
	return h.IsGet() && h.IsHTTP11() && h.ConnectionUpgrade() &&
		bytes.EqualFold(bytes.TrimSpace(h.Peek(fasthttp.HeaderUpgrade)), []byte("websocket"))
}

// requestBody decides how the request body travels: read whole when it is at most
// server.buffer_requests (it can then be retried), else relayed to the upstream as it arrives
// (upstream.Upload). A chunked body is read ahead up to the threshold first. It returns the status
// and reason of a rejection, or 0, and the Upload of a streamed body.
func requestBody(x *filters.Exchange, sc *ServerConfig, body io.Reader) (*upstream.Upload, int, string) {
	req := &x.Ctx.Request
	size := req.Header.ContentLength()
	limit := int(sc.BufferRequests)
	if size > limit {
		up := &upstream.Upload{Body: body, Client: x.Ctx.Conn(), ClientIdle: sc.ReadTimeout}
		req.SetBodyStream(up, size)
		return up, 0, ""
	}
	x.Body = bytebufferpool.Get()
	want := limit + 1 // a chunked body: one byte past the threshold says it is larger
	if size >= 0 {
		want = size
	}
	b := x.Body.B[:0]
	var err error
	for len(b) < want {
		if cap(b) == len(b) {
			b = slices.Grow(b, min(want-len(b), 64<<10))
		}
		var n int
		n, err = body.Read(b[len(b):min(cap(b), want)])
		b = b[:len(b)+n]
		if err != nil {
			break
		}
	}
	x.Body.B = b
	switch {
	case err != nil && err != io.EOF:
		status, reason := bodyReadFailure(err)
		return nil, status, reason
	case size < 0 && len(b) > int(sc.MaxBodyBytes):
		return nil, fasthttp.StatusRequestEntityTooLarge, "request body too large"
	case size >= 0 && len(b) < size:
		return nil, fasthttp.StatusBadRequest, "request body incomplete"
	case size < 0 && len(b) > limit:
		up := &upstream.Upload{Prefix: b, Body: body, Client: x.Ctx.Conn(), ClientIdle: sc.ReadTimeout,
			Max: int(sc.MaxBodyBytes)}
		req.SetBodyStream(up, -1)
		return up, 0, ""
	}
	req.SetBodyRaw(b)
	req.Header.SetContentLength(len(b))
	if size < 0 {
		// The trailers came with the body's end, after the hop-by-hop strip ran.
		upstream.DropRequestTrailers(&req.Header)
	}
	return nil, 0, ""
}

func bodyReadFailure(err error) (int, string) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fasthttp.StatusRequestTimeout, "request body not received in time"
	}
	return fasthttp.StatusBadRequest, "request body incomplete"
}

// tunnels are the open WebSocket tunnels, for shutdown: they have left fasthttp's connection
// tracking when their connection was hijacked.
type tunnels struct {
	mu   sync.Mutex
	open map[*upstream.Tunnel]struct{}
}

func (ts *tunnels) add(t *upstream.Tunnel) {
	ts.mu.Lock()
	if ts.open == nil {
		ts.open = map[*upstream.Tunnel]struct{}{}
	}
	ts.open[t] = struct{}{}
	ts.mu.Unlock()
}

func (ts *tunnels) remove(t *upstream.Tunnel) {
	ts.mu.Lock()
	delete(ts.open, t)
	ts.mu.Unlock()
}

func (ts *tunnels) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.open)
}

// closeAll closes every tunnel still open.
func (ts *tunnels) closeAll() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for t := range ts.open {
		t.Close()
	}
}

// startTunnel hands the client connection to tun once fasthttp lets go of it: the 101 head (with
// weir's own headers) is written there, then bytes flow both ways. The tunnel no longer needs the
// snapshot, so reloads leave it alone.
func (s *Server) startTunnel(ctx *fasthttp.RequestCtx, tun *upstream.Tunnel, r *Route, snap *Snapshot) {
	head := append([]byte(nil), ctx.Response.Header.Header()...)
	idle := r.wsIdle
	var tc *tunnelCounters
	if m := snap.metrics; m != nil {
		c := m.tunnelCounters(r.Name)
		tc = &c
	}
	log := s.log.With().Str("route", r.Name).Bytes("request_id", ctx.Response.Header.Peek(headerRequestID)).Logger()
	s.tunnels.add(tun)
	if tc != nil {
		tc.open.Inc()
	}
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer s.tunnels.remove(tun)
		start := time.Now()
		up, down := upstream.Adder(nopAdder{}), upstream.Adder(nopAdder{})
		if tc != nil {
			up, down = tc.toUpstream, tc.toClient
			defer tc.open.Dec()
		}
		tun.Relay(c, head, idle, up, down)
		log.Debug().Dur("duration", time.Since(start)).Msg("websocket tunnel closed")
	})
}

type nopAdder struct{}

func (nopAdder) Add(float64) {}
