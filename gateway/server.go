package gateway

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
	"github.com/weir-gateway/weir/tracing"
	"github.com/weir-gateway/weir/upstream"
)

// Server is the public listener: one fasthttp handler for every request, serving from the current
// snapshot.
type Server struct {
	current atomic.Pointer[Snapshot]
	sampled atomic.Uint64 // successful requests seen, for log.access_sample
	started *Snapshot     // the snapshot the listener settings were taken from
	ready   atomic.Bool
	log     zerolog.Logger // gateway events
	access  zerolog.Logger // one line per request, when the current snapshot's log.access is on
	fast    *fasthttp.Server
	tlsRoot *tls.Config // the HTTPS listener's; see newTLSRoot
	// fallbackTLS serves HTTPS when the config has no server.tls (weir demo's self-signed certificate).
	fallbackTLS *tlsListener
	tunnels     tunnels
}

// NewServer prepares a server for snap. Events are written to log, access lines to accessOut.
// Listener settings (timeouts, size limits) are taken from snap and fixed for the server's life.
func NewServer(snap *Snapshot, log zerolog.Logger, accessOut io.Writer) *Server {
	s := &Server{log: log, started: snap}
	s.access = zerolog.New(accessOut).With().Timestamp().Logger()
	s.current.Store(snap)
	snap.activate()
	sc := snap.Server
	s.fast = &fasthttp.Server{
		Handler:      s.handle,
		ErrorHandler: s.handleParseError,
		ReadTimeout:  sc.ReadTimeout,
		WriteTimeout: sc.WriteTimeout,
		IdleTimeout:  sc.IdleTimeout,
		// fasthttp reads the request line and headers into this buffer, so its size is the header cap.
		ReadBufferSize:     int(sc.MaxHeaderBytes),
		WriteBufferSize:    int(sc.WriteBufferBytes),
		MaxRequestBodySize: int(sc.MaxBodyBytes),
		// Bodies reach the handler as streams (fasthttp has read at most 8 KiB of them), and the
		// gateway decides: buffer or relay (requestBody). fasthttp does not enforce
		// MaxRequestBodySize on a streamed body; handle does.
		StreamRequestBody: true,
		// Relay multipart bodies byte for byte; parsing them would make fasthttp rebuild them (parts
		// reordered, part headers lost) and reject malformed ones the upstream may accept.
		DisablePreParseMultipartForm: true,
		// A proxy adds nothing the upstream did not send.
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		CloseOnShutdown:       true,
		TCPKeepalive:          true,
		ReduceMemoryUsage:     sc.ReduceMemoryUsage,
		// fasthttp's own error logs would otherwise quote raw request bytes.
		SecureErrorLogMessage: true,
		Logger:                fasthttpLogger{log},
	}
	s.tlsRoot = s.newTLSRoot()
	return s
}

// Snapshot returns the snapshot currently serving.
func (s *Server) Snapshot() *Snapshot { return s.current.Load() }

// Serve accepts plain HTTP connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.fast.Serve(ln) }

// ServeTLS accepts HTTPS connections on ln until Shutdown, with the serving snapshot's certificates.
func (s *Server) ServeTLS(ln net.Listener) error {
	return s.fast.Serve(&tlsNetListener{Listener: ln, cfg: s.tlsRoot, srv: s})
}

// Shutdown stops accepting, lets in-flight requests finish until ctx ends, then closes idle upstream
// connections. It returns ctx's error if requests were still running when ctx ended.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.fast.ShutdownWithContext(ctx)
	// WebSocket tunnels left fasthttp's tracking when they were hijacked: they get what is left of
	// the grace period to end by themselves.
	for s.tunnels.count() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.tunnels.closeAll()
	s.current.Load().Close()
	return err
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	snap := s.current.Load()
	x := filters.AcquireExchange(ctx)
	defer s.finish(ctx, x, snap, ctx.Time())

	requestID(ctx, x)
	if snap.tracing.tracer != nil {
		beginTrace(ctx, x, &snap.tracing)
	}
	status, reason := checkRequest(ctx)
	if status == 0 && ctx.Request.Header.ContentLength() > int(snap.Server.MaxBodyBytes) {
		status, reason = fasthttp.StatusRequestEntityTooLarge, "request body too large"
	}
	x.WebSocket = isWebSocketUpgrade(&ctx.Request.Header)
	// Before the status check: the access log wants the client address of rejected requests too.
	snap.forwardHeaders(ctx, x)
	recordTarget(ctx, x)
	if status != 0 {
		x.Reject(status, reason)
		return
	}
	if snap.Server.RedirectHTTPS && !ctx.IsTLS() {
		redirectToHTTPS(ctx, x, snap.redirectPort)
		return
	}
	var hostBuf [256]byte
	route, allow := snap.match(ctx, filters.AppendHostKey(hostBuf[:0], ctx.Request.Header.Host()), ctx.Path())
	if route == nil {
		if allow != "" {
			ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
			x.Reject(fasthttp.StatusMethodNotAllowed, "method not allowed")
		} else {
			x.Reject(fasthttp.StatusNotFound, "no route")
		}
		return
	}
	x.Route = route.Name
	route.handler.Serve(x)
}

