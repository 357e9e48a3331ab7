package tracing

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Settings say where spans go and how they are batched. Two tracers with equal Settings are
// interchangeable (a reload keeps the running one).
type Settings struct {
	// Endpoint is the collector's OTLP/HTTP URL; a URL without a path gets /v1/traces.
	Endpoint    string
	Headers     map[string]string
	ServiceName string
	// QueueSize bounds the spans waiting for export; a span that finds the queue full is dropped and
	// counted. BatchSize spans, or what waited BatchTimeout, go in one export; ExportTimeout bounds it.
	QueueSize     int
	BatchSize     int
	BatchTimeout  time.Duration
	ExportTimeout time.Duration
}

// Counter counts spans; weir's are Prometheus counters.
type Counter interface{ Add(float64) }

// Counters count spans by what became of them. A nil counter counts nothing.
type Counters struct {
	Exported, Dropped, Failed Counter
}

// Tracer exports finished server spans to an OTLP/HTTP collector, in batches, off the request path.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	proc     *processor
}

// New prepares a tracer; nothing is sent before Start. The error is about Settings (an endpoint that
// is not an http or https URL).
func New(s Settings, counters Counters, log zerolog.Logger) (*Tracer, error) {
	u, err := url.Parse(s.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("must be an http:// or https:// URL like \"http://127.0.0.1:4318\"")
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	exp, err := otlptracehttp.New(context.Background(),
		otlptracehttp.WithEndpointURL(u.String()),
		otlptracehttp.WithHeaders(s.Headers),
		otlptracehttp.WithTimeout(s.ExportTimeout),
		// A failed batch is counted and dropped: retrying would hold the queue while newer spans wait.
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
	if err != nil {
		return nil, err
	}
	p := &processor{
		exporter: exp, counters: counters, log: log, endpoint: u.Redacted(),
		queue: make(chan sdktrace.ReadOnlySpan, s.QueueSize), batchSize: s.BatchSize,
		interval: s.BatchTimeout, timeout: s.ExportTimeout,
		flush: make(chan chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
	}
	res := resource.NewSchemaless(semconv.ServiceName(s.ServiceName), semconv.TelemetrySDKName("opentelemetry"),
		semconv.TelemetrySDKLanguageGo)
	provider := sdktrace.NewTracerProvider(
		// The sampling decision is made before the SDK sees a request: only sampled ones reach it.
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithIDGenerator(presetIDs{}),
		sdktrace.WithSpanProcessor(p),
		sdktrace.WithResource(res))
	return &Tracer{provider: provider, tracer: provider.Tracer("github.com/weir-gateway/weir"), proc: p}, nil
}

// Start begins exporting. It may be called more than once.
func (t *Tracer) Start() { t.proc.once.Do(func() { go t.proc.run() }) }

// Shutdown exports what is queued, until ctx ends, and stops the tracer; later spans are not
// exported.
func (t *Tracer) Shutdown(ctx context.Context) error {
	t.Start() // so that run is there to drain the queue and close done
	return t.provider.Shutdown(ctx)
}

// ForceFlush exports what is queued now, until ctx ends.
func (t *Tracer) ForceFlush(ctx context.Context) error { return t.provider.ForceFlush(ctx) }

// Request is what the server span says about a request that ended.
type Request struct {
	Method     []byte
	Route      string // the route's name; empty when none matched
	Scheme     string // http or https
	Host       []byte // as the client sent it, port included if any
	Path       []byte
	Status     int
	ClientIP   []byte
	UserAgent  []byte
	RequestID  []byte
	Consumer   []byte
	Upstream   string // the pool
	Target     string // the upstream target that served the request (the last tried)
	Attempts   int
	Error      string // weir's reason when weir answered with a 5xx
	TraceState []byte // the incoming tracestate, passed on with the parent
	Start, End time.Time
}

// Export records s, a sampled request's span, as ended. It only queues: the export happens in the
// background, and a full queue drops the span.
func (t *Tracer) Export(s *Span, r *Request) {
	ctx := context.WithValue(context.Background(), idsKey{}, s)
	if s.Parent != ([8]byte{}) {
		parent := trace.SpanContextConfig{TraceID: s.TraceID, SpanID: s.Parent, TraceFlags: trace.FlagsSampled, Remote: true}
		if len(r.TraceState) > 0 {
			// An invalid tracestate is left out of the span; the upstream still got it as sent.
			parent.TraceState, _ = trace.ParseTraceState(string(r.TraceState))
		}
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(parent))
	}
	method, original := knownMethod(r.Method)
	name := method
	if method == "_OTHER" {
		name = "HTTP"
	}
	if r.Route != "" {
		name += " " + r.Route
	}
	host, port := splitHostPort(r.Host, r.Scheme)
	attrs := make([]attribute.KeyValue, 0, 16)
	attrs = append(attrs,
		semconv.HTTPRequestMethodKey.String(method),
		semconv.URLScheme(r.Scheme),
		semconv.URLPath(string(r.Path)),
		semconv.ServerAddress(host),
		semconv.ServerPort(port),
		semconv.ClientAddress(string(r.ClientIP)),
		semconv.NetworkProtocolVersion("1.1"),
		semconv.HTTPResponseStatusCode(r.Status),
		attribute.String("weir.request_id", string(r.RequestID)),
	)
	if original != "" {
		attrs = append(attrs, semconv.HTTPRequestMethodOriginal(original))
	}
	if r.Route != "" {
		attrs = append(attrs, semconv.HTTPRoute(r.Route))
	}
	if len(r.UserAgent) > 0 {
		attrs = append(attrs, semconv.UserAgentOriginal(string(r.UserAgent)))
	}
	if r.Upstream != "" {
		attrs = append(attrs, attribute.String("weir.upstream", r.Upstream))
	}
	if r.Target != "" {
		attrs = append(attrs, attribute.String("weir.upstream.target", r.Target), attribute.Int("weir.upstream.attempts", r.Attempts))
	}
	if len(r.Consumer) > 0 {
		attrs = append(attrs, attribute.String("weir.consumer", string(r.Consumer)))
	}
	if s.lost > 0 {
		attrs = append(attrs, attribute.Int("weir.events_dropped", s.lost))
	}
	_, sp := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(r.Start),
		trace.WithAttributes(attrs...))
	for _, e := range s.Events() {
		ea := make([]attribute.KeyValue, 0, 4)
		if e.Target != "" {
			ea = append(ea, attribute.String("weir.upstream.target", e.Target))
		}
		if e.Reason != "" {
			ea = append(ea, attribute.String("weir.reason", e.Reason))
		}
		if e.Status != 0 {
			ea = append(ea, semconv.HTTPResponseStatusCode(e.Status))
		}
		if e.Attempt != 0 {
			ea = append(ea, attribute.Int("weir.upstream.attempt", e.Attempt))
		}
		sp.AddEvent(e.Name, trace.WithTimestamp(e.At), trace.WithAttributes(ea...))
	}
	// A server span is an error for a 5xx only: a 4xx is the client's.
	if r.Status >= 500 {
		errType := strconv.Itoa(r.Status)
		if r.Error != "" {
			errType = r.Error
		}
		sp.SetAttributes(semconv.ErrorTypeKey.String(errType))
		sp.SetStatus(codes.Error, errType)
	}
	sp.End(trace.WithTimestamp(r.End))
}

// knownMethod is the method as OpenTelemetry's HTTP conventions name it: one of the standard nine,
// or _OTHER with the original.
func knownMethod(m []byte) (name, original string) {
	switch string(m) {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH":
		return string(m), ""
	}
	return "_OTHER", string(m)
}

func splitHostPort(h []byte, scheme string) (string, int) {
	host := string(h)
	for i := len(host) - 1; i >= 0; i-- {
		if host[i] == ']' {
			break
		}
		if host[i] == ':' {
			if p, err := strconv.Atoi(host[i+1:]); err == nil {
				return host[:i], p
			}
			break
		}
	}
	if scheme == "https" {
		return host, 443
	}
	return host, 80
}

// presetIDs gives the SDK the IDs the request was given when it began: the upstream already got
// them in its traceparent.
type presetIDs struct{}

type idsKey struct{}

func (presetIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	s := ctx.Value(idsKey{}).(*Span)
	return s.TraceID, s.ID
}

func (presetIDs) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	return ctx.Value(idsKey{}).(*Span).ID
}

