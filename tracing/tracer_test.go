package tracing

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// countingExporter takes spans and keeps only their number.
type countingExporter struct{ n atomic.Int64 }

func (e *countingExporter) ExportSpans(_ context.Context, s []sdktrace.ReadOnlySpan) error {
	e.n.Add(int64(len(s)))
	return nil
}
func (e *countingExporter) Shutdown(context.Context) error { return nil }

func benchTracer(b *testing.B) (*Tracer, *countingExporter) {
	t, err := New(Settings{Endpoint: "http://127.0.0.1:4318", ServiceName: "weir", QueueSize: 4096, BatchSize: 512,
		BatchTimeout: time.Second, ExportTimeout: time.Second}, Counters{}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	exp := &countingExporter{}
	t.proc.exporter = exp
	t.Start()
	b.Cleanup(func() { _ = t.Shutdown(context.Background()) })
	return t, exp
}

// BenchmarkExport is what a sampled request adds on the request path when it ends: the SDK span with
// its attributes, queued. Encoding and sending a batch happen on the exporter's goroutine and are not
// counted here (BenchmarkProxyGET/static-route-traced-sampled counts them).
func BenchmarkExport(b *testing.B) {
	t, exp := benchTracer(b)
	header := []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	r := Request{Method: []byte("GET"), Route: "users", Scheme: "http", Host: []byte("api.example.com:8080"),
		Path: []byte("/users/42"), Status: 200, ClientIP: []byte("192.0.2.7"), UserAgent: []byte("curl/8.5.0"),
		RequestID: []byte("0123456789abcdef0123456789abcdef"), Upstream: "backend", Target: "10.0.0.5:8080", Attempts: 1}
	b.ReportAllocs()
	for b.Loop() {
		var s Span
		s.Begin(header, NewSampler(0))
		r.Start = time.Now()
		r.End = r.Start.Add(time.Millisecond)
		t.Export(&s, &r)
	}
	b.StopTimer()
	_ = t.ForceFlush(context.Background())
	if exp.n.Load() == 0 {
		b.Fatal("nothing was exported")
	}
}
