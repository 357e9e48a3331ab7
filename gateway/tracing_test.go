package gateway

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/weir-gateway/weir/filters"
	"github.com/weir-gateway/weir/tracing"
)

// otlpReceiver is a real OTLP/HTTP trace endpoint: it decodes every export's protobuf and keeps the
// spans, with the service name of their resource and the headers of the export that carried them.
type otlpReceiver struct {
	addr    string
	mu      sync.Mutex
	spans   []receivedSpan
	exports int
}

type receivedSpan struct {
	*tracepb.Span
	service string
	header  http.Header
}

func startOTLPReceiver(t testing.TB) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want a protobuf POST to /v1/traces", http.StatusNotFound)
			return
		}
		body, err := io.ReadAll(req.Body)
		var export coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &export)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.exports++
		for _, rs := range export.ResourceSpans {
			service := stringAttr(rs.GetResource().GetAttributes(), "service.name")
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					r.spans = append(r.spans, receivedSpan{Span: s, service: service, header: req.Header.Clone()})
				}
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

func (r *otlpReceiver) received() []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedSpan(nil), r.spans...)
}

// waitTrace waits for the span of the trace with this hex ID.
func (r *otlpReceiver) waitTrace(t *testing.T, traceID string) receivedSpan {
	t.Helper()
	var found receivedSpan
	waitFor(t, "the span of trace "+traceID, func() bool {
		for _, s := range r.received() {
			if hex.EncodeToString(s.TraceId) == traceID {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

func stringAttr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			switch v := kv.Value.Value.(type) {
			case *commonpb.AnyValue_StringValue:
				return v.StringValue
			case *commonpb.AnyValue_IntValue:
				return fmt.Sprint(v.IntValue)
			}
		}
	}
	return ""
}

// traceBackend answers 200 and echoes the trace headers it received.
func traceBackend(t *testing.T) string {
	return startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetBytesV("X-Got-Traceparent", ctx.Request.Header.Peek("Traceparent"))
		ctx.Response.Header.SetBytesV("X-Got-Tracestate", ctx.Request.Header.Peek("Tracestate"))
		ctx.SetBodyString("ok")
	})
}

// sentTraceparent splits the traceparent the backend got into trace ID, parent span ID and flags.
func sentTraceparent(t *testing.T, resp *fasthttp.Response) (trace, span, flags string) {
	t.Helper()
	v := string(resp.Header.Peek("X-Got-Traceparent"))
	parts := strings.Split(v, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		t.Fatalf("upstream got traceparent %q, want 00-<32 hex>-<16 hex>-<2 hex>", v)
	}
	return parts[1], parts[2], parts[3]
}

func tracingGateway(t *testing.T, tracing, backend string, access io.Writer) (string, *Snapshot) {
	t.Helper()
	snap, err := CompileWith("test.yaml", []byte(tracing+`
upstreams:
  backend:
    targets: [{url: "http://`+backend+`"}]
routes:
  - {name: users, match: {path: "/users/{id}"}, upstream: backend}
`), Options{Log: zerolog.New(testLogWriter{t}), Metrics: NewMetrics()})
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := serveSnapshotLogged(t, snap, access)
	return gw, snap
}

const (
	clientTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientParent = "00f067aa0ba902b7"
)

