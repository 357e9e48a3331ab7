package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// Helpers shared by the end-to-end tests: every test talks real HTTP over loopback TCP to a real
// gateway listener in front of real backend servers.

// startBackend serves h on an ephemeral 127.0.0.1 port until the test ends and returns its address.
func startBackend(t testing.TB, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h, NoDefaultServerHeader: true, NoDefaultContentType: true, NoDefaultDate: true}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startGateway compiles config (which must be valid) and serves it on an ephemeral 127.0.0.1 port
// until the test ends, ignoring server.listen. It returns the gateway's address and server.
func startGateway(t testing.TB, config string) (string, *Server) {
	t.Helper()
	snap, err := Compile("test.yaml", []byte(config))
	if err != nil {
		t.Fatalf("config does not compile:\n%v\n--- config:\n%s", err, config)
	}
	return serveSnapshot(t, snap)
}

func serveSnapshot(t testing.TB, snap *Snapshot) (string, *Server) {
	return serveSnapshotLogged(t, snap, io.Discard)
}

// serveSnapshotLogged is serveSnapshot with the access log written to accessOut.
func serveSnapshotLogged(t testing.TB, snap *Snapshot, accessOut io.Writer) (string, *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln.Addr().String(), serveOn(t, snap, ln, accessOut)
}

// serveOn serves snap on ln until the test ends.
func serveOn(t testing.TB, snap *Snapshot, ln net.Listener, accessOut io.Writer) *Server {
	t.Helper()
	srv := NewServer(snap, zerolog.New(testLogWriter{t}), accessOut)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// testLogWriter sends the gateway's event log to the test log, shown only when a test fails.
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// writeConfigFile writes content to config.yaml in a fresh directory and returns its path.
func writeConfigFile(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// oneRouteConfig is a config with a single any-host, any-method route /{rest:*} to one upstream with
// the given targets (addresses). extra is appended to the upstream's settings (indented 4 spaces).
func oneRouteConfig(extra string, targets ...string) string {
	var b strings.Builder
	b.WriteString("upstreams:\n  backend:\n    targets:\n")
	for _, a := range targets {
		fmt.Fprintf(&b, "      - url: http://%s\n", a)
	}
	b.WriteString(extra)
	b.WriteString("routes:\n  - name: all\n    match: {path: \"/{rest:*}\"}\n    upstream: backend\n")
	return b.String()
}

// get sends a GET for uri to the gateway at addr and returns the response (released at test end).
func get(t testing.TB, addr, uri string) *fasthttp.Response {
	t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI("http://" + addr + uri)
	return send(t, addr, req)
}

// send sends req to the gateway at addr over a fresh client and returns the response.
func send(t testing.TB, addr string, req *fasthttp.Request) *fasthttp.Response {
	t.Helper()
	resp := fasthttp.AcquireResponse()
	t.Cleanup(func() { fasthttp.ReleaseResponse(resp) })
	c := &fasthttp.HostClient{Addr: addr, NoDefaultUserAgentHeader: true, DisablePathNormalizing: true, ReadBufferSize: 64 << 10}
	if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatalf("request to gateway failed: %v", err)
	}
	return resp
}

// startRawTCP accepts connections on an ephemeral 127.0.0.1 port until the test ends and hands each to
// handle in its own goroutine (handle closes it). For backends that must misbehave below HTTP.
func startRawTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln.Addr().String()
}

// rawExchange writes raw bytes to addr and returns everything the server sends back before it closes
// the connection or goes quiet for 500ms.
func rawExchange(t testing.TB, addr, raw string) string {
	t.Helper()
	conn := dialAndWrite(t, addr, raw)
	defer conn.Close()
	var out strings.Builder
	r := bufio.NewReader(conn)
	buf := make([]byte, 4096)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.String()
		}
	}
}

// dialAndWrite opens a connection to addr and writes raw on it; the caller closes it.
func dialAndWrite(t testing.TB, addr, raw string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, raw); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	return conn
}

// statusOf parses the status code of the first response in a raw HTTP exchange.
func statusOf(t testing.TB, raw string) int {
	t.Helper()
	var code int
	if _, err := fmt.Sscanf(raw, "HTTP/1.1 %d", &code); err != nil {
		t.Fatalf("no HTTP status line in %q", raw)
	}
	return code
}

// lockedBuffer collects a log the server writes from its goroutines while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSpace(b.buf.String()), "\n")
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
