package gateway

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Streaming end to end: net/http upstreams that stream, a net/http client reading through weir.

// startHTTPBackend serves h with net/http on 127.0.0.1 until the test ends.
func startHTTPBackend(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// bodyPattern is a deterministic body of any length, so neither end holds it whole.
type bodyPattern struct{ n, off int64 }

func (p *bodyPattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n-p.off {
		b = b[:p.n-p.off]
	}
	for i := range b {
		x := p.off + int64(i)
		b[i] = byte(x*31 + x>>8)
	}
	p.off += int64(len(b))
	return len(b), nil
}

func digest(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// streamGet GETs url over a fresh connection; the body is closed when the test ends.
func streamGet(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := noKeepAlive().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func noKeepAlive() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DisableCompression: true}}
}

// Each event must reach the client before the upstream sends the next: the upstream waits for the
// client to confirm it, so a gateway that buffered the stream (even one event) would stall here
// instead of passing.
func TestStreaming_ServerSentEventsArriveOneByOne(t *testing.T) {
	received := make(chan int)
	b := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		for i := range 10 {
			fmt.Fprintf(w, "id: %d\ndata: event %d\n\n", i, i)
			w.(http.Flusher).Flush()
			select {
			case got := <-received:
				if got != i {
					t.Errorf("client confirmed event %d, want %d", got, i)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("event %d did not reach the client: the stream is buffered", i)
				return
			}
		}
	}))
	gw, _ := startGateway(t, oneRouteConfig("", b))
	resp := streamGet(t, "http://"+gw+"/events")
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.ContentLength != -1 {
		t.Fatalf("Content-Type %q, length %d; want text/event-stream of unknown length", ct, resp.ContentLength)
	}
	r := bufio.NewReader(resp.Body)
	for i := range 10 {
		want := []string{fmt.Sprintf("id: %d\n", i), fmt.Sprintf("data: event %d\n", i), "\n"}
		for _, w := range want {
			line, err := r.ReadString('\n')
			if err != nil || line != w {
				t.Fatalf("event %d: read %q, %v; want %q", i, line, err, w)
			}
		}
		received <- i
	}
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Fatalf("after the last event: %q, %v; want a clean end", rest, err)
	}
}

// A stream that outlives the attempt timeout and server.write_timeout passes intact: the timeout
// bounds the wait for the head, write_timeout each write.
func TestStreaming_LongStreamOutlivesTimeoutAndWriteTimeout(t *testing.T) {
	b := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 8 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	gw, _ := startGateway(t, "server: {write_timeout: 300ms}\n"+oneRouteConfig("    timeout: 300ms\n", b))
	resp := streamGet(t, "http://"+gw+"/events")
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("stream cut after %q: %v", body, err)
	}
	if want := "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\ndata: 5\n\ndata: 6\n\ndata: 7\n\n"; string(body) != want {
		t.Fatalf("got %q, want %q", body, want)
	}
}

// A stream that goes silent past stream_idle_timeout is cut: the client sees the body end without
// its last chunk (no fake clean ending) and the upstream connection is closed.
func TestStreaming_SilentStreamIsCutAfterStreamIdleTimeout(t *testing.T) {
	upstreamGone := make(chan struct{})
	b := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: hello\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			close(upstreamGone)
		case <-time.After(10 * time.Second):
		}
	}))
	gw, srv := startGateway(t, oneRouteConfig("    stream_idle_timeout: 200ms\n", b))
	resp := streamGet(t, "http://"+gw+"/events")
	body, err := io.ReadAll(resp.Body)
	if string(body) != "data: hello\n\n" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read %q, %v; want the first event, then an unexpected EOF", body, err)
	}
	expectUpstreamFreed(t, srv, upstreamGone, "the upstream connection stayed open after the stream was cut")
}