func TestTracing_SpanContinuesTheClientsTraceAndNamesWeirUpstream(t *testing.T) {
	recv := startOTLPReceiver(t)
	backend := traceBackend(t)
	var access lockedBuffer
	gw, _ := tracingGateway(t, `tracing:
  otlp_endpoint: http://`+recv.addr+`
  sample_ratio: 0
  service_name: edge
  batch_timeout: 20ms
  headers: {X-Collector-Key: collector-secret-7}
`, backend, &access)
	do := keepAliveGet(t, gw)

	resp := do("/users/7", "Traceparent", "00-"+clientTrace+"-"+clientParent+"-01", "Tracestate", "vendor=abc,other=1",
		"User-Agent", "trace-test/1")
	trace, weirSpan, flags := sentTraceparent(t, resp)
	if trace != clientTrace || weirSpan == clientParent || flags != "01" {
		t.Fatalf("upstream got trace %s span %s flags %s; want the client's trace %s, weir's own span, sampled",
			trace, weirSpan, flags, clientTrace)
	}
	if got := string(resp.Header.Peek("X-Got-Tracestate")); got != "vendor=abc,other=1" {
		t.Errorf("upstream got tracestate %q, want the client's", got)
	}

	s := recv.waitTrace(t, clientTrace)
	if hex.EncodeToString(s.ParentSpanId) != clientParent || hex.EncodeToString(s.SpanId) != weirSpan {
		t.Errorf("span %x has parent %x; want span %s (the one upstream was told) under the client's %s",
			s.SpanId, s.ParentSpanId, weirSpan, clientParent)
	}
	if s.Kind != tracepb.Span_SPAN_KIND_SERVER || s.Name != "GET users" || s.TraceState != "vendor=abc,other=1" {
		t.Errorf("span kind %v name %q tracestate %q; want a server span \"GET users\" with the client's tracestate", s.Kind, s.Name, s.TraceState)
	}
	if s.service != "edge" || s.header.Get("X-Collector-Key") != "collector-secret-7" {
		t.Errorf("export from service %q with key %q; want edge and the configured header", s.service, s.header.Get("X-Collector-Key"))
	}
	_, gwPort, _ := net.SplitHostPort(gw)
	for key, want := range map[string]string{
		"http.request.method": "GET", "http.route": "users", "http.response.status_code": "200",
		"url.path": "/users/7", "url.scheme": "http", "server.address": "127.0.0.1", "server.port": gwPort,
		"client.address": "127.0.0.1", "user_agent.original": "trace-test/1", "weir.upstream": "backend",
		"weir.upstream.target": backend, "weir.upstream.attempts": "1",
	} {
		if got := stringAttr(s.Attributes, key); got != want {
			t.Errorf("span attribute %s = %q, want %q", key, got, want)
		}
	}
	if s.EndTimeUnixNano <= s.StartTimeUnixNano || s.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("span runs %d..%d with status %v; want a positive duration and no error", s.StartTimeUnixNano, s.EndTimeUnixNano, s.Status)
	}
	waitFor(t, "the access line", func() bool { return strings.Contains(access.String(), `"trace_id":"`+clientTrace+`"`) })

	// An unsampled parent: the trace goes on upstream, unsampled, and nothing is exported.
	resp = do("/users/8", "Traceparent", "00-"+strings.Repeat("ab", 16)+"-"+clientParent+"-00")
	if trace, _, flags := sentTraceparent(t, resp); trace != strings.Repeat("ab", 16) || flags != "00" {
		t.Errorf("an unsampled parent reached the upstream as trace %s flags %s", trace, flags)
	}
	// A malformed traceparent starts a new trace (sample_ratio 0: unsampled), and its tracestate,
	// which belongs to no trace now, is dropped.
	resp = do("/users/9", "Traceparent", "00-"+strings.ToUpper(clientTrace)+"-"+clientParent+"-01", "Tracestate", "vendor=abc")
	if trace, _, flags := sentTraceparent(t, resp); trace == clientTrace || trace == strings.ToLower(clientTrace) || flags != "00" {
		t.Errorf("a malformed traceparent reached the upstream as trace %s flags %s; want a fresh unsampled one", trace, flags)
	}
	if got := resp.Header.Peek("X-Got-Tracestate"); len(got) != 0 {
		t.Errorf("the tracestate of a malformed traceparent went upstream: %q", got)
	}
	// A request without a route gets a span too, named by its method alone.
	const lost = "1111111111111111aaaaaaaaaaaaaaaa"
	if resp := do("/nowhere", "Traceparent", "00-"+lost+"-"+clientParent+"-01"); resp.StatusCode() != 404 {
		t.Fatalf("GET /nowhere: %d", resp.StatusCode())
	}
	s = recv.waitTrace(t, lost)
	if s.Name != "GET" || stringAttr(s.Attributes, "http.response.status_code") != "404" || stringAttr(s.Attributes, "http.route") != "" {
		t.Errorf("the 404's span is %q with status %s route %q", s.Name, stringAttr(s.Attributes, "http.response.status_code"), stringAttr(s.Attributes, "http.route"))
	}
	for _, s := range recv.received() {
		if id := hex.EncodeToString(s.TraceId); id != clientTrace && id != lost {
			t.Errorf("an unsampled request was exported: trace %s", id)
		}
	}
}

