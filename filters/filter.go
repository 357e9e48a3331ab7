// Package filters holds the per-route filter chain: the Filter contract, the pooled per-request
// Exchange the chain runs on, and the filters themselves (rate_limit, circuit_breaker, rewrite, json).
package filters

import (
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/valyala/bytebufferpool"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/tracing"
)

// Handler serves one exchange. Every chain ends in the gateway's handler that calls the upstream.
type Handler interface {
	Serve(x *Exchange)
}

// Filter is one configured step of a route's chain. Its constructor (NewRateLimit, NewRewrite...) runs
// once per config snapshot, validates its settings and precomputes everything; the request path only
// executes.
//
// A step wraps the rest of the chain, middleware style, rather than running in two phases
// (before/after the upstream): a circuit breaker must observe the outcome of exactly the requests it
// admitted, and gobreaker's Execute gives that guarantee, panics included, without allocating, but
// only around a call. Work before next.Serve is the request phase, work after it the response phase.
type Filter interface {
	// Wrap returns the handler running this step around next. It is called once per route per snapshot.
	// A step that answers the request itself calls Exchange.Reject and does not call next; it never
	// writes an error response: the gateway renders every rejection the same way.
	Wrap(next Handler) Handler
}

// Handoff is implemented by a streamed response body that a filter may wrap (compress): HandOff
// makes the stream ignore the next close, the one fasthttp makes when the body is replaced by its
// wrapper; the wrapper closes it itself. The wrapper has an Unwrap() io.Reader method returning it.
type Handoff interface{ HandOff() }

// Chain composes filters, first to last, around terminal.
func Chain(fs []Filter, terminal Handler) Handler {
	h := terminal
	for i := len(fs) - 1; i >= 0; i-- {
		h = fs[i].Wrap(h)
	}
	return h
}

// Exchange is the state of one request as it crosses the gateway. It comes from a pool because a value
// passed to an interface method escapes to the heap: a stack Exchange would cost an allocation per
// request. Nothing in it may be kept after the request ends.
type Exchange struct {
	Ctx *fasthttp.RequestCtx
	// Route is the matched route's name; Target the address of the upstream target that served it
	// (the last one tried), after Attempts tries.
	Route    string
	Target   string
	Attempts int
	// UpstreamTime is the time spent in the upstream call, retries included.
	UpstreamTime time.Duration
	// Client is the client's address: the peer, or for a trusted proxy the address it reports in
	// X-Forwarded-For. ClientIP is the same in text form.
	Client   netip.Addr
	ClientIP []byte
	// RequestID is the value sent upstream and returned in X-Request-ID.
	RequestID []byte
	// Consumer names the authenticated caller, set by an authenticating filter (jwt, api_key, basic_auth);
	// empty when none ran. It goes upstream as X-Consumer, into the access log, and can key a
	// rate_limit. The bytes belong to the filter (a name from its config, or jwt's cached verdict):
	// never modify them.
	Consumer []byte
	// Host and Path are the request's host and (normalized) path as the client sent them, kept for the
	// access log: a rewrite changes the ones in Ctx.
	Host []byte
	Path []byte

	// Status and Reason are set by Reject; a non-zero Status means the gateway answers, not the
	// upstream, and the response phase of earlier steps sees an empty response.
	Status int
	Reason string
	// Split is the index of the pool the route's split chose (0 without a split), and Pool its name
	// (empty without a split), set before the chain runs.
	Split int
	Pool  string
	// Fallback names the cause a fallback filter answered in place of (a status, circuit_open,
	// no_target, rate_limited); empty when none did.
	Fallback string
	// Failed means the upstream failed to produce a usable response (unreachable, timed out,
	// malformed). A 503 because weir's own connection limit to it was reached is not its failure.
	Failed bool

	// WebSocket means the client asked to upgrade to a WebSocket (Connection: Upgrade, Upgrade:
	// websocket on a GET); filters run on the handshake like on any request.
	WebSocket bool
	// Tunnel holds the upstream connection after a 101, until the gateway relays it (or closes it,
	// if a step rejected the exchange after all).
	Tunnel io.Closer
	// Body holds a request body the gateway read whole; it goes back to its pool with the exchange.
	Body *bytebufferpool.ByteBuffer
	// Trace is the request's place in a trace (tracing.otlp_endpoint); steps record events on it
	// (retries, a breaker's rejection), which only a sampled span keeps.
	Trace tracing.Span
	// StreamedUpload means the request body was relayed to the upstream as it arrived (over
	// server.buffer_requests): it is gone once the upstream call returns.
	StreamedUpload bool

	ipBuf   [64]byte
	idBuf   [128]byte
	hostBuf [128]byte
	pathBuf [256]byte // a longer path moves to the heap
}

// Reject makes the gateway answer with status and a short reason (a constant phrase: it is written
// into the JSON error body unescaped). Headers the step sets on the response, such as Retry-After,
// are kept.
func (x *Exchange) Reject(status int, reason string) {
	x.Status, x.Reason = status, reason
}

// Answered reports whether the response in x.Ctx is the upstream's: the request reached the upstream
// and got a usable answer, and no step rejected it.
func (x *Exchange) Answered() bool { return x.Status == 0 }

// IPBuf, IDBuf, HostBuf and PathBuf are scratch space for ClientIP, RequestID, Host and Path, owned
// by the Exchange so that filling them does not allocate.
func (x *Exchange) IPBuf() []byte   { return x.ipBuf[:0] }
func (x *Exchange) IDBuf() []byte   { return x.idBuf[:0] }
func (x *Exchange) HostBuf() []byte { return x.hostBuf[:0] }
func (x *Exchange) PathBuf() []byte { return x.pathBuf[:0] }

var exchanges = sync.Pool{New: func() any { return new(Exchange) }}

// AcquireExchange returns a zeroed Exchange for ctx.
func AcquireExchange(ctx *fasthttp.RequestCtx) *Exchange {
	x := exchanges.Get().(*Exchange)
	x.Ctx = ctx
	return x
}

// ReleaseExchange returns x to the pool; x must not be used afterwards.
func ReleaseExchange(x *Exchange) {
	if x.Body != nil {
		bytebufferpool.Put(x.Body)
	}
	*x = Exchange{}
	exchanges.Put(x)
}
