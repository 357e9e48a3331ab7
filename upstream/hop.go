package upstream

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// hopHeaders are meaningful for one connection only (RFC 9110 §7.6.1) and never forwarded. Trailer is
// not among them: fasthttp relays trailers end to end, and their announcement must travel with them.
var hopHeaders = [...]string{
	fasthttp.HeaderConnection,
	"Proxy-Connection",
	fasthttp.HeaderKeepAlive,
	fasthttp.HeaderProxyAuthenticate,
	fasthttp.HeaderProxyAuthorization,
	fasthttp.HeaderTE,
	fasthttp.HeaderTransferEncoding,
	fasthttp.HeaderUpgrade,
}

// StripHopRequest removes hop-by-hop headers from a request as received, including every header named
// by any Connection line. The gateway calls it before adding headers of its own, so that a client
// cannot name X-Forwarded-For or X-Request-Id in Connection to have them removed after weir set them.
//
// The Connection lines are read from the raw header block: fasthttp's Peek returns only the first
// line (or just "close"), and iterating with All() re-serializes the Cookie header. It does not
// allocate.
func StripHopRequest(h *fasthttp.RequestHeader) {
	raw := h.RawHeaders()
	for len(raw) > 0 {
		var line []byte
		line, raw = nextLine(raw)
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !bytes.EqualFold(bytes.TrimSpace(name), []byte(fasthttp.HeaderConnection)) {
			continue
		}
		// obs-fold: continuation lines belong to this header.
		for len(raw) > 0 && (raw[0] == ' ' || raw[0] == '\t') {
			var more []byte
			more, raw = nextLine(raw)
			deleteNamedRequest(h, more)
		}
		deleteNamedRequest(h, value)
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// deleteNamedRequest deletes the headers a Connection value lists. Host and Content-Length are
// refused: one decides routing, the other framing, and neither is the client's to drop per hop.
func deleteNamedRequest(h *fasthttp.RequestHeader, list []byte) {
	for len(list) > 0 {
		var name []byte
		name, list = nextToken(list)
		if len(name) > 0 && !bytes.EqualFold(name, []byte(fasthttp.HeaderHost)) &&
			!bytes.EqualFold(name, []byte(fasthttp.HeaderContentLength)) {
			h.DelBytes(name)
		}
	}
}

// StripHopResponse removes hop-by-hop headers from an upstream response, including every header named
// by any Connection line. (A response from fasthttp's client has no raw header block; All() leaves
// Set-Cookie as received.) It is written apart from StripHopRequest rather than generically: passing
// Peek/Del as func values or through an interface moves the scratch buffer to the heap.
func StripHopResponse(h *fasthttp.ResponseHeader) {
	var buf [512]byte
	names := buf[:0] // a longer list is abuse; append then moves it to the heap, and it still works
	for k, v := range h.All() {
		if string(k) == fasthttp.HeaderConnection {
			names = append(append(names, v...), ',')
		}
	}
	for len(names) > 0 {
		var name []byte
		if name, names = nextToken(names); len(name) > 0 && !bytes.EqualFold(name, []byte(fasthttp.HeaderContentLength)) {
			h.DelBytes(name)
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// nextLine splits the first CRLF- (or LF-) terminated line off b.
func nextLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return bytes.TrimSuffix(b[:i], []byte("\r")), b[i+1:]
	}
	return b, nil
}

// nextToken splits the first element off a comma-separated header list.
func nextToken(list []byte) (tok, rest []byte) {
	if i := bytes.IndexByte(list, ','); i >= 0 {
		return bytes.TrimSpace(list[:i]), list[i+1:]
	}
	return bytes.TrimSpace(list), nil
}
