// Package tracing carries W3C Trace Context through weir and exports one OpenTelemetry server span per
// sampled request.
//
// The request path never touches the OpenTelemetry SDK unless a request is sampled: parsing an
// incoming traceparent, choosing IDs, deciding the sample and writing the traceparent sent upstream
// happen here, on fixed-size values, without allocating. A sampled request is handed to the SDK once,
// when it ends (Tracer.Export), with the times and events recorded while it ran.
package tracing

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"time"
)

// Header names of W3C Trace Context.
const (
	HeaderTraceparent = "Traceparent"
	HeaderTracestate  = "Tracestate"
)

// TraceparentLen is the length of a version-00 traceparent: "00-" + 32 + "-" + 16 + "-" + 2.
const TraceparentLen = 55

// Sampler decides for requests that arrive without a valid parent, by their trace ID: the same ID
// gets the same answer in every replica (as OpenTelemetry's TraceIDRatioBased).
type Sampler struct{ threshold uint64 }

// NewSampler samples ratio of traces (0 none, 1 all).
func NewSampler(ratio float64) Sampler {
	switch {
	case ratio >= 1:
		return Sampler{threshold: math.MaxUint64}
	case ratio <= 0:
		return Sampler{}
	}
	return Sampler{threshold: uint64(ratio * (1 << 63))}
}

func (s Sampler) sample(id *[16]byte) bool {
	if s.threshold == math.MaxUint64 {
		return true
	}
	return binary.BigEndian.Uint64(id[8:])>>1 < s.threshold
}

// Span is one request's place in a trace. It lives inside the request's pooled state and is zeroed
// with it.
type Span struct {
	TraceID [16]byte
	// ID is weir's span: sent upstream as the parent, whether or not it is sampled.
	ID [8]byte
	// Parent is the incoming traceparent's span; zero when weir started the trace.
	Parent [8]byte
	// On means tracing is configured for this request; Sampled that its span is exported.
	On      bool
	Sampled bool

	events [MaxEvents]Event
	n      int
	lost   int
}

// MaxEvents bounds the events kept per span; more are counted in the span's weir.events_dropped.
const MaxEvents = 4

// Event is something that happened while the request ran: a retry, a breaker's rejection.
type Event struct {
	Name   string // "retry", "circuit_open"
	At     time.Time
	Target string // the target of the attempt that failed (retry)
	Reason string // what went wrong, in weir's words
	Status int    // the failed attempt's status, 0 when it got none
	// Attempt is the number of the attempt that failed, from 1.
	Attempt int
}

// Begin starts s from a request's traceparent header (nil or malformed: a new trace). A valid parent's
// sampled flag decides; otherwise sampler does. It reports whether the parent was valid: if not, the
// request's tracestate belongs to no trace and is dropped by the caller.
func (s *Span) Begin(traceparent []byte, sampler Sampler) (continued bool) {
	s.On = true
	s.ID = randomSpanID()
	if parseTraceparent(traceparent, &s.TraceID, &s.Parent, &s.Sampled) {
		return true
	}
	s.TraceID, s.Parent = randomTraceID(), [8]byte{}
	s.Sampled = sampler.sample(&s.TraceID)
	return false
}

// AppendTraceparent appends the traceparent the upstream receives: weir's span as the parent.
func (s *Span) AppendTraceparent(dst []byte) []byte {
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, s.TraceID[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, s.ID[:])
	if s.Sampled {
		return append(dst, "-01"...)
	}
	return append(dst, "-00"...)
}

// Event records e on a sampled span; unsampled spans keep nothing.
func (s *Span) Event(e Event) {
	if !s.Sampled {
		return
	}
	if s.n == len(s.events) {
		s.lost++
		return
	}
	s.events[s.n] = e
	s.n++
}

// Events are the events recorded so far.
func (s *Span) Events() []Event { return s.events[:s.n] }

// parseTraceparent reads a W3C traceparent (version 00, or a later version's first four fields). It
// rejects upper-case hex, all-zero IDs and version ff, as the specification requires.
func parseTraceparent(v []byte, trace *[16]byte, parent *[8]byte, sampled *bool) bool {
	if len(v) < TraceparentLen || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return false
	}
	var version [1]byte
	if !decodeLowerHex(version[:], v[0:2]) || version[0] == 0xff {
		return false
	}
	// Version 00 is exactly 55 bytes; a later version may carry more fields after a dash.
	if version[0] == 0 && len(v) != TraceparentLen || len(v) > TraceparentLen && v[TraceparentLen] != '-' {
		return false
	}
	var t [16]byte
	var p [8]byte
	var flags [1]byte
	if !decodeLowerHex(t[:], v[3:35]) || !decodeLowerHex(p[:], v[36:52]) || !decodeLowerHex(flags[:], v[53:55]) ||
		t == [16]byte{} || p == [8]byte{} {
		return false
	}
	*trace, *parent, *sampled = t, p, flags[0]&1 == 1
	return true
}

func decodeLowerHex(dst, src []byte) bool {
	var bad byte
	for i := range dst {
		hi, lo := lowerHex[src[2*i]], lowerHex[src[2*i+1]]
		bad |= hi | lo
		dst[i] = hi<<4 | lo&0x0f
	}
	return bad&0xf0 == 0
}

// lowerHex maps a lower-case hex digit to its value and every other byte to 0xff.
var lowerHex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()

// IDs need to be unique, not secret: math/rand/v2's generator is per-thread, lock-free and
// allocation-free.
func randomTraceID() (id [16]byte) {
	for id == [16]byte{} {
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

func randomSpanID() (id [8]byte) {
	for id == [8]byte{} {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}
