package gateway

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// shadowBackend records the copies it gets; while hold is open it keeps each one waiting.
type shadowBackend struct {
	addr string
	mu   sync.Mutex
	got  []backendRequest
	hold chan struct{}
}

func startShadow(t *testing.T) *shadowBackend {
	s := &shadowBackend{hold: make(chan struct{})}
	s.addr = startBackend(t, func(ctx *fasthttp.RequestCtx) {
		s.mu.Lock()
		s.got = append(s.got, backendRequest{Method: string(ctx.Method()), Target: string(ctx.RequestURI()),
			Header: parseHeaderBlock(ctx.Request.Header.RawHeaders()), Body: string(ctx.PostBody())})
		s.mu.Unlock()
		<-s.hold
		ctx.SetStatusCode(500) // discarded
	})
	return s
}

func (s *shadowBackend) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

func mirrorConfig(main, shadow, settings string) string {
	return `upstreams:
  main: {targets: [{url: "http://` + main + `"}]}
  shadow: {targets: [{url: "http://` + shadow + `"}], timeout: 5s, retries: {attempts: 1}}
routes:
  - name: r
    match: {path: "/{rest:*}"}
    upstream: main
    filters:
      - mirror: {upstream: shadow` + settings + `}
`
}

func TestMirror_CopiesReachTheShadowWithoutTheClientWaiting(t *testing.T) {
	b := startRecordingBackend(t, "main", nil)
	shadow := startShadow(t)
	metrics := NewMetrics()
	snap, err := CompileWith("test.yaml", []byte(mirrorConfig(b.Addr, shadow.addr, ", max_in_flight: 2")), Options{Log: zerolog.Nop(), Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := serveSnapshot(t, snap)

	// The shadow holds every copy: the client's answers come anyway.
	req := fasthttp.AcquireRequest()
	req.Header.SetMethod("POST")
	req.SetRequestURI("http://" + gw + "/orders?x=1")
	req.SetBodyString(`{"id": 7}`)
	expectStatus(t, send(t, gw, req), 200, "POST while the shadow holds its copy")
	fasthttp.ReleaseRequest(req)
	waitFor(t, "the copy to reach the shadow", func() bool { return shadow.count() == 1 })
	shadow.mu.Lock()
	c := shadow.got[0]
	shadow.mu.Unlock()
	if c.Method != "POST" || c.Target != "/orders?x=1" || c.Body != `{"id": 7}` || c.Header.Get("X-Weir-Mirror") != "1" {
		t.Errorf("the copy: %+v", c)
	}
	if got := b.take(t); got.Header.Get("X-Weir-Mirror") != "" {
		t.Errorf("the original carries the mirror mark")
	}
	// A second copy fills max_in_flight; three more are dropped, and none of them delays its client.
	for range 4 {
		expectStatus(t, get(t, gw, "/x"), 200, "with the shadow full")
	}
	waitFor(t, "the second copy", func() bool { return shadow.count() == 2 })
	if n := counterValue(t, metrics.mirrored.WithLabelValues("r", "dropped")); n != 3 {
		t.Errorf("dropped copies: %v, want 3", n)
	}
	close(shadow.hold)
	waitFor(t, "the held copies to end", func() bool { return counterValue(t, metrics.mirrored.WithLabelValues("r", "sent")) == 2 })
	if shadow.count() != 2 {
		t.Errorf("the shadow got %d copies, want 2", shadow.count())
	}
}

func TestMirror_DeadShadowPercentAndStreamedUploads(t *testing.T) {
	b := startRecordingBackend(t, "main", nil)
	metrics := NewMetrics()
	snap, err := CompileWith("test.yaml", []byte(mirrorConfig(b.Addr, closedAddr(t), "")), Options{Log: zerolog.Nop(), Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := serveSnapshot(t, snap)
	expectStatus(t, get(t, gw, "/x"), 200, "a dead shadow changes nothing")
	waitFor(t, "the failed copy to be counted", func() bool { return counterValue(t, metrics.mirrored.WithLabelValues("r", "failed")) == 1 })

	// A body over server.buffer_requests streams to the upstream and is gone: not mirrored.
	req := fasthttp.AcquireRequest()
	req.Header.SetMethod("POST")
	req.SetRequestURI("http://" + gw + "/upload")
	req.SetBody(bytes.Repeat([]byte("u"), 2<<20))
	expectStatus(t, send(t, gw, req), 200, "a streamed upload")
	fasthttp.ReleaseRequest(req)
	if n := counterValue(t, metrics.mirrored.WithLabelValues("r", "skipped")); n != 1 {
		t.Errorf("skipped copies: %v, want 1", n)
	}

	shadow := startShadow(t)
	close(shadow.hold)
	gw2, _ := startGateway(t, mirrorConfig(b.Addr, shadow.addr, ", percent: 10, max_in_flight: 1000"))
	get := keepAliveGet(t, gw2)
	for range 1000 {
		get("/p")
	}
	waitFor(t, "the copies", func() bool { n := shadow.count(); return n >= 70 && n <= 130 })
}

func TestCompile_MirrorProblems(t *testing.T) {
	runProblemCases(t, []problemCase{{
		desc: "unknown upstream, bad percent and bound",
		yaml: strings.Replace(mirrorConfig("127.0.0.1:9", "127.0.0.1:9", ""), "{upstream: shadow}", "{upstream: shadw, percent: 0, max_in_flight: 0}", 1),
		want: []string{
			`test.yaml:9: routes[0].filters[0].mirror.upstream: unknown upstream "shadw"; did you mean "shadow"?`,
			`test.yaml:9: routes[0].filters[0].mirror.percent: must be more than 0 and at most 100`,
			`test.yaml:9: routes[0].filters[0].mirror.max_in_flight: must be 1 or more`,
		},
	}})
}