// A 300 MB download with a Content-Length arrives whole, with its length, while weir's heap stays
// far below the body's size.
func TestStreaming_LargeDownloadArrivesWholeWithoutBeingHeld(t *testing.T) {
	const size = 300 << 20
	b := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = io.Copy(w, &bodyPattern{n: size})
	}))
	want, _, _ := digest(&bodyPattern{n: size})
	gw, _ := startGateway(t, oneRouteConfig("", b))

	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	resp := streamGet(t, "http://"+gw+"/file")
	got, n, err := digest(resp.Body)
	close(stop)
	<-sampled
	if err != nil || n != size || got != want || resp.ContentLength != size {
		t.Fatalf("got %d bytes (Content-Length %d), digest %s, err %v; want %d bytes, digest %s", n, resp.ContentLength, got, err, size, want)
	}
	// The test process holds backend, gateway and client: all three stream.
	if p := peak.Load(); p > 96<<20 {
		t.Errorf("heap in use peaked at %d MiB during a %d MiB download", p>>20, size>>20)
	}
}

// Uploads past server.buffer_requests are relayed as they arrive: a 200 MB upload with a
// Content-Length and a chunked one arrive whole.
func TestStreaming_LargeUploadsArriveWhole(t *testing.T) {
	b := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum, n, err := digest(r.Body)
		if err != nil {
			w.WriteHeader(500)
			return
		}
		fmt.Fprintf(w, "%d %s %d", n, sum, r.ContentLength)
	}))
	gw, _ := startGateway(t, "server: {max_body_bytes: 1GiB}\n"+oneRouteConfig("", b))
	for _, tc := range []struct {
		desc    string
		size    int64
		chunked bool
	}{
		{"200 MB with a Content-Length", 200 << 20, false},
		{"20 MB chunked", 20 << 20, true},
		{"100 KB chunked (buffered)", 100 << 10, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var body io.Reader = &bodyPattern{n: tc.size}
			if tc.chunked {
				body = io.MultiReader(body) // hides the length: net/http sends it chunked
			}
			req, _ := http.NewRequest("POST", "http://"+gw+"/upload", body)
			if !tc.chunked {
				req.ContentLength = tc.size
			}
			resp, err := noKeepAlive().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			want, _, _ := digest(&bodyPattern{n: tc.size})
			fields := strings.Fields(string(got))
			if resp.StatusCode != 200 || len(fields) != 3 || fields[0] != strconv.FormatInt(tc.size, 10) || fields[1] != want {
				t.Fatalf("backend answered %d %q; want %d bytes with digest %s", resp.StatusCode, got, tc.size, want)
			}
			// A buffered chunked body is forwarded with its length; a streamed one stays chunked.
			if tc.chunked && tc.size < 1<<20 && fields[2] != strconv.FormatInt(tc.size, 10) {
				t.Errorf("buffered chunked upload arrived with Content-Length %s, want %d", fields[2], tc.size)
			}
		})
	}
}

// A body over max_body_bytes is refused with 413, whether it says so up front or only as it goes.
func TestStreaming_UploadOverMaxBodyBytesIs413(t *testing.T) {
	var reached atomic.Int32
	var seen lockedBuffer // which requests reached the backend, for the failure message
	b := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(&seen, "%s %s chunked=%q content-length=%d\n", r.Method, r.URL, r.Header.Get("X-Chunked"), r.ContentLength)
		// Only this test's uploads count: a request left over from an earlier test (a mirror's copy,
		// a retry) may reach a backend that took over its port.
		if r.Header.Get("X-Chunked") != "" {
			reached.Add(1)
		}
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	gw, _ := startGateway(t, "server: {max_body_bytes: 2MiB, buffer_requests: 64KiB}\n"+oneRouteConfig("", b))
	for _, chunked := range []bool{false, true} {
		var body io.Reader = &bodyPattern{n: 3 << 20}
		if chunked {
			body = io.MultiReader(body)
		}
		req, _ := http.NewRequest("POST", "http://"+gw+"/upload", body)
		req.Header.Set("X-Chunked", fmt.Sprint(chunked))
		if !chunked {
			req.ContentLength = 3 << 20
		}
		resp, err := noKeepAlive().Do(req)
		if err != nil {
			// weir may answer and close before the client finished sending.
			var ne *net.OpError
			if !errors.As(err, &ne) {
				t.Fatalf("chunked=%v: %v", chunked, err)
			}
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Errorf("chunked=%v: status %d, want 413", chunked, resp.StatusCode)
		}
	}
	if n := reached.Load(); n > 1 {
		// Only the chunked one can have started upstream before its size was known.
		t.Errorf("backend reached %d times, want at most once:\n%s", n, seen.String())
	}
}