// finish turns a panic into a 500 (fasthttp does not recover handler panics, so without this one bad
// request would kill the process), then completes the exchange.
func (s *Server) finish(ctx *fasthttp.RequestCtx, x *filters.Exchange, snap *Snapshot, start time.Time) {
	if p := recover(); p != nil {
		s.log.Error().Bytes("request_id", x.RequestID).Str("route", x.Route).Str("panic", fmt.Sprint(p)).
			Bytes("stack", debug.Stack()).Msg("panic while serving a request")
		ctx.Response.Reset()
		x.Reject(fasthttp.StatusInternalServerError, "internal error")
	}
	s.complete(ctx, x, snap, start, ctx.Method())
}

// complete renders a gateway-made answer if there is one, stamps the request ID, counts and logs the
// request, and releases x. start is when the request was read; method is nil when it never parsed.
func (s *Server) complete(ctx *fasthttp.RequestCtx, x *filters.Exchange, snap *Snapshot, start time.Time, method []byte) {
	if x.Status != 0 {
		writeError(&ctx.Response, x.Status, x.Reason, x.RequestID)
	}
	setOnly(&ctx.Response.Header, nameRequestID, x.RequestID)
	if t := snap.tls; t != nil && t.hsts != nil && ctx.IsTLS() {
		setOnly(&ctx.Response.Header, nameHSTS, t.hsts)
	}
	status := ctx.Response.StatusCode()
	if tun, ok := x.Tunnel.(*upstream.Tunnel); ok {
		if route := snap.routeByName[x.Route]; x.Status != 0 || route == nil {
			tun.Close() // a step answered instead of the upstream's 101
		} else {
			s.startTunnel(ctx, tun, route, snap)
		}
	}
	if st := upstreamStream(ctx.Response.BodyStream()); st != nil && x.Status == 0 {
		// The body is yet to be relayed: the request is counted and logged when it ends.
		s.deferToStreamEnd(ctx, x, st, snap, start, status, method)
		filters.ReleaseExchange(x)
		return
	}
	end := time.Now()
	elapsed := end.Sub(start)
	if rm := snap.routeMetrics(x.Route); rm != nil {
		rm.observe(method, status, elapsed.Seconds())
	}
	if x.Trace.Sampled {
		r := spanRequest(ctx, x, snap, method, status, start)
		r.End = end
		snap.tracing.tracer.Export(&x.Trace, &r)
	}
	if !s.accessLogged(snap, status) {
		filters.ReleaseExchange(x)
		return
	}
	ev := s.access.Log().
		Bytes("request_id", x.RequestID).
		Bytes("client_ip", x.ClientIP).
		Bytes("method", method).
		Bytes("host", x.Host).
		Bytes("path", x.Path).
		Int("status", status).
		Int("bytes", len(ctx.Response.Body())).
		Int64("duration_us", elapsed.Microseconds()).
		Str("route", x.Route).
		Str("upstream", x.Target).
		Int("attempts", x.Attempts).
		Int64("upstream_us", x.UpstreamTime.Microseconds())
	if len(x.Consumer) > 0 {
		ev = ev.Bytes("consumer", x.Consumer)
	}
	if x.Trace.On {
		ev = ev.Hex("trace_id", x.Trace.TraceID[:])
	}
	if x.Fallback != "" {
		ev = ev.Str("fallback", x.Fallback)
	}
	if x.Pool != "" {
		ev = ev.Str("pool", x.Pool)
	}
	ev.Msg("")
	filters.ReleaseExchange(x)
}

// upstreamStream finds the upstream stream under a streamed body, through the readers filters
// wrapped it in (compress).
func upstreamStream(body io.Reader) *upstream.Stream {
	for body != nil {
		switch b := body.(type) {
		case *upstream.Stream:
			return b
		case interface{ Unwrap() io.Reader }:
			body = b.Unwrap()
		default:
			return nil
		}
	}
	return nil
}

// routeMetrics returns the counters of the named route, or the unrouted ones when no route matched;
// nil when the snapshot is not counted.
func (s *Snapshot) routeMetrics(route string) *routeMetrics {
	m := s.metrics
	if m == nil {
		return nil
	}
	if r := s.routeByName[route]; r != nil && route != "" {
		return r.metrics
	}
	return m.unrouted
}

// accessLogged reports whether a request with this status gets an access line (log.access and
// log.access_sample).
func (s *Server) accessLogged(snap *Snapshot, status int) bool {
	return snap.Log.Access && (status >= 400 || snap.Log.AccessSample <= 1 || s.sampled.Add(1)%uint64(snap.Log.AccessSample) == 0)
}

