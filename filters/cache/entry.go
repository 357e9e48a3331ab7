package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Entry is one stored response, or for a response with Vary a marker naming the request headers its
// variants depend on. It never changes once stored: a revalidation stores a new Entry, so a request
// may keep serving the one it read while another replaces it.
type Entry struct {
	// Key is the entry's cache key: the filter's key, then for a variant the Vary headers' values.
	Key    []byte
	Status int
	// Headers are the response's end-to-end headers, Date and Age left out (each hit sets its own).
	Headers [][2][]byte
	Body    []byte
	// Stored is when the response arrived (Unix nanoseconds), or when it was last confirmed by a 304;
	// Age0 is the Age the upstream said it already had.
	Stored int64
	Age0   time.Duration
	// Lifetime is how long it is fresh; SWR and SIE how long after that it may be served stale while
	// it is refreshed, and when the upstream fails.
	Lifetime, SWR, SIE time.Duration
	// Revalidate: each use needs the upstream's confirmation; Strict: never served stale.
	Revalidate, Strict bool
	ETag, LastModified []byte
	// Vary, on a marker, are the request header names (lowercase) that pick the variant.
	Vary [][]byte
}

// marker reports whether e names Vary headers instead of holding a response.
func (e *Entry) marker() bool { return e.Vary != nil }

// age is how old e is at now (RFC 9111 §4.2.3, without the transit delay: weir's clock is the one
// that counts).
func (e *Entry) age(now int64) time.Duration { return e.Age0 + time.Duration(now-e.Stored) }

// keep is how long a store holds e: while it is fresh or may be served stale, and for an entry that
// can be revalidated at least keepValidated more, since a 304 is cheaper than a full answer.
func (e *Entry) keep(keepValidated time.Duration) time.Duration {
	d := e.Lifetime + max(e.SWR, e.SIE)
	if len(e.ETag) > 0 || len(e.LastModified) > 0 {
		d = max(d, e.Lifetime+keepValidated)
	}
	return max(d-e.Age0, time.Second)
}

// size is what e weighs in a store's bound: its bytes plus a fixed charge for the structure.
func (e *Entry) size() int {
	n := 160 + len(e.Key) + len(e.Body) + len(e.ETag) + len(e.LastModified) + 48*len(e.Headers) + 24*len(e.Vary)
	for _, h := range e.Headers {
		n += len(h[0]) + len(h[1])
	}
	for _, v := range e.Vary {
		n += len(v)
	}
	return n
}

// unstored are the response headers not kept: hop-by-hop ones, those each answer sets for itself, and
// the gateway's own.
var unstored = map[string]bool{"connection": true, "keep-alive": true, "proxy-authenticate": true, "proxy-authorization": true,
	"te": true, "trailer": true, "transfer-encoding": true, "upgrade": true, "proxy-connection": true,
	"date": true, "age": true, "content-length": true, "x-cache": true, "x-request-id": true}