// A client that disconnects mid-stream frees the upstream connection: weir closes it rather than
// pooling it half-read, and counts no request in flight.
func TestStreaming_ClientDisconnectClosesTheUpstreamConnection(t *testing.T) {
	upstreamGone := make(chan struct{})
	b := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		chunk := make([]byte, 32<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				close(upstreamGone)
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				close(upstreamGone)
				return
			case <-time.After(time.Millisecond):
			}
		}
	}))
	gw, srv := startGateway(t, oneRouteConfig("", b))
	conn, err := net.Dial("tcp", gw)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(conn, "GET /forever HTTP/1.1\r\nHost: h\r\n\r\n")
	if _, err := io.ReadFull(conn, make([]byte, 200<<10)); err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	conn.Close()
	expectUpstreamFreed(t, srv, upstreamGone, "the upstream kept streaming to a client that left")
}

// A client that leaves a silent event stream frees its upstream connection at once: weir watches
// the client's socket instead of noticing at the next event or after stream_idle_timeout (5 min by
// default), over HTTP and HTTPS alike. The TLS client vanishes without a close_notify alert.
func TestStreaming_ClientLeavingASilentStreamFreesTheUpstreamAtOnce(t *testing.T) {
	silent := func(gone chan struct{}) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: hello\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			close(gone)
		})
	}
	leave := func(t *testing.T, conn net.Conn, raw net.Conn) {
		t.Helper()
		fmt.Fprint(conn, "GET /events HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
		br := bufio.NewReader(conn)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the stream: %v", err)
			}
			if strings.HasPrefix(line, "data: hello") {
				break
			}
		}
		raw.Close()
	}
	t.Run("http", func(t *testing.T) {
		gone := make(chan struct{})
		gw, srv := startGateway(t, oneRouteConfig("", startHTTPBackend(t, silent(gone))))
		conn, err := net.Dial("tcp", gw)
		if err != nil {
			t.Fatal(err)
		}
		leave(t, conn, conn)
		expectUpstreamFreed(t, srv, gone, "the upstream stayed connected to a client that left")
	})
	t.Run("https", func(t *testing.T) {
		gone := make(chan struct{})
		f := newTLSFiles(t)
		cert, key := f.issue(t, "api", "api.example.com")
		snap := compileTLS(t, tlsServerBlock("", [2]string{cert, key})+oneRouteConfig("", startHTTPBackend(t, silent(gone))))
		_, secure, srv := serveBoth(t, snap)
		raw, err := net.Dial("tcp", secure)
		if err != nil {
			t.Fatal(err)
		}
		leave(t, tls.Client(raw, f.clientConfig("api.example.com")), raw)
		expectUpstreamFreed(t, srv, gone, "the upstream stayed connected to a TLS client that left")
	})
}

// A connection that received a streamed response serves the next request normally: watching the
// client for a hang-up leaves nothing behind on its connection (no read consumed, no deadline).
func TestStreaming_KeepAliveConnectionServesRequestsAfterAStream(t *testing.T) {
	b := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %s %d\n\n", r.URL.Path, i)
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
	}))
	gw, _ := startGateway(t, oneRouteConfig("", b))
	client := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxConnsPerHost: 1}}
	var conns atomic.Int32
	for _, path := range []string{"/one", "/two", "/three"} {
		req, _ := http.NewRequest("GET", "http://"+gw+path, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if !info.Reused {
					conns.Add(1)
				}
			},
		}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := fmt.Sprintf("data: %[1]s 0\n\ndata: %[1]s 1\n\ndata: %[1]s 2\n\n", path)
		if err != nil || string(body) != want {
			t.Fatalf("GET %s: %q, %v; want %q", path, body, err, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("the three streams used %d connections, want one kept alive", n)
	}
}

