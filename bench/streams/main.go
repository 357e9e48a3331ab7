// Command streams is the backend and the clients of weir's streaming benchmark (bench/streams.sh):
// Server-Sent Events latency, large downloads, WebSocket echo and the memory held by slow downloads and
// idle streams. Every client checks what it received and exits non-zero when anything is missing, so a
// proxy that buffers, truncates or drops a stream fails the benchmark instead of looking fast.
//
//	streams backend  -listen ADDR
//	streams sse      -url URL -streams S -events N -interval D
//	streams download -url URL -size BYTES [-conns C] [-rate BYTES_PER_S]
//	streams ws       -url URL -conns C -duration D -size BYTES
//	streams idle     -url URL -kind sse|ws -n N -pid PID
//
// The backend is a net/http server:
//
//	GET /sse?events=N&interval=D  an event stream: N events D apart, each "data: <unix ns>" written and
//	                              flushed at that time; events=0 sends one event and then holds the stream
//	                              open, silent, until the client goes
//	GET /bytes?size=N             N bytes with Content-Length
//	GET /ws                       a WebSocket echoing every message
//
// Each client prints one line, "RESULT key=value ...", for bench/streams.sh.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: streams backend|sse|download|ws|idle [flags]")
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"backend": backendCmd, "sse": sseCmd, "download": downloadCmd, "ws": wsCmd, "idle": idleCmd,
	}
	cmd, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "streams: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	if err := cmd(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "streams %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// ---- backend ----

