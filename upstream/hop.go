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

// maxConnectionNames bounds the Connection header names we collect; a longer list is abuse, and its
// extra names are then left to the generic list above.
const maxConnectionNames = 512

// StripHopRequest removes hop-by-hop headers, including every header named by any Connection line.
// It is written once per header type, not generically: passing Peek/Del as func values or through an
// interface moves the scratch buffer to the heap, one allocation per request.
func StripHopRequest(h *fasthttp.RequestHeader) {
	var buf [maxConnectionNames]byte
	names := buf[:0]
	// Not Peek: it returns only the first Connection line, or just "close" when one line says so.
	for k, v := range h.All() {
		if string(k) == fasthttp.HeaderConnection && len(names)+len(v) < cap(names) {
			names = append(append(names, v...), ',')
		}
	}
	for len(names) > 0 {
		var name []byte
		if name, names = nextToken(names); len(name) > 0 {
			h.DelBytes(name)
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// StripHopResponse is StripHopRequest for responses.
func StripHopResponse(h *fasthttp.ResponseHeader) {
	var buf [maxConnectionNames]byte
	names := buf[:0]
	for k, v := range h.All() {
		if string(k) == fasthttp.HeaderConnection && len(names)+len(v) < cap(names) {
			names = append(append(names, v...), ',')
		}
	}
	for len(names) > 0 {
		var name []byte
		if name, names = nextToken(names); len(name) > 0 {
			h.DelBytes(name)
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// nextToken splits the first element off a comma-separated header list.
func nextToken(list []byte) (tok, rest []byte) {
	if i := bytes.IndexByte(list, ','); i >= 0 {
		return bytes.TrimSpace(list[:i]), list[i+1:]
	}
	return bytes.TrimSpace(list), nil
}
