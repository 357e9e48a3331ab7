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

// runGateway starts Run on a loopback port with a backend that blocks each request until release is
// closed. It returns the gateway address, the cancel func (what SIGTERM does in cmd/weir), Run's
// result, and a channel that yields once a request has reached the backend.
func runGateway(t *testing.T, shutdownTimeout string, release chan struct{}) (string, context.CancelFunc, chan error, chan struct{}) {
	t.Helper()
	entered := make(chan struct{}, 1)
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		entered <- struct{}{}
		<-release
		ctx.WriteString("finished")
	})
	path := writeConfigFile(t, "server: {listen: \"127.0.0.1:0\", shutdown_timeout: "+shutdownTimeout+"}\n"+
		"admin: {listen: \"127.0.0.1:0\"}\n"+oneRouteConfig("", backend))
	ctx, cancel := context.WithCancel(context.Background())
	addrCh := make(chan net.Addr, 1)
	runDone := make(chan error, 1)
	go func() {
		runDone <- Run(ctx, RunConfig{Path: path, Log: zerolog.New(testLogWriter{t}), AccessOut: io.Discard,
			Ready: func(l Listeners) { addrCh <- l.HTTP }})
	}()
	return (<-addrCh).String(), cancel, runDone, entered
}

// sendAsync sends a GET and delivers the response (or nil on a transport error).
func sendAsync(gw string) chan *fasthttp.Response {
	out := make(chan *fasthttp.Response, 1)
	go func() {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + gw + "/slow")
		if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
			out <- nil
			return
		}
		out <- resp
	}()
	return out
}

// waitRefused waits until the gateway stops accepting connections.
func waitRefused(t *testing.T, gw string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", gw, 100*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
	}
	t.Fatal("the listener still accepts connections after shutdown began")
}

func TestRun_ShutdownDrainsInFlightRequestAndStopsAccepting(t *testing.T) {
	release := make(chan struct{})
	gw, cancel, runDone, entered := runGateway(t, "5s", release)
	inFlight := sendAsync(gw)
	<-entered
	cancel()
	// The request is still held by the backend while the gateway stops accepting.
	waitRefused(t, gw)
	select {
	case err := <-runDone:
		t.Fatalf("Run returned (%v) while a request was still in flight", err)
	default:
	}
	close(release)
	if resp := <-inFlight; resp == nil || resp.StatusCode() != 200 || string(resp.Body()) != "finished" {
		t.Fatalf("in-flight request did not complete with 200 finished: %v", resp)
	}
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("Run returned %v, want nil after a graceful shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its in-flight request finished")
	}
}

func TestRun_ShutdownTimeoutEndsRunEvenWithARequestStuck(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	gw, cancel, runDone, entered := runGateway(t, "200ms", release)
	sendAsync(gw)
	<-entered
	cancel()
	select {
	case err := <-runDone:
		if err != nil {
			t.Fatalf("Run returned %v; after shutdown_timeout it must return nil (the process exits 0)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run waited past shutdown_timeout for a stuck request")
	}
}
