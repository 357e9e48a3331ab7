package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// Target is one backend with its own keep-alive connection pool. A target outlives the config snapshot
// that created it when the next snapshot describes it the same way (see Key), so reloads keep its warm
// connections and in-flight count.
type Target struct {
	URL    string
	Addr   string
	key    string
	scheme string
	client *fasthttp.HostClient
	health health
	// inflight counts requests from the write of their head to the end of their response body (a
	// stream's included); tunnels are not requests.
	inflight atomic.Int64
}

// InFlight is the number of requests this target is serving for the gateway right now.
func (t *Target) InFlight() int { return int(t.inflight.Load()) }

// Key identifies the target and every setting its connection pool was built with: two targets with the
// same key are interchangeable.
func (t *Target) Key() string { return t.key }

// Drain waits until the target has no request in flight, or grace has passed, then closes its idle
// connections. Call it on a target no snapshot uses any more. Connections still busy after grace are
// closed when their request ends, by fasthttp's idle-connection cleaner, whose goroutine then exits.
func (t *Target) Drain(grace time.Duration) {
	t.stopChecks()
	for deadline := time.Now().Add(grace); t.InFlight() > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	t.client.CloseIdleConnections()
}

// Pool is a named set of interchangeable targets and the policy that spreads requests over them.
type Pool struct {
	Name    string
	Targets []*Target
	Weights []int // parallel to Targets
	hashKey HashKey
	timeout time.Duration
	// deadlineSet: retries.deadline was configured; otherwise it follows attempts × the timeout in
	// force (the pool's or the route's).
	deadlineSet bool

	streaming Streaming
	streams   StreamCounters
	balancer  *balancer
	check     *HealthCheck
	passive   Passive
	retry     Retry
	budget    retryBudget
	degraded  atomic.Bool // no target was available at the last pick; logged once per episode
	log       zerolog.Logger
	retries   Counter
	counters  []TargetCounters // parallel to Targets
}

// Timeout is the pool's per-request upstream timeout.
func (p *Pool) Timeout() time.Duration { return p.timeout }

// NewPool builds a pool from validated settings. A target for which existing returns one with the same
// key is reused, connections and all; the others are new and open connections lazily on first use.
func NewPool(s Settings, existing func(key string) *Target) *Pool {
	p := &Pool{Name: s.Name, hashKey: s.HashKey, timeout: s.Timeout, check: s.HealthCheck, passive: s.Passive,
		retry: s.Retry, log: s.Log, streaming: s.Streaming, streams: nopStreamCounters()}
	if p.retry.Attempts < 1 {
		p.retry.Attempts = 1
	}
	p.deadlineSet = p.retry.Deadline > 0
	if !p.deadlineSet {
		p.retry.Deadline = time.Duration(p.retry.Attempts) * s.Timeout
	}
	for _, spec := range s.Targets {
		key := targetKey(spec, s)
		t := existing(key)
		if t == nil {
			scheme := "http"
			if spec.TLS {
				scheme = "https"
			}
			t = &Target{URL: spec.URL, Addr: spec.Addr, key: key, scheme: scheme, client: newHostClient(spec, s)}
		}
		p.Targets = append(p.Targets, t)
		p.Weights = append(p.Weights, spec.Weight)
		if s.Counters != nil {
			p.counters = append(p.counters, s.Counters.Target(spec.Addr))
		} else {
			p.counters = append(p.counters, nopTargetCounters())
		}
	}
	p.retries = nopCounter{}
	if s.Counters != nil {
		p.retries = s.Counters.Retries
		if s.Counters.Streams != nil {
			p.streams = *s.Counters.Streams
		}
	}
	p.balancer = newBalancer(s.Balancer, p.Targets, p.Weights)
	return p
}

// targetKey names a target by its address and the settings of its connection pool and of its health
// (the active check runs from the target; passive ejection state lives in it), so pools that judge a
// target differently do not share its state. The attempt timeout is not among them: it is passed with
// each request.
func targetKey(spec TargetSpec, s Settings) string {
	check := "none"
	if hc := s.HealthCheck; hc != nil {
		check = fmt.Sprintf("%s/%s/%s/%d/%d/%x", hc.Path, hc.Interval, hc.Timeout, hc.HealthyThreshold, hc.UnhealthyThreshold, hc.Expected)
	}
	tlsID := "off"
	if spec.TLS {
		tlsID = s.TLS.identity()
	}
	return fmt.Sprintf("%s tls=%s connect=%s conns=%d wait=%s idle=%s head=%d check=%s passive=%+v", spec.Addr, tlsID,
		s.ConnectTimeout, s.MaxConns, s.ConnWaitTimeout, s.IdleConnTimeout, s.MaxResponseHeaderBytes, check, s.Passive)
}

