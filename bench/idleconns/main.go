// Command idleconns measures the memory a proxy holds per idle keep-alive client connection, for
// bench/run.sh. It reads the proxy process's resident set (VmRSS), opens -n connections, sends one
// request on each and reads the whole response (so each is an established keep-alive connection that
// has served a request), leaves them idle for -settle, reads VmRSS again, then checks that every
// connection still serves a request and closes them all. It prints one line:
//
//	conns=N rss_before_kb=A rss_after_kb=B bytes_per_conn=C alive_after=M
//
// Usage: idleconns -addr 127.0.0.1:18081 -pid PID [-n 10000] [-path /13] [-body-bytes 13] [-tls]
//
// With -tls every connection does a TLS handshake first (the proxy's certificate is not verified).
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "", "proxy address, host:port")
	pid := flag.Int("pid", 0, "PID of the proxy process whose VmRSS is measured")
	n := flag.Int("n", 10000, "connections to open")
	path := flag.String("path", "/13", "path requested on each connection")
	bodyBytes := flag.Int64("body-bytes", 13, "expected response body size")
	parallel := flag.Int("parallel", 64, "connections being opened at once")
	settle := flag.Duration("settle", 2*time.Second, "idle time before the second RSS reading")
	useTLS := flag.Bool("tls", false, "speak TLS to the proxy")
	flag.Parse()
	if *addr == "" || *pid == 0 {
		fmt.Fprintln(os.Stderr, "idleconns: -addr and -pid are required")
		os.Exit(2)
	}
	dial := func(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 5*time.Second) }
	if *useTLS {
		dial = func(addr string) (net.Conn, error) {
			d := &net.Dialer{Timeout: 5 * time.Second}
			return tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		}
	}
	if err := run(dial, *addr, *pid, *n, *path, *bodyBytes, *parallel, *settle); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
}

// conn is one client connection with its reader, kept for the second request.
type conn struct {
	c net.Conn
	r *bufio.Reader
}

func run(dial func(string) (net.Conn, error), addr string, pid, n int, path string, bodyBytes int64, parallel int, settle time.Duration) error {
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: bench\r\n\r\n")
	before, err := vmRSSKiB(pid)
	if err != nil {
		return err
	}

	conns := make([]*conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.c.Close()
			}
		}
	}()
	if err := forAll(n, parallel, func(i int) error {
		c, err := dial(addr)
		if err != nil {
			return err
		}
		conns[i] = &conn{c: c, r: bufio.NewReaderSize(c, 4096)}
		return roundTrip(conns[i], req, bodyBytes)
	}); err != nil {
		return fmt.Errorf("opening connections: %w", err)
	}

	time.Sleep(settle)
	after, err := vmRSSKiB(pid)
	if err != nil {
		return err
	}

	// A connection the proxy closed while idle would make the reading meaningless: count the live ones.
	var mu sync.Mutex
	alive := 0
	_ = forAll(n, parallel, func(i int) error {
		if roundTrip(conns[i], req, bodyBytes) == nil {
			mu.Lock()
			alive++
			mu.Unlock()
		}
		return nil
	})

	perConn := (after - before) * 1024 / int64(n)
	fmt.Printf("conns=%d rss_before_kb=%d rss_after_kb=%d bytes_per_conn=%d alive_after=%d\n",
		n, before, after, perConn, alive)
	if alive != n {
		return fmt.Errorf("only %d of %d connections were still open after the measurement", alive, n)
	}
	return nil
}

// roundTrip sends req on c and reads one response, which must be a 200 with a body of bodyBytes.
func roundTrip(c *conn, req []byte, bodyBytes int64) error {
	if err := c.c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	if _, err := c.c.Write(req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return err
	}
	got, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || got != bodyBytes {
		return fmt.Errorf("got status %d with %d body bytes, want 200 with %d", resp.StatusCode, got, bodyBytes)
	}
	if resp.Close {
		return errors.New("the proxy closed the connection after the response")
	}
	return c.c.SetDeadline(time.Time{})
}

// forAll runs f(0..n-1) on at most parallel goroutines and returns the first error.
func forAll(n, parallel int, f func(i int) error) error {
	next := make(chan int)
	errs := make(chan error, parallel)
	var wg sync.WaitGroup
	for w := 0; w < parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var first error
feed:
	for i := 0; i < n; i++ {
		select {
		case next <- i:
		case first = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil {
		select {
		case first = <-errs:
		default:
		}
	}
	return first
}

// vmRSSKiB reads the resident set size of process pid, in KiB.
func vmRSSKiB(pid int) (int64, error) {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(status, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			return strconv.ParseInt(string(bytes.Fields(rest)[0]), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