func TestTracing_SampleRatioForRequestsWithoutAParent(t *testing.T) {
	recv := startOTLPReceiver(t)
	gw, _ := tracingGateway(t, "tracing: {otlp_endpoint: \"http://"+recv.addr+"\", sample_ratio: 0.25, batch_timeout: 20ms}\n", traceBackend(t), io.Discard)
	do := keepAliveGet(t, gw)
	const n = 800
	sampled := map[string]bool{}
	for i := range n {
		trace, _, flags := sentTraceparent(t, do(fmt.Sprintf("/users/%d", i)))
		if flags == "01" {
			sampled[trace] = true
		}
	}
	// Binomial: mean 200, standard deviation 12; ±5 of them leaves a flake once in millions of runs.
	if len(sampled) < 140 || len(sampled) > 260 {
		t.Errorf("%d of %d requests sampled at sample_ratio 0.25", len(sampled), n)
	}
	waitFor(t, "every sampled span", func() bool { return len(recv.received()) >= len(sampled) })
	got := recv.received()
	for _, s := range got {
		if !sampled[hex.EncodeToString(s.TraceId)] {
			t.Errorf("trace %x was exported, but the upstream was told it is not sampled", s.TraceId)
		}
	}
	if len(got) != len(sampled) {
		t.Errorf("%d spans exported for %d sampled requests", len(got), len(sampled))
	}
}

func TestTracing_RetriesAndBreakerRejectionsAreSpanEvents(t *testing.T) {
	recv := startOTLPReceiver(t)
	failing := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(503) })
	healthy := traceBackend(t)
	snap, err := CompileWith("test.yaml", []byte(`tracing: {otlp_endpoint: "http://`+recv.addr+`", sample_ratio: 1, batch_timeout: 20ms}
upstreams:
  flaky:
    targets: [{url: "http://`+failing+`"}, {url: "http://`+healthy+`"}]
    passive_health: {consecutive_failures: 0}
    retries: {attempts: 2, on: [503]}
  down:
    targets: [{url: "http://`+closedAddr(t)+`"}]
routes:
  - {name: retried, match: {path: /retried}, upstream: flaky}
  - name: guarded
    match: {path: /guarded}
    upstream: down
    filters: [{circuit_breaker: {consecutive_failures: 1, open_timeout: 1m}}]
`), Options{Log: zerolog.New(testLogWriter{t}), Metrics: NewMetrics()})
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := serveSnapshot(t, snap)
	do := keepAliveGet(t, gw)

	// Round robin: of two requests, one starts on the failing target and is retried on the other.
	var s receivedSpan
	for range 2 {
		trace, _, _ := sentTraceparent(t, do("/retried"))
		if span := recv.waitTrace(t, trace); stringAttr(span.Attributes, "weir.upstream.attempts") == "2" {
			s = span
		}
	}
	if s.Span == nil {
		t.Fatal("no request was retried")
	}
	if len(s.Events) != 1 || s.Events[0].Name != "retry" {
		t.Fatalf("the retried request's span has events %v; want one retry", s.Events)
	}
	e := s.Events[0]
	if stringAttr(e.Attributes, "weir.upstream.target") != failing || stringAttr(e.Attributes, "http.response.status_code") != "503" ||
		stringAttr(e.Attributes, "weir.upstream.attempt") != "1" {
		t.Errorf("retry event attributes %v; want the failing target, its 503, attempt 1", e.Attributes)
	}
	if got := stringAttr(s.Attributes, "weir.upstream.attempts"); got != "2" || stringAttr(s.Attributes, "weir.upstream.target") != healthy {
		t.Errorf("span says %s attempts ending at %s; want 2 ending at the healthy target", got, stringAttr(s.Attributes, "weir.upstream.target"))
	}

	const first, second = "aaaaaaaaaaaaaaaa1111111111111111", "bbbbbbbbbbbbbbbb2222222222222222"
	if resp := do("/guarded", "Traceparent", "00-"+first+"-"+clientParent+"-01"); resp.StatusCode() != 502 {
		t.Fatalf("first request to a closed port: %d, want 502", resp.StatusCode())
	}
	if resp := do("/guarded", "Traceparent", "00-"+second+"-"+clientParent+"-01"); resp.StatusCode() != 503 {
		t.Fatalf("second request with the breaker open: %d, want 503", resp.StatusCode())
	}
	s = recv.waitTrace(t, first)
	if s.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || stringAttr(s.Attributes, "error.type") == "" {
		t.Errorf("the 502's span has status %v and error.type %q; want an error", s.Status, stringAttr(s.Attributes, "error.type"))
	}
	s = recv.waitTrace(t, second)
	if len(s.Events) != 1 || s.Events[0].Name != "circuit_open" || stringAttr(s.Events[0].Attributes, "weir.reason") != "circuit breaker open" {
		t.Errorf("the rejected request's span has events %v; want one circuit_open", s.Events)
	}
	if got := stringAttr(s.Attributes, "error.type"); got != "circuit breaker open" {
		t.Errorf("the rejection's error.type is %q, want weir's reason, circuit breaker open", got)
	}
}

