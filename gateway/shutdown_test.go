package gateway

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

func TestRun_ShutdownDrainsInFlightRequestAndStopsAccepting(t *testing.T) {
	entered := make(chan struct{})
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		close(entered)
		time.Sleep(300 * time.Millisecond)
		ctx.WriteString("finished")
	})
	snap, err := Compile("test.yaml", []byte("server: {listen: \"127.0.0.1:0\", shutdown_timeout: 5s}\n"+oneRouteConfig("", backend)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrCh := make(chan net.Addr, 1)
	runDone := make(chan error, 1)
	go func() {
		runDone <- Run(ctx, snap, zerolog.New(testLogWriter{t}), io.Discard, func(a net.Addr) { addrCh <- a })
	}()
	gw := (<-addrCh).String()

	inFlight := make(chan *fasthttp.Response, 1)
	go func() {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + gw + "/slow")
		if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Errorf("in-flight request failed during shutdown: %v", err)
		}
		inFlight <- resp
	}()
	<-entered
	cancel() // what SIGTERM does in cmd/weir

	resp := <-inFlight
	if resp.StatusCode() != 200 || string(resp.Body()) != "finished" {
		t.Fatalf("in-flight request got %d %q, want 200 finished", resp.StatusCode(), resp.Body())
	}
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("Run returned %v, want nil after a graceful shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its in-flight request finished")
	}
	if c, err := net.DialTimeout("tcp", gw, time.Second); err == nil {
		c.Close()
		t.Fatal("the listener still accepts connections after shutdown")
	}
}