// expectUpstreamFreed waits for the upstream handler to see its connection close (gone), then for
// the backend pool's only target to have no request in flight.
func expectUpstreamFreed(t *testing.T, srv *Server, gone <-chan struct{}, failure string) {
	t.Helper()
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal(failure)
	}
	target := srv.Snapshot().Pools()["backend"].Targets[0]
	waitFor(t, "the target to have no request in flight", func() bool { return target.InFlight() == 0 })
}

// An upstream that dies mid-body ends the client's response abruptly: the connection closes
// before the declared length, or without the last chunk.
func TestStreaming_UpstreamDyingMidBodyCutsTheClientsResponse(t *testing.T) {
	for _, tc := range []struct{ desc, head, part, mustNotEnd string }{
		{"Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", strings.Repeat("x", 5000), ""},
		{"chunked", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n", "6\r\ndata: \r\n", "0\r\n\r\n"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			b := startRawTCP(t, func(c net.Conn) {
				defer c.Close()
				_, _ = bufio.NewReader(c).ReadString('\n')
				fmt.Fprint(c, tc.head+tc.part)
				time.Sleep(100 * time.Millisecond)
			})
			gw, _ := startGateway(t, oneRouteConfig("    buffer_responses: 1KiB\n", b))
			got, closed := exchangeUntilClose(t, gw, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n", 5*time.Second)
			if !closed {
				t.Fatalf("connection stayed open after the upstream died; got %q", got)
			}
			head, body, _ := strings.Cut(got, "\r\n\r\n")
			if !strings.HasPrefix(head, "HTTP/1.1 200") {
				t.Fatalf("got %q", got)
			}
			if tc.mustNotEnd == "" && len(body) >= 100000 {
				t.Errorf("client got %d bytes of a 100000-byte body the upstream cut at 5000", len(body))
			}
			if tc.mustNotEnd != "" && strings.Contains(body, tc.mustNotEnd) {
				t.Errorf("client got a clean chunked ending for a cut stream: %q", body)
			}
		})
	}
}

// A chunked answer that ends within buffer_responses is buffered like any small one: filters see
// it whole and it leaves with an exact Content-Length.
func TestStreaming_SmallChunkedResponseLeavesWithItsLength(t *testing.T) {
	b := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"part":1,`)
		w.(http.Flusher).Flush()
		fmt.Fprint(w, `"part2":2}`)
	}))
	gw, _ := startGateway(t, oneRouteConfig("", b))
	resp := streamGet(t, "http://"+gw+"/x")
	body, _ := io.ReadAll(resp.Body)
	if string(body) != `{"part":1,"part2":2}` || resp.ContentLength != int64(len(body)) {
		t.Fatalf("got %q with Content-Length %d, want the whole body with its length", body, resp.ContentLength)
	}
}

// The json filter never forces an event stream or a large body into memory: they pass unchanged.
func TestStreaming_JSONFilterPassesStreamsThrough(t *testing.T) {
	large := `{"data":{"password":"x","pad":"` + strings.Repeat("p", 2<<20) + `"}}`
	b := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"password\":\"x\"}\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(large)))
		fmt.Fprint(w, large)
	}))
	gw, _ := startGateway(t, jsonRouteConfig(b, "          deny: [password]\n"))
	for path, want := range map[string]string{"/events": "data: {\"password\":\"x\"}\n\n", "/large": large} {
		resp, err := noKeepAlive().Get("http://" + gw + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != want {
			t.Errorf("%s: got %d bytes (%v), want the upstream's %d unchanged", path, len(body), err, len(want))
		}
	}
}