// processor queues ended spans in a bounded channel and exports them in batches from one goroutine.
// The SDK's BatchSpanProcessor does the same but keeps its count of dropped spans to itself; weir
// exports that count as a metric.
type processor struct {
	exporter  sdktrace.SpanExporter
	counters  Counters
	log       zerolog.Logger
	endpoint  string
	queue     chan sdktrace.ReadOnlySpan
	batchSize int
	interval  time.Duration
	timeout   time.Duration

	once    sync.Once
	flush   chan chan struct{}
	stop    chan struct{}
	stopped sync.Once
	done    chan struct{}
	failing atomic.Bool // the last export failed: logged once until one succeeds
}

func (p *processor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (p *processor) OnEnd(s sdktrace.ReadOnlySpan) {
	select {
	case p.queue <- s:
	default:
		count(p.counters.Dropped, 1)
	}
}

func (p *processor) run() {
	defer close(p.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, p.batchSize)
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	drain := func() {
		for {
			select {
			case s := <-p.queue:
				if batch = append(batch, s); len(batch) == p.batchSize {
					batch = p.export(batch)
				}
			default:
				batch = p.export(batch)
				return
			}
		}
	}
	for {
		select {
		case s := <-p.queue:
			if batch = append(batch, s); len(batch) == p.batchSize {
				batch = p.export(batch)
			}
		case <-tick.C:
			batch = p.export(batch)
		case ack := <-p.flush:
			drain()
			close(ack)
		case <-p.stop:
			drain()
			return
		}
	}
}

// export sends batch and returns it emptied for reuse.
func (p *processor) export(batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	if len(batch) == 0 {
		return batch
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	err := p.exporter.ExportSpans(ctx, batch)
	cancel()
	if err != nil {
		count(p.counters.Failed, len(batch))
		if !p.failing.Swap(true) {
			// The error names the URL, which carries no secret (headers are not part of it).
			p.log.Warn().Str("endpoint", p.endpoint).Err(err).Int("spans", len(batch)).
				Msg("trace export failing; spans are dropped until the collector answers")
		}
	} else {
		count(p.counters.Exported, len(batch))
		if p.failing.Swap(false) {
			p.log.Info().Str("endpoint", p.endpoint).Msg("trace export recovered")
		}
	}
	clear(batch)
	return batch[:0]
}

func (p *processor) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case p.flush <- ack:
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *processor) Shutdown(ctx context.Context) error {
	p.stopped.Do(func() { close(p.stop) })
	select {
	case <-p.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return p.exporter.Shutdown(ctx)
}

func count(c Counter, n int) {
	if c != nil {
		c.Add(float64(n))
	}
}
