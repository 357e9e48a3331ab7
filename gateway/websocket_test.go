package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"
)

// WebSocket end to end: a coder/websocket echo server behind weir, a coder/websocket client in front.

// startEchoServer echoes every message back with its type; handshakes counts the upgrade requests
// that reached it.
func startEchoServer(t *testing.T) (addr string, handshakes *atomic.Int32) {
	t.Helper()
	handshakes = new(atomic.Int32)
	addr = startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handshakes.Add(1) // before answering, so the client cannot see the 101 before the count
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(4 << 20)
		ctx := context.Background()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	}))
	return addr, handshakes
}

func dialWS(t *testing.T, url string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, nil)
	if err == nil {
		c.SetReadLimit(4 << 20)
	}
	return c, resp, err
}

// openTunnel dials a WebSocket through the gateway at url; it is closed when the test ends.
func openTunnel(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, _, err := dialWS(t, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// expectTunnelClosed waits up to 5 s for the next read on c to fail, as it does once weir closed
// the tunnel.
func expectTunnelClosed(t *testing.T, c *websocket.Conn, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if _, _, err := c.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("%s still open after %v (read: %v)", what, time.Since(start), err)
	}
}

// echo sends msg and checks it comes back unchanged with its type.
func echo(t *testing.T, c *websocket.Conn, typ websocket.MessageType, msg []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, typ, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	gotType, got, err := c.Read(ctx)
	if err != nil || gotType != typ || string(got) != string(msg) {
		t.Fatalf("echo of a %v message of %d bytes: got %v of %d bytes, %v", typ, len(msg), gotType, len(got), err)
	}
}

func TestWebSocket_EchoPingAndCloseThroughTheGateway(t *testing.T) {
	backend, handshakes := startEchoServer(t)
	m := NewMetrics()
	snap, err := CompileWith("test.yaml", []byte(oneRouteConfig("", backend)), Options{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := serveSnapshot(t, snap)
	m.serve(func() *Snapshot { return snap })

	c, resp, err := dialWS(t, "ws://"+gw+"/ws")
	if err != nil {
		t.Fatalf("handshake through the gateway: %v", err)
	}
	if resp.StatusCode != 101 || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("101 as relayed: %d %v", resp.StatusCode, resp.Header)
	}
	echo(t, c, websocket.MessageText, []byte("hello through weir"))
	echo(t, c, websocket.MessageBinary, []byte{0, 1, 2, 255, 254})
	echo(t, c, websocket.MessageBinary, make([]byte, 1<<20)) // spans many reads and writes
	// A ping needs the peer's pong: coder/websocket answers pings while a Read is running.
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_, _, _ = c.Read(context.Background())
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := c.Ping(ctx); err != nil {
		t.Errorf("ping through the tunnel: %v", err)
	}
	cancel()
	if n := handshakes.Load(); n != 1 {
		t.Errorf("upstream accepted %d handshakes, want 1", n)
	}
	metrics := gatherText(t, m)
	for _, want := range []string{`weir_websocket_tunnels_open{route="all"} 1`, `weir_websocket_bytes_total{direction="to_upstream",route="all"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The close handshake goes through: Close returns nil only once the peer's close frame came back.
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close handshake: %v", err)
	}
	<-readDone
	waitFor(t, "the tunnel gauge to fall to 0", func() bool {
		return strings.Contains(gatherText(t, m), `weir_websocket_tunnels_open{route="all"} 0`)
	})
}

// gatherText renders the registry as /metrics would.
func gatherText(t *testing.T, m *Metrics) string {
	t.Helper()
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			labels := make([]string, 0, len(mt.GetLabel()))
			for _, l := range mt.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
			fmt.Fprintf(&b, "%s{%s} %g\n", f.GetName(), strings.Join(labels, ","), v)
		}
	}
	return b.String()
}

// The route's filters run on the handshake: a rate limit answers 429, and no upgrade reaches the
// upstream.
func TestWebSocket_RateLimitAppliesToTheHandshake(t *testing.T) {
	backend, handshakes := startEchoServer(t)
	gw, _ := startGateway(t, filterConfig(backend, "      - rate_limit: {rate: 1, per: 1m, burst: 1}\n"))
	c, _, err := dialWS(t, "ws://"+gw+"/ws")
	if err != nil {
		t.Fatalf("first handshake: %v", err)
	}
	defer c.CloseNow()
	_, resp, err := dialWS(t, "ws://"+gw+"/ws")
	if err == nil || resp == nil || resp.StatusCode != 429 {
		t.Fatalf("second handshake: %v, %+v; want a 429", err, resp)
	}
	if n := handshakes.Load(); n != 1 {
		t.Errorf("upstream accepted %d handshakes, want 1", n)
	}
}

// An open tunnel no longer needs the snapshot that upgraded it: a reload leaves it working.
func TestWebSocket_TunnelSurvivesReload(t *testing.T) {
	backend, _ := startEchoServer(t)
	v1 := reloadConfig("v1", backend, "/{rest:*}")
	path := writeConfigFile(t, v1)
	g := startRun(t, path)
	c := openTunnel(t, "ws://"+g.public+"/ws")
	echo(t, c, websocket.MessageText, []byte("before"))
	v2 := reloadConfig("v2", backend, "/other/{rest:*}", "/{rest:*}")
	if err := os.WriteFile(path, []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	g.waitApplied(t, v2)
	echo(t, c, websocket.MessageText, []byte("after the reload"))
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close after reload: %v", err)
	}
}

// A tunnel through which nothing passes for websocket.idle_timeout is closed.
func TestWebSocket_IdleTunnelIsClosed(t *testing.T) {
	backend, _ := startEchoServer(t)
	cfg := oneRouteConfig("", backend) + "    websocket: {idle_timeout: 200ms}\n"
	gw, _ := startGateway(t, cfg)
	c := openTunnel(t, "ws://"+gw+"/ws")
	echo(t, c, websocket.MessageText, []byte("once"))
	expectTunnelClosed(t, c, "idle tunnel")
}

// Shutdown gives open tunnels the rest of the grace period, then closes them.
func TestWebSocket_ShutdownClosesTunnels(t *testing.T) {
	backend, _ := startEchoServer(t)
	snap, err := Compile("test.yaml", []byte(oneRouteConfig("", backend)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(snap, zerolog.New(testLogWriter{t}), io.Discard)
	go func() { _ = srv.Serve(ln) }()
	c := openTunnel(t, "ws://"+ln.Addr().String()+"/ws")
	echo(t, c, websocket.MessageText, []byte("open"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_ = srv.Shutdown(ctx)
	expectTunnelClosed(t, c, "tunnel after shutdown")
	waitFor(t, "no tunnel to be tracked after shutdown", func() bool { return srv.tunnels.count() == 0 })
}

// Only WebSocket upgrades keep their Upgrade: h2c is stripped as any hop-by-hop header, and a route
// with websocket.enabled: false forwards a WebSocket handshake as a plain request.
func TestWebSocket_OtherUpgradesAreStripped(t *testing.T) {
	seen := make(chan http.Header, 2)
	backend := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		fmt.Fprint(w, "plain")
	}))
	for _, tc := range []struct{ desc, cfg, upgrade string }{
		{"h2c", oneRouteConfig("", backend), "h2c"},
		{"websocket on a route that turned it off", oneRouteConfig("", backend) + "    websocket: {enabled: false}\n", "websocket"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			gw, _ := startGateway(t, tc.cfg)
			resp, body := exchange(t, gw, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: "+tc.upgrade+
				"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
			if resp.StatusCode != 200 || body != "plain" {
				t.Fatalf("got %d %q, want the upstream's plain 200", resp.StatusCode, body)
			}
			h := <-seen
			for _, k := range []string{"Upgrade", "Connection"} {
				if v := h.Get(k); v != "" {
					t.Errorf("backend received %s: %q", k, v)
				}
			}
		})
	}
}

// An upstream that answers a WebSocket handshake with something other than 101 is relayed as a
// normal response, and a 101 nobody asked for is a 502.
func TestWebSocket_Non101AnswersAreRelayed(t *testing.T) {
	backend := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(403)
		fmt.Fprint(w, "no sockets for you")
	}))
	gw, _ := startGateway(t, oneRouteConfig("", backend))
	_, resp, err := dialWS(t, "ws://"+gw+"/ws")
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("handshake: %v, %+v; want the upstream's 403", err, resp)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "no sockets for you" {
		t.Errorf("body %q", body)
	}

	rogue := startRawTCP(t, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		fmt.Fprint(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		time.Sleep(200 * time.Millisecond)
	})
	gw2, _ := startGateway(t, oneRouteConfig("", rogue))
	r2, body2 := exchange(t, gw2, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
	checkJSONError(t, r2, body2, 502)
}
