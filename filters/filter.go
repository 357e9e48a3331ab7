// Package filters holds the per-route filter chain: the Filter contract, the pooled per-request
// Exchange the chain runs on, and (as they arrive) the filters themselves.
package filters

import (
	"sync"

	"github.com/valyala/fasthttp"
)

// Verdict is a filter's answer to a request: let it go on, or stop it because the filter has decided
// the outcome (Exchange.Reject says which).
type Verdict uint8

const (
	Continue Verdict = iota
	Stop
)

// Filter is one step of a route's chain. A filter is built once per config snapshot, validated and
// precomputed there, and shared by every request the snapshot serves, so its methods must be safe for
// concurrent use and should not allocate.
type Filter interface {
	// OnRequest runs before the upstream is called, in chain order. Returning Stop skips the upstream
	// and the filters after this one; the filter must have called Exchange.Reject.
	OnRequest(x *Exchange) Verdict
	// OnResponse runs after the upstream answered (or failed; see Exchange.Failed), in reverse chain
	// order, for exactly the filters whose OnRequest ran.
	OnResponse(x *Exchange)
}

// Chain is a route's filters in order.
type Chain []Filter

// Request runs OnRequest in order until a filter stops. It returns how many filters ran (including a
// stopping one), which is what Response needs.
func (c Chain) Request(x *Exchange) (ran int, v Verdict) {
	for i, f := range c {
		if f.OnRequest(x) == Stop {
			return i + 1, Stop
		}
	}
	return len(c), Continue
}

// Response runs OnResponse in reverse order over the first ran filters.
func (c Chain) Response(x *Exchange, ran int) {
	for i := ran - 1; i >= 0; i-- {
		c[i].OnResponse(x)
	}
}

// Exchange is the state of one request as it crosses the gateway. It comes from a pool because a value
// passed to an interface method escapes to the heap: a stack Exchange would cost an allocation per
// request. Nothing in it may be kept after the request ends.
type Exchange struct {
	Ctx *fasthttp.RequestCtx
	// Route is the matched route's name; Target the address of the upstream target chosen for it.
	Route  string
	Target string
	// ClientIP is the client's address in text form: the peer, or for a trusted proxy the address it
	// reports in X-Forwarded-For.
	ClientIP []byte
	// RequestID is the value sent upstream and returned in X-Request-ID.
	RequestID []byte

	// Status and Reason are set by Reject (or by the gateway for its own errors); a non-zero Status
	// means the gateway, not the upstream, answers.
	Status int
	Reason string
	// Failed is set before OnResponse when the upstream produced no usable response.
	Failed bool

	ipBuf [64]byte
	idBuf [128]byte
}

// Reject makes the gateway answer with status and a short reason instead of calling the upstream.
func (x *Exchange) Reject(status int, reason string) {
	x.Status, x.Reason = status, reason
}

// IPBuf and IDBuf are scratch space for ClientIP and RequestID, owned by the Exchange so that filling
// them does not allocate.
func (x *Exchange) IPBuf() []byte { return x.ipBuf[:0] }
func (x *Exchange) IDBuf() []byte { return x.idBuf[:0] }

var exchanges = sync.Pool{New: func() any { return new(Exchange) }}

// AcquireExchange returns a zeroed Exchange for ctx.
func AcquireExchange(ctx *fasthttp.RequestCtx) *Exchange {
	x := exchanges.Get().(*Exchange)
	x.Ctx = ctx
	return x
}

// ReleaseExchange returns x to the pool; x must not be used afterwards.
func ReleaseExchange(x *Exchange) {
	*x = Exchange{}
	exchanges.Put(x)
}