func backendCmd(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:18180", "address to listen on")
	fs.Parse(args)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sse", serveSSE)
	mux.HandleFunc("GET /bytes", serveBytes)
	mux.HandleFunc("GET /ws", serveWS)
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

func serveSSE(w http.ResponseWriter, r *http.Request) {
	events, err1 := strconv.Atoi(r.URL.Query().Get("events"))
	interval, err2 := time.ParseDuration(r.URL.Query().Get("interval"))
	if err1 != nil || err2 != nil || events < 0 {
		http.Error(w, "want events=N&interval=D", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher := w.(http.Flusher)
	if events == 0 {
		fmt.Fprintf(w, "data: %d\n\n", time.Now().UnixNano())
		flusher.Flush()
		<-r.Context().Done()
		return
	}
	next := time.Now()
	for i := 0; i < events; i++ {
		if _, err := fmt.Fprintf(w, "id: %d\ndata: %d\n\n", i, time.Now().UnixNano()); err != nil {
			return
		}
		flusher.Flush()
		next = next.Add(interval)
		time.Sleep(time.Until(next))
	}
}

var block = bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB

func serveBytes(w http.ResponseWriter, r *http.Request) {
	size, err := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
	if err != nil || size < 0 {
		http.Error(w, "want size=N", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	for size > 0 {
		n := min(size, int64(len(block)))
		if _, err := w.Write(block[:n]); err != nil {
			return
		}
		size -= n
	}
}

func serveWS(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
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
}

// ---- clients ----

// httpClient has no connection limit and no compression, so every stream is its own connection and
// the bytes counted are the bytes relayed.
var httpClient = &http.Client{Transport: &http.Transport{
	DisableCompression: true, MaxIdleConnsPerHost: 4096, ForceAttemptHTTP2: false,
	DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
}}

func get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return resp, nil
}

// readEvent reads one event's data line (the "data: " field) and the blank line ending the event.
func readEvent(br *bufio.Reader) (string, error) {
	var data string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return data, nil
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			data = v
		}
	}
}

func sseCmd(args []string) error {
	fs := flag.NewFlagSet("sse", flag.ExitOnError)
	url := fs.String("url", "", "proxy URL of the backend's /sse")
	streams := fs.Int("streams", 1, "concurrent streams")
	events := fs.Int("events", 100, "events per stream (the first is not counted: it arrives with the connection's setup)")
	interval := fs.Duration("interval", 10*time.Millisecond, "time between a stream's events")
	fs.Parse(args)
	full := fmt.Sprintf("%s?events=%d&interval=%s", *url, *events, *interval)
	lat := make([][]time.Duration, *streams)
	errs := make(chan error, *streams)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range *streams {
		wg.Go(func() {
			resp, err := get(context.Background(), full)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				errs <- fmt.Errorf("Content-Type %q", ct)
				return
			}
			br := bufio.NewReader(resp.Body)
			for got := range *events {
				data, err := readEvent(br)
				if err != nil {
					errs <- fmt.Errorf("after %d events: %w", got, err)
					return
				}
				sent, err := strconv.ParseInt(data, 10, 64)
				if err != nil {
					errs <- fmt.Errorf("event data %q", data)
					return
				}
				if got == 0 {
					continue // arrives with the connection's setup: not counted
				}
				lat[i] = append(lat[i], time.Since(time.Unix(0, sent)))
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	q := func(p float64) int64 { return all[int(p*float64(len(all)-1))].Microseconds() }
	fmt.Printf("RESULT events=%d seconds=%.3f p50_us=%d p99_us=%d max_us=%d\n",
		len(all), time.Since(start).Seconds(), q(0.5), q(0.99), all[len(all)-1].Microseconds())
	return nil
}

func downloadCmd(args []string) error {
	fs := flag.NewFlagSet("download", flag.ExitOnError)
	url := fs.String("url", "", "proxy URL of the backend's /bytes")
	size := fs.Int64("size", 1<<30, "bytes per download")
	conns := fs.Int("conns", 1, "concurrent downloads")
	rate := fs.Int64("rate", 0, "bytes per second each client reads at most (0: as fast as it can)")
	fs.Parse(args)
	full := fmt.Sprintf("%s?size=%d", *url, *size)
	errs := make(chan error, *conns)
	var wg sync.WaitGroup
	start := time.Now()
	for range *conns {
		wg.Go(func() {
			resp, err := get(context.Background(), full)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var src io.Reader = resp.Body
			if *rate > 0 {
				src = &paced{r: resp.Body, rate: *rate, start: time.Now()}
			}
			n, err := io.CopyBuffer(io.Discard, src, make([]byte, 64<<10))
			if err == nil && n != *size {
				err = fmt.Errorf("got %d bytes, want %d", n, *size)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	total := *size * int64(*conns)
	fmt.Printf("RESULT bytes=%d seconds=%.3f gbytes_per_s=%.3f\n", total, secs, float64(total)/secs/1e9)
	return nil
}

// paced reads no faster than rate bytes per second on average since start: a slow client.
type paced struct {
	r     io.Reader
	rate  int64
	start time.Time
	read  int64
}

func (p *paced) Read(b []byte) (int, error) {
	if ahead := time.Duration(p.read*int64(time.Second)/p.rate) - time.Since(p.start); ahead > 0 {
		time.Sleep(ahead)
	}
	n, err := p.r.Read(b[:min(len(b), 16<<10)])
	p.read += int64(n)
	return n, err
}

func wsCmd(args []string) error {
	fs := flag.NewFlagSet("ws", flag.ExitOnError)
	url := fs.String("url", "", "proxy URL of the backend's /ws (ws://...)")
	conns := fs.Int("conns", 64, "concurrent WebSockets")
	duration := fs.Duration("duration", 5*time.Second, "how long each sends and reads echoes")
	size := fs.Int("size", 128, "message size in bytes")
	fs.Parse(args)
	msg := bytes.Repeat([]byte("m"), *size)
	var echoes atomic.Int64
	errs := make(chan error, *conns)
	ctx := context.Background()
	sockets := make([]*websocket.Conn, *conns)
	for i := range sockets {
		c, err := dialWS(ctx, *url)
		if err != nil {
			return err
		}
		defer c.CloseNow()
		sockets[i] = c
	}
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(*duration)
	for _, c := range sockets {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
					errs <- err
					return
				}
				_, got, err := c.Read(ctx)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, msg) {
					errs <- errors.New("echo differs from the message sent")
					return
				}
				echoes.Add(1)
			}
			c.Close(websocket.StatusNormalClosure, "")
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("RESULT echoes=%d seconds=%.3f echoes_per_s=%.0f\n", echoes.Load(), secs, float64(echoes.Load())/secs)
	return nil
}

func dialWS(ctx context.Context, url string) (*websocket.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, url, &websocket.DialOptions{
		HTTPClient: httpClient, CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	c.SetReadLimit(1 << 20)
	return c, nil
}

// idleCmd opens n streams that then stay silent and reports what the proxy process's resident set
// grew by per stream. An SSE stream counts once its first event arrived, a WebSocket once one echo
// came back; after the second reading every WebSocket must still echo and every SSE stream still be
// open.
func idleCmd(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	url := fs.String("url", "", "proxy URL of the backend's /sse or /ws")
	kind := fs.String("kind", "sse", "sse or ws")
	n := fs.Int("n", 1000, "streams")
	pid := fs.Int("pid", 0, "PID of the proxy process whose VmRSS is measured")
	settle := fs.Duration("settle", 2*time.Second, "idle time before the second RSS reading")
	fs.Parse(args)
	before, err := rssKB(*pid)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var check []func() error
	for i := range *n {
		var c func() error
		switch *kind {
		case "sse":
			c, err = openIdleSSE(ctx, *url)
		case "ws":
			c, err = openIdleWS(ctx, *url)
		default:
			return fmt.Errorf("-kind %q: want sse or ws", *kind)
		}
		if err != nil {
			return fmt.Errorf("stream %d: %w", i, err)
		}
		check = append(check, c)
	}
	time.Sleep(*settle)
	after, err := rssKB(*pid)
	if err != nil {
		return err
	}
	for i, c := range check {
		if err := c(); err != nil {
			return fmt.Errorf("stream %d after the idle period: %w", i, err)
		}
	}
	fmt.Printf("RESULT streams=%d rss_before_kb=%d rss_after_kb=%d bytes_per_stream=%d\n",
		*n, before, after, (after-before)*1024/int64(*n))
	return nil
}

func openIdleSSE(ctx context.Context, url string) (func() error, error) {
	resp, err := get(ctx, url+"?events=0&interval=0s")
	if err != nil {
		return nil, err
	}
	br := bufio.NewReader(resp.Body)
	if _, err := readEvent(br); err != nil {
		return nil, err
	}
	// Still open: a read sees nothing for a moment rather than the end of the stream.
	return func() error {
		defer resp.Body.Close()
		got := make(chan error, 1)
		go func() { _, err := br.ReadByte(); got <- err }()
		select {
		case err := <-got:
			return fmt.Errorf("stream ended or sent data while idle: %v", err)
		case <-time.After(time.Millisecond):
			return nil
		}
	}, nil
}

func openIdleWS(ctx context.Context, url string) (func() error, error) {
	c, err := dialWS(ctx, url)
	if err != nil {
		return nil, err
	}
	echo := func() error {
		if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			return err
		}
		_, got, err := c.Read(ctx)
		if err == nil && string(got) != "ping" {
			err = fmt.Errorf("echo %q", got)
		}
		return err
	}
	if err := echo(); err != nil {
		c.CloseNow()
		return nil, err
	}
	return func() error {
		defer c.CloseNow()
		return echo()
	}, nil
}

func rssKB(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