// deferToStreamEnd counts and logs a streamed response when its body ends: its duration is the
// stream's, its bytes what was relayed, and result how it ended. It also makes server.write_timeout
// bound each write of the stream rather than the whole of it.
func (s *Server) deferToStreamEnd(ctx *fasthttp.RequestCtx, x *filters.Exchange, st *upstream.Stream, snap *Snapshot,
	start time.Time, status int, method []byte) {
	rm := snap.routeMetrics(x.Route)
	logged := s.accessLogged(snap, status)
	// The exchange is released before the body is relayed: what the line needs is copied.
	rec := streamRecord{requestID: string(x.RequestID), clientIP: string(x.ClientIP), method: string(method),
		host: string(x.Host), path: string(x.Path), route: x.Route, target: x.Target, attempts: x.Attempts,
		upstreamUS: x.UpstreamTime.Microseconds(), consumer: string(x.Consumer), pool: x.Pool}
	if x.Trace.On {
		rec.traceID = hex.EncodeToString(x.Trace.TraceID[:])
	}
	var span *tracedStream
	if x.Trace.Sampled {
		span = &tracedStream{span: x.Trace, req: cloneSpanRequest(spanRequest(ctx, x, snap, method, status, start))}
	}
	st.WatchClient(ctx.Conn(), snap.Server.WriteTimeout, func(n int, result string) {
		end := time.Now()
		elapsed := end.Sub(start)
		if rm != nil {
			rm.observe([]byte(rec.method), status, elapsed.Seconds())
		}
		if span != nil {
			span.req.End = end
			span.span.Event(tracing.Event{Name: "stream_end", At: end, Reason: result})
			snap.tracing.tracer.Export(&span.span, &span.req)
		}
		if !logged {
			return
		}
		ev := s.access.Log().
			Str("request_id", rec.requestID).
			Str("client_ip", rec.clientIP).
			Str("method", rec.method).
			Str("host", rec.host).
			Str("path", rec.path).
			Int("status", status).
			Int("bytes", n).
			Int64("duration_us", elapsed.Microseconds()).
			Str("route", rec.route).
			Str("upstream", rec.target).
			Int("attempts", rec.attempts).
			Int64("upstream_us", rec.upstreamUS).
			Str("stream", result)
		if rec.consumer != "" {
			ev = ev.Str("consumer", rec.consumer)
		}
		if rec.traceID != "" {
			ev = ev.Str("trace_id", rec.traceID)
		}
		if rec.pool != "" {
			ev = ev.Str("pool", rec.pool)
		}
		ev.Msg("")
	})
}

type streamRecord struct {
	requestID, clientIP, method, host, path, route, target, consumer, pool, traceID string
	attempts                                                                        int
	upstreamUS                                                                      int64
}

// handleParseError answers requests fasthttp could not read. It maps the size limits to their proper
// statuses (fasthttp's default is 400 for an oversized body).
func (s *Server) handleParseError(ctx *fasthttp.RequestCtx, err error) {
	status, reason := fasthttp.StatusBadRequest, "malformed request"
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &small):
		status, reason = fasthttp.StatusRequestHeaderFieldsTooLarge, "request headers too large"
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, reason = fasthttp.StatusRequestEntityTooLarge, "request body too large"
	case errors.As(err, &netErr) && netErr.Timeout():
		status, reason = fasthttp.StatusRequestTimeout, "request not received in time"
	}
	x := filters.AcquireExchange(ctx)
	x.Client = peerAddr(ctx)
	x.ClientIP = x.Client.AppendTo(x.IPBuf())
	requestID(ctx, x)
	recordTarget(ctx, x)
	x.Reject(status, reason)
	// fasthttp calls this before it sets ctx.Time(), which then holds the previous request's time or
	// none: the request is timed from here, and its method, never parsed, counts as "other".
	s.complete(ctx, x, s.current.Load(), time.Now(), nil)
}

// recordTarget keeps the host and path as the client sent them, for the access log: a rewrite filter
// changes the ones in the request.
func recordTarget(ctx *fasthttp.RequestCtx, x *filters.Exchange) {
	x.Host = append(x.HostBuf(), ctx.Request.Header.Host()...)
	x.Path = append(x.PathBuf(), ctx.Path()...)
}

// writeError renders every gateway-made answer: {"error": reason, "status": code, "request_id": id}.
// reason is one of the gateway's own constant phrases and id passed saneRequestID, so neither needs
// escaping; no error text from elsewhere ever reaches a client.
func writeError(resp *fasthttp.Response, status int, reason string, id []byte) {
	resp.ResetBody()
	resp.SetStatusCode(status)
	if status == fasthttp.StatusNoContent {
		return // a gateway answer without a body: a CORS preflight's
	}
	resp.Header.SetContentType("application/json")
	var num [8]byte
	resp.AppendBodyString(`{"error":"`)
	resp.AppendBodyString(reason)
	resp.AppendBodyString(`","status":`)
	resp.AppendBody(strconv.AppendInt(num[:0], int64(status), 10))
	resp.AppendBodyString(`,"request_id":"`)
	resp.AppendBody(id)
	resp.AppendBodyString(`"}`)
}

// fasthttpLogger sends fasthttp's own messages (accept errors and the like) to the event log.
type fasthttpLogger struct{ log zerolog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	for _, a := range args {
		if _, ok := a.(handshakeError); ok {
			return
		}
		// A streamed body the upstream broke: weir logged it already, with the request's context.
		if err, ok := a.(error); ok && upstream.IsStreamCut(err) {
			return
		}
	}
	l.log.Warn().Msgf(format, args...)
}