// Activate starts the pool's active health checks (on targets that do not run them yet). It is called
// when a snapshot goes live, so that compiling a config to validate it starts nothing.
func (p *Pool) Activate() {
	if p.check == nil {
		return
	}
	for _, t := range p.Targets {
		t.startChecks(p.check, p.log)
	}
}

// upstreamWriteBuffer is the write buffer of a request to a target (fasthttp's default is 4 KiB).
const upstreamWriteBuffer = 16 << 10

func newHostClient(spec TargetSpec, s Settings) *fasthttp.HostClient {
	hc := &fasthttp.HostClient{
		Addr:                spec.Addr,
		IsTLS:               spec.TLS,
		DialTimeout:         dialerWithTimeout(s.ConnectTimeout),
		MaxConns:            s.MaxConns,
		MaxConnWaitTimeout:  s.ConnWaitTimeout,
		MaxIdleConnDuration: s.IdleConnTimeout,
		// The response line and headers must fit this buffer; a larger head is a 502.
		ReadBufferSize: s.MaxResponseHeaderBytes,
		// A request whose head and body fit leaves in one system call rather than two. Writers are
		// pooled per request, not held per connection, so the size costs little memory.
		WriteBufferSize:          upstreamWriteBuffer,
		NoDefaultUserAgentHeader: true,
		SecureErrorLogMessage:    true,
		// The gateway routes on the normalized path and forwards exactly that path; see gateway/hygiene.go.
		DisablePathNormalizing: false,
	}
	if spec.TLS {
		hc.TLSConfig = s.TLS.config(spec.Addr)
	}
	return hc
}

// dialerWithTimeout caps each dial at connect, however much of the attempt's timeout is left.
func dialerWithTimeout(connect time.Duration) fasthttp.DialFuncWithTimeout {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		return fasthttp.DialTimeout(addr, min(timeout, connect))
	}
}

// hashKeyOf reads the hash balancer's key from the request. clientIP is only read by a client_ip key.
func (p *Pool) hashKeyOf(req *fasthttp.Request, clientIP []byte) []byte {
	switch p.hashKey.Source {
	case HashClientIP:
		return clientIP
	case HashHeader:
		return req.Header.Peek(p.hashKey.Name)
	case HashCookie:
		return req.Header.Cookie(p.hashKey.Name)
	case HashPath:
		return req.URI().Path()
	}
	return nil
}

// forwardTo sends req to t and reads the answer into resp, both the server's own objects so nothing
// is copied. The caller has already stripped the request's hop-by-hop headers (StripHopRequest, before
// adding forwarding headers of its own; an upgrade request has its Connection and Upgrade put back);
// forwardTo makes the message fit for the hop: it speaks HTTP/1.1 upstream whatever the client spoke,
// keeps fasthttp from adding headers the client did not send, and strips the response's hop-by-hop
// headers (a 101 keeps its Connection: Upgrade and Upgrade). On error resp is reset and the caller
// answers.
func (p *Pool) forwardTo(req *fasthttp.Request, resp *fasthttp.Response, t *Target, now time.Time, timeout time.Duration) (*Tunnel, error) {
	// Whether the client connection closes was decided before the handler ran; the upstream
	// connection's fate is separate, so a client's "Connection: close" must not travel.
	req.Header.ResetConnectionClose()
	http10 := !req.Header.IsHTTP11()
	if http10 {
		req.Header.SetProtocol("HTTP/1.1")
	}
	req.Header.SetNoDefaultContentType(true)
	req.URI().SetScheme(t.scheme)
	req.UseHostHeader = true
	resp.Reset()

	tun, err := p.forward(t, req, resp, now, timeout)

	if http10 {
		// The server reads the protocol after the handler to decide keep-alive for the client.
		req.Header.SetProtocol("HTTP/1.0")
	}
	if err != nil {
		resp.Reset()
		return nil, err
	}
	// Reset cleared the server's NoDefaultContentType; without this a response with no Content-Type
	// would leave with text/plain.
	resp.Header.SetNoDefaultContentType(true)
	var upgrade [32]byte
	proto := append(upgrade[:0], resp.Header.Peek(fasthttp.HeaderUpgrade)...)
	StripHopResponse(&resp.Header)
	// Like the request side: the upstream closing its connection says nothing about the client's.
	resp.Header.ResetConnectionClose()
	if tun != nil {
		if !bytes.EqualFold(proto, req.Header.Peek(fasthttp.HeaderUpgrade)) {
			tun.Close()
			resp.Reset()
			return nil, errWrongUpgrade
		}
		resp.Header.Set(fasthttp.HeaderConnection, "Upgrade")
		resp.Header.SetBytesV(fasthttp.HeaderUpgrade, proto)
	}
	return tun, nil
}

var errWrongUpgrade = errors.New("upstream: 101 to another protocol than the one asked for")
