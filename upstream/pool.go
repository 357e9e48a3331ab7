package upstream

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// Target is one backend with its own keep-alive connection pool.
type Target struct {
	URL    string
	Addr   string
	Weight int
	scheme string
	client *fasthttp.HostClient
}

// InFlight is the number of requests this target is serving for the gateway right now.
func (t *Target) InFlight() int { return t.client.PendingRequests() }

// Pool is a named set of interchangeable targets and the policy that spreads requests over them.
type Pool struct {
	Name     string
	Targets  []*Target
	hashKey  HashKey
	timeout  time.Duration
	balancer balancer
}

// NewPool builds a pool from validated settings. Connections are opened lazily on first use.
func NewPool(s Settings) *Pool {
	p := &Pool{Name: s.Name, hashKey: s.HashKey, timeout: s.Timeout}
	for _, spec := range s.Targets {
		scheme := "http"
		if spec.TLS {
			scheme = "https"
		}
		p.Targets = append(p.Targets, &Target{
			URL:    spec.URL,
			Addr:   spec.Addr,
			Weight: spec.Weight,
			scheme: scheme,
			client: newHostClient(spec, s),
		})
	}
	p.balancer = newBalancer(s.Balancer, p.Targets)
	return p
}

func newHostClient(spec TargetSpec, s Settings) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                spec.Addr,
		IsTLS:               spec.TLS,
		DialTimeout:         dialerWithTimeout(s.ConnectTimeout),
		MaxConns:            s.MaxConns,
		MaxConnWaitTimeout:  s.ConnWaitTimeout,
		MaxIdleConnDuration: s.IdleConnTimeout,
		MaxResponseBodySize: s.MaxResponseBytes,
		// One transparent retry, only for an idempotent request on a pooled connection the target had
		// closed while idle (nothing of the response was read). Retrying other failures could send a
		// request twice to a target that did act on it.
		MaxIdemponentCallAttempts: 2,
		RetryIfErr:                retryStaleConnection,
		// The response line and headers must fit this buffer; a larger head is a 502.
		ReadBufferSize:           s.MaxResponseHeaderBytes,
		NoDefaultUserAgentHeader: true,
		SecureErrorLogMessage:    true,
		// The gateway routes on the normalized path and forwards exactly that path; see gateway/hygiene.go.
		DisablePathNormalizing: false,
	}
}

func retryStaleConnection(req *fasthttp.Request, _ int, err error) (resetTimeout, retry bool) {
	idempotent := req.Header.IsGet() || req.Header.IsHead() || req.Header.IsPut()
	return false, idempotent && (errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF))
}

// dialerWithTimeout caps each dial at connect, however much of the attempt's timeout is left.
func dialerWithTimeout(connect time.Duration) fasthttp.DialFuncWithTimeout {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		return fasthttp.DialTimeout(addr, min(timeout, connect))
	}
}

// Pick chooses the target for one attempt. clientIP is only read by a client_ip hash key.
func (p *Pool) Pick(req *fasthttp.Request, clientIP []byte) *Target {
	var key []byte
	switch p.hashKey.Source {
	case HashNone:
	case HashClientIP:
		key = clientIP
	case HashHeader:
		key = req.Header.Peek(p.hashKey.Name)
	case HashCookie:
		key = req.Header.Cookie(p.hashKey.Name)
	case HashPath:
		key = req.URI().Path()
	}
	return p.balancer.pick(key)
}

// Forward sends req to t and reads the answer into resp, both the server's own objects so nothing is
// copied. The caller has already stripped the request's hop-by-hop headers (StripHopRequest, before
// adding forwarding headers of its own); Forward makes the message fit for the hop: it speaks HTTP/1.1
// upstream whatever the client spoke, keeps fasthttp from adding headers the client did not send, and
// strips the response's hop-by-hop headers. On error resp is reset and the caller answers.
func (p *Pool) Forward(req *fasthttp.Request, resp *fasthttp.Response, t *Target) error {
	// Whether the client connection closes was decided before the handler ran; the upstream
	// connection's fate is separate, so a client's "Connection: close" must not travel.
	req.Header.ResetConnectionClose()
	http10 := !req.Header.IsHTTP11()
	if http10 {
		req.Header.SetProtocol("HTTP/1.1")
	}
	req.Header.SetNoDefaultContentType(true)
	if len(req.Header.Host()) == 0 {
		// HTTP/1.0 allows a request without Host; the HTTP/1.1 it is forwarded as does not.
		req.Header.SetHost(t.Addr)
	}
	req.URI().SetScheme(t.scheme)
	req.UseHostHeader = true

	err := t.client.DoTimeout(req, resp, p.timeout)

	if http10 {
		// The server reads the protocol after the handler to decide keep-alive for the client.
		req.Header.SetProtocol("HTTP/1.0")
	}
	if err != nil {
		resp.Reset()
		return err
	}
	// The client reset resp before reading into it, clearing the server's NoDefaultContentType; without
	// this a response with no Content-Type would leave with text/plain.
	resp.Header.SetNoDefaultContentType(true)
	StripHopResponse(&resp.Header)
	// Like the request side: the upstream closing its connection says nothing about the client's.
	resp.Header.ResetConnectionClose()
	return nil
}

// Close drops the pool's idle connections. In-flight requests finish on their own connections.
func (p *Pool) Close() {
	for _, t := range p.Targets {
		t.client.CloseIdleConnections()
	}
}
