package gateway

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
	"github.com/weir-gateway/weir/tracing"
	"github.com/weir-gateway/weir/upstream"
)

// snapshotTracing is a snapshot's tracing: nil tracer when tracing.otlp_endpoint is empty.
type snapshotTracing struct {
	tracer  *tracing.Tracer
	sampler tracing.Sampler
	// key is the tracer's identity: a reload with the same key keeps the running tracer (its queue and
	// connections); sample_ratio is not part of it.
	key string
}

// tracing checks the tracing block and builds, or takes over from the previous snapshot, its tracer.
func (c *compiler) tracing(s *Snapshot) {
	tc := c.cfg.Tracing
	if tc.SampleRatio < 0 || tc.SampleRatio > 1 {
		c.problem("tracing.sample_ratio", "must be between 0 (only requests with a sampled parent) and 1 (every request), got %v", tc.SampleRatio)
	}
	if tc.OTLPEndpoint == "" {
		return
	}
	if tc.ServiceName == "" {
		c.problem("tracing.service_name", "must not be empty; it names weir in the tracing backend")
	}
	if tc.QueueSize < 1 || tc.QueueSize > 1<<20 {
		c.problem("tracing.queue_size", "must be between 1 and 1048576 spans, got %d", tc.QueueSize)
	}
	if tc.BatchSize < 1 || tc.BatchSize > tc.QueueSize {
		c.problem("tracing.batch_size", "must be between 1 and queue_size (%d), got %d", tc.QueueSize, tc.BatchSize)
	}
	c.positive("tracing.batch_timeout", tc.BatchTimeout)
	c.positive("tracing.export_timeout", tc.ExportTimeout)
	for _, name := range sortedKeys(tc.Headers) {
		if !filters.IsToken(name) {
			c.problem("tracing.headers."+name, "%q is not a valid header name", name)
		}
		if strings.ContainsAny(tc.Headers[name], "\r\n\x00") {
			c.problem("tracing.headers."+name, "the value must not contain line breaks or NUL")
		}
	}
	settings := tracing.Settings{Endpoint: tc.OTLPEndpoint, Headers: tc.Headers, ServiceName: tc.ServiceName,
		QueueSize: tc.QueueSize, BatchSize: tc.BatchSize, BatchTimeout: tc.BatchTimeout, ExportTimeout: tc.ExportTimeout}
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%d|%d|%s|%s", settings.Endpoint, settings.ServiceName, settings.QueueSize,
		settings.BatchSize, settings.BatchTimeout, settings.ExportTimeout)
	for _, name := range sortedKeys(tc.Headers) {
		fmt.Fprintf(&b, "|%s=%s", name, tc.Headers[name])
	}
	s.tracing.key = b.String()
	s.tracing.sampler = tracing.NewSampler(tc.SampleRatio)
	if prev := c.opts.Previous; prev != nil && prev.tracing.key == s.tracing.key {
		s.tracing.tracer = prev.tracing.tracer
		return
	}
	if c.sink.err() != nil {
		return // nothing is built for a config that is rejected anyway
	}
	var counters tracing.Counters
	if m := c.opts.Metrics; m != nil {
		counters = tracing.Counters{Exported: m.tracingSpans.WithLabelValues("exported"),
			Dropped: m.tracingSpans.WithLabelValues("dropped"), Failed: m.tracingSpans.WithLabelValues("failed")}
	}
	t, err := tracing.New(settings, counters, c.opts.Log)
	if err != nil {
		c.problem("tracing.otlp_endpoint", "%q %v", tc.OTLPEndpoint, err)
		return
	}
	s.tracing.tracer = t
}

// shutdownTracer flushes what t has queued, for at most a few seconds, and stops it.
func shutdownTracer(t *tracing.Tracer, after time.Duration) {
	time.Sleep(after)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.Shutdown(ctx) // a collector that is down loses what was queued; it was counted as failed
}

// beginTrace gives the request its place in a trace and sends the upstream a traceparent naming
// weir's span. A tracestate goes on with a valid parent only.
func beginTrace(ctx *fasthttp.RequestCtx, x *filters.Exchange, st *snapshotTracing) {
	h := &ctx.Request.Header
	if !x.Trace.Begin(h.Peek(tracing.HeaderTraceparent), st.sampler) {
		h.Del(tracing.HeaderTracestate)
	}
	var buf [tracing.TraceparentLen]byte
	// The name is in canonical form already: SetCanonical skips normalizing a copy of it.
	h.SetCanonical(traceparentKey, x.Trace.AppendTraceparent(buf[:0]))
}

var traceparentKey = []byte(tracing.HeaderTraceparent)

// spanRequest describes the request for its span, from x and the request in ctx: it refers to their
// buffers (cloneSpanRequest makes it outlive them). End is left for the caller.
func spanRequest(ctx *fasthttp.RequestCtx, x *filters.Exchange, snap *Snapshot, method []byte, status int, start time.Time) tracing.Request {
	r := tracing.Request{Method: method, Route: x.Route, Scheme: "http", Host: x.Host, Path: x.Path, Status: status,
		ClientIP: x.ClientIP, UserAgent: ctx.Request.Header.UserAgent(), RequestID: x.RequestID, Consumer: x.Consumer,
		Upstream: x.Pool, Target: x.Target, Attempts: x.Attempts, TraceState: ctx.Request.Header.Peek(tracing.HeaderTracestate),
		Start: start}
	if ctx.IsTLS() {
		r.Scheme = "https"
	}
	if route := snap.routeByName[x.Route]; r.Upstream == "" && route != nil && route.Pool != nil {
		r.Upstream = route.Pool.Name
	}
	if x.Status >= 500 {
		r.Error = x.Reason
	}
	return r
}

// tracedStream is a sampled streamed response's span, exported when the stream ends.
type tracedStream struct {
	span tracing.Span
	req  tracing.Request
}

func cloneSpanRequest(r tracing.Request) tracing.Request {
	for _, b := range []*[]byte{&r.Method, &r.Host, &r.Path, &r.ClientIP, &r.UserAgent, &r.RequestID, &r.Consumer, &r.TraceState} {
		*b = bytes.Clone(*b)
	}
	return r
}

// traceRetries records the retried attempts of out on x's span. Not inlined: only sampled requests
// call it, and its locals would otherwise widen the stack frame of every request's upstream step.
//
//go:noinline
func traceRetries(x *filters.Exchange, out *upstream.Outcome) {
	for i := range min(out.NRetried, upstream.MaxNotedRetries) {
		a := &out.Retried[i]
		e := tracing.Event{Name: "retry", At: a.At, Status: a.Status, Reason: a.Reason, Attempt: i + 1}
		if a.Target != nil {
			e.Target = a.Target.Addr
		}
		x.Trace.Event(e)
	}
}