// A collector that accepts connections and never answers: exports hang until their timeout, the
// queue fills, and requests go on as before, the spans that do not fit dropped and counted.
func TestTracing_ACollectorThatHangsCostsRequestsNothing(t *testing.T) {
	release := make(chan struct{})
	hung := startRawTCP(t, func(c net.Conn) {
		_, _ = bufio.NewReader(c).ReadString('\n')
		<-release
		c.Close()
	})
	backend := traceBackend(t)
	gw, snap := tracingGateway(t, `tracing: {otlp_endpoint: "http://`+hung+`", sample_ratio: 1, queue_size: 16, batch_size: 4, batch_timeout: 10ms, export_timeout: 1m}
`, backend, io.Discard)
	// Registered after the gateway: runs before its shutdown, which then flushes quickly.
	t.Cleanup(func() { close(release) })
	do := keepAliveGet(t, gw)
	var slowest time.Duration
	for i := range 300 {
		start := time.Now()
		if resp := do(fmt.Sprintf("/users/%d", i)); resp.StatusCode() != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode())
		}
		slowest = max(slowest, time.Since(start))
	}
	// One export waits a minute: a request that waited for it would take that long.
	if slowest > 5*time.Second {
		t.Errorf("the slowest request took %v with the collector hanging", slowest)
	}
	if dropped := counterValue(t, snap.metrics.tracingSpans.WithLabelValues("dropped")); dropped < 300-16-2*4 {
		t.Errorf("%v spans counted as dropped; want at least %d (the queue holds 16, a batch of 4 is out, one filling)", dropped, 300-16-2*4)
	}
}

func TestTracing_SettingsReload(t *testing.T) {
	recvA, recvB := startOTLPReceiver(t), startOTLPReceiver(t)
	backend := traceBackend(t)
	config := func(tracing string) string {
		return tracing + reloadConfig("v", backend, "/r")
	}
	path := writeConfigFile(t, config("tracing: {otlp_endpoint: \"http://"+recvA.addr+"\", sample_ratio: 0, batch_timeout: 20ms}\n"))
	g := startRun(t, path)
	getTrace := func(header ...string) (*fasthttp.Response, string) {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.SetRequestURI("http://" + g.public + "/r")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp := send(t, g.public, req)
		return resp, string(resp.Header.Peek("X-Got-Traceparent"))
	}
	_, sent := getTrace()
	if !strings.HasSuffix(sent, "-00") {
		t.Fatalf("with sample_ratio 0 the upstream got %q; want an unsampled traceparent", sent)
	}

	next := config("tracing: {otlp_endpoint: \"http://" + recvA.addr + "\", sample_ratio: 1, batch_timeout: 20ms}\n")
	writeInPlace(t, path, next)
	g.waitApplied(t, next)
	resp, _ := getTrace()
	trace, _, _ := sentTraceparent(t, resp)
	recvA.waitTrace(t, trace)

	next = config("tracing: {otlp_endpoint: \"http://" + recvB.addr + "\", sample_ratio: 1, batch_timeout: 20ms}\n")
	writeInPlace(t, path, next)
	g.waitApplied(t, next)
	resp, _ = getTrace()
	trace, _, _ = sentTraceparent(t, resp)
	recvB.waitTrace(t, trace)
	for _, s := range recvA.received() {
		if hex.EncodeToString(s.TraceId) == trace {
			t.Errorf("a span went to the old collector after the endpoint changed")
		}
	}

	// Tracing off: trace headers pass through as the client sent them, and none is made up.
	next = config("")
	writeInPlace(t, path, next)
	g.waitApplied(t, next)
	const clients = "00-" + clientTrace + "-" + clientParent + "-01"
	if _, sent := getTrace("Traceparent", clients); sent != clients {
		t.Errorf("with tracing off the upstream got traceparent %q, want the client's %q", sent, clients)
	}
	if _, sent := getTrace(); sent != "" {
		t.Errorf("with tracing off the upstream got traceparent %q, want none", sent)
	}
}