// newEntry stores resp under key: the headers and body are copied into one allocation.
func newEntry(key []byte, resp *fasthttp.Response, p responsePolicy, now int64, keepCookies bool) *Entry {
	e := &Entry{Status: resp.StatusCode(), Stored: now, Lifetime: p.lifetime, SWR: p.swr, SIE: p.sie,
		Revalidate: p.revalidate, Strict: p.strict}
	if a, ok := parseSeconds(resp.Header.Peek(fasthttp.HeaderAge)); ok {
		e.Age0 = a
	}
	var lname [64]byte
	size := len(key) + len(resp.Body())
	type kv struct{ k, v []byte }
	var keptBuf [24]kv
	kept := keptBuf[:0]
	for k, v := range resp.Header.All() {
		name := lname[:0]
		for _, c := range k {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			name = append(name, c)
		}
		if unstored[string(name)] || (!keepCookies && string(name) == "set-cookie") {
			continue
		}
		kept = append(kept, kv{k, v})
		size += len(k) + len(v)
	}
	buf := make([]byte, 0, size)
	put := func(b []byte) []byte {
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	e.Key = put(key)
	e.Headers = make([][2][]byte, len(kept))
	for i, h := range kept {
		e.Headers[i] = [2][]byte{put(h.k), put(h.v)}
		switch {
		case bytes.EqualFold(h.k, []byte(fasthttp.HeaderETag)):
			e.ETag = e.Headers[i][1]
		case bytes.EqualFold(h.k, []byte(fasthttp.HeaderLastModified)):
			e.LastModified = e.Headers[i][1]
		}
	}
	e.Body = put(resp.Body())
	return e
}

// refreshed is e confirmed at now by a 304 whose headers update the stored ones (RFC 9111 §4.3.4).
func (e *Entry) refreshed(resp *fasthttp.Response, p responsePolicy, now int64) *Entry {
	n := *e
	n.Stored, n.Age0 = now, 0
	n.Lifetime, n.SWR, n.SIE, n.Revalidate, n.Strict = p.lifetime, p.swr, p.sie, p.revalidate, p.strict
	if a, ok := parseSeconds(resp.Header.Peek(fasthttp.HeaderAge)); ok {
		n.Age0 = a
	}
	// The 304's validators and freshness replace the stored ones; its other headers are ignored.
	updated := map[string][]byte{}
	for _, name := range []string{fasthttp.HeaderCacheControl, fasthttp.HeaderExpires, fasthttp.HeaderETag, fasthttp.HeaderLastModified, fasthttp.HeaderVary} {
		if v := resp.Header.Peek(name); len(v) > 0 {
			updated[strings.ToLower(name)] = bytes.Clone(v)
		}
	}
	n.Headers = make([][2][]byte, 0, len(e.Headers)+len(updated))
	for _, h := range e.Headers {
		name := strings.ToLower(string(h[0]))
		if v, ok := updated[name]; ok {
			h[1] = v
			delete(updated, name)
		}
		n.Headers = append(n.Headers, h)
	}
	for name, v := range updated {
		n.Headers = append(n.Headers, [2][]byte{[]byte(name), v})
	}
	for _, h := range n.Headers {
		switch {
		case bytes.EqualFold(h[0], []byte(fasthttp.HeaderETag)):
			n.ETag = h[1]
		case bytes.EqualFold(h[0], []byte(fasthttp.HeaderLastModified)):
			n.LastModified = h[1]
		}
	}
	return &n
}

var (
	nameAge    = []byte(fasthttp.HeaderAge)
	nameXCache = []byte("X-Cache")
)

// writeTo makes resp the stored response, with its age at now and X-Cache: result. The body is not
// copied: e never changes.
func (e *Entry) writeTo(resp *fasthttp.Response, result []byte, now int64) {
	resp.SetStatusCode(e.Status)
	for _, h := range e.Headers {
		resp.Header.AddBytesKV(h[0], h[1])
	}
	resp.SetBodyRaw(e.Body)
	e.stamp(resp, result, now)
}

// writeNotModified answers a satisfied conditional request from e: 304 with the headers that describe
// the representation (RFC 9110 §15.4.5), no body.
func (e *Entry) writeNotModified(resp *fasthttp.Response, result []byte, now int64) {
	resp.SetStatusCode(fasthttp.StatusNotModified)
	for _, h := range e.Headers {
		switch {
		case bytes.EqualFold(h[0], []byte(fasthttp.HeaderCacheControl)), bytes.EqualFold(h[0], []byte(fasthttp.HeaderExpires)),
			bytes.EqualFold(h[0], []byte(fasthttp.HeaderETag)), bytes.EqualFold(h[0], []byte(fasthttp.HeaderLastModified)),
			bytes.EqualFold(h[0], []byte(fasthttp.HeaderVary)), bytes.EqualFold(h[0], []byte(fasthttp.HeaderContentLocation)):
			resp.Header.AddBytesKV(h[0], h[1])
		}
	}
	resp.ResetBody()
	e.stamp(resp, result, now)
}

// stamp sets the answer's Age (e's, at now) and X-Cache.
func (e *Entry) stamp(resp *fasthttp.Response, result []byte, now int64) {
	var ageBuf [20]byte
	resp.Header.SetCanonical(nameAge, strconv.AppendInt(ageBuf[:0], int64(max(e.age(now), 0)/time.Second), 10))
	resp.Header.SetCanonical(nameXCache, result)
}

// encoding version of an Entry in a shared store; a different version reads as a miss.
const encodingV1 = 1

// encode writes e in the shared store's format.
func (e *Entry) encode() []byte {
	b := make([]byte, 0, e.size())
	b = append(b, 'w', 'c', encodingV1)
	flags := uint64(0)
	if e.Revalidate {
		flags |= 1
	}
	if e.Strict {
		flags |= 2
	}
	if e.marker() {
		flags |= 4
	}
	for _, n := range []uint64{uint64(e.Status), uint64(e.Stored), uint64(e.Age0), uint64(e.Lifetime), uint64(e.SWR), uint64(e.SIE), flags} {
		b = binary.AppendUvarint(b, n)
	}
	field := func(v []byte) { b = append(binary.AppendUvarint(b, uint64(len(v))), v...) }
	field(e.Key)
	field(e.ETag)
	field(e.LastModified)
	field(e.Body)
	b = binary.AppendUvarint(b, uint64(len(e.Headers)))
	for _, h := range e.Headers {
		field(h[0])
		field(h[1])
	}
	b = binary.AppendUvarint(b, uint64(len(e.Vary)))
	for _, v := range e.Vary {
		field(v)
	}
	return b
}

var errCorrupt = errors.New("cache entry: malformed encoding")

// decode reads an encoded entry; the entry's slices point into b.
func decode(b []byte) (*Entry, error) {
	if len(b) < 3 || b[0] != 'w' || b[1] != 'c' || b[2] != encodingV1 {
		return nil, errCorrupt
	}
	b = b[3:]
	bad := false
	num := func() uint64 {
		n, k := binary.Uvarint(b)
		if k <= 0 {
			bad = true
			return 0
		}
		b = b[k:]
		return n
	}
	field := func() []byte {
		n := num()
		if bad || n > uint64(len(b)) {
			bad = true
			return nil
		}
		if n == 0 {
			return nil
		}
		v := b[:n:n]
		b = b[n:]
		return v
	}
	e := &Entry{Status: int(num()), Stored: int64(num()), Age0: time.Duration(num()), Lifetime: time.Duration(num()),
		SWR: time.Duration(num()), SIE: time.Duration(num())}
	flags := num()
	e.Revalidate, e.Strict = flags&1 != 0, flags&2 != 0
	e.Key, e.ETag, e.LastModified, e.Body = field(), field(), field(), field()
	if n := num(); !bad && n <= uint64(len(b)) {
		e.Headers = make([][2][]byte, n)
		for i := range e.Headers {
			e.Headers[i] = [2][]byte{field(), field()}
		}
	}
	if n := num(); !bad && n <= uint64(len(b))+1 {
		if flags&4 != 0 {
			e.Vary = make([][]byte, 0, n)
		}
		for range n {
			e.Vary = append(e.Vary, field())
		}
	}
	if bad || len(b) != 0 {
		return nil, errCorrupt
	}
	return e, nil
}