func TestCompile_TracingProblems(t *testing.T) {
	for _, tc := range []struct{ tracing, want string }{
		{"tracing: {otlp_endpoint: \"ftp://collector:21\"}", `test.yaml:1: tracing.otlp_endpoint: "ftp://collector:21" must be an http:// or https:// URL`},
		{"tracing: {otlp_endpoint: \"http://c:4318\", sample_ratio: 1.5}", "test.yaml:1: tracing.sample_ratio: must be between 0"},
		{"tracing: {otlp_endpoint: \"http://c:4318\", queue_size: 8, batch_size: 9}", "test.yaml:1: tracing.batch_size: must be between 1 and queue_size (8), got 9"},
		{"tracing: {otlp_endpoint: \"http://c:4318\", headers: {\"Bad Name\": x}}", `tracing.headers.Bad Name: "Bad Name" is not a valid header name`},
		{"tracing: {otlp_endpoint: \"http://c:4318\", service_name: \"\"}", "tracing.service_name: must not be empty"},
		{"tracing: {otlp_endpoint: \"http://c:4318\", export_timeout: 0s}", "tracing.export_timeout: must be more than zero"},
	} {
		_, err := Compile("test.yaml", []byte(tc.tracing+"\n"+oneRouteConfig("", "127.0.0.1:1")))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\n  got  %v\n  want %s", tc.tracing, err, tc.want)
		}
	}
}

// The collector's headers are secrets: a failing export's log line names the endpoint, not them.
func TestTracing_ExportFailureLogKeepsHeadersSecret(t *testing.T) {
	var log lockedBuffer
	snap, err := CompileWith("test.yaml", []byte("tracing: {otlp_endpoint: \"http://"+closedAddr(t)+"\", sample_ratio: 1, batch_timeout: 10ms, headers: {Authorization: \"Bearer collector-token-42\"}}\n"+
		oneRouteConfig("", traceBackend(t))), Options{Log: zerolog.New(&log), Metrics: NewMetrics()})
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := serveSnapshot(t, snap)
	get(t, gw, "/x")
	waitFor(t, "the export failure to be logged", func() bool { return strings.Contains(log.String(), "trace export failing") })
	waitFor(t, "the failed span to be counted", func() bool {
		return counterValue(t, snap.metrics.tracingSpans.WithLabelValues("failed")) == 1
	})
	if strings.Contains(log.String(), "collector-token-42") {
		t.Errorf("the log shows the collector's token:\n%s", log.String())
	}
	for _, l := range log.lines() {
		var line map[string]any
		if !strings.Contains(l, "trace export failing") {
			continue
		}
		err := json.Unmarshal([]byte(l), &line)
		if ep, _ := line["endpoint"].(string); err != nil || !strings.HasSuffix(ep, "/v1/traces") {
			t.Errorf("the failure line %q should name the endpoint", l)
		}
	}
}

// BenchmarkBeginTrace is what tracing adds to an unsampled request: the incoming traceparent read,
// new IDs, the sampling decision and the traceparent set for the upstream.
func BenchmarkBeginTrace(b *testing.B) {
	st := &snapshotTracing{sampler: tracing.NewSampler(0.01)}
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.Set("Traceparent", "00-"+clientTrace+"-"+clientParent+"-00")
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("tracing=%v", on), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				x := filters.AcquireExchange(&ctx)
				if on {
					beginTrace(&ctx, x, st)
				}
				filters.ReleaseExchange(x)
			}
		})
	}
}
