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

// maxConnectionValue bounds the Connection header we parse for extra hop-by-hop names; a longer one is
// abuse, and its listed headers are then left to the generic list above.
const maxConnectionValue = 512

// StripHopRequest removes hop-by-hop headers, including every header the Connection header names.
// It is written once per header type, not generically: passing Peek/Del as func values or through an
// interface moves the scratch buffer to the heap, one allocation per request.
func StripHopRequest(h *fasthttp.RequestHeader) {
	var buf [maxConnectionValue]byte
	if v := h.Peek(fasthttp.HeaderConnection); len(v) > 0 && len(v) <= len(buf) {
		for list := buf[:copy(buf[:], v)]; len(list) > 0; {
			var name []byte
			name, list = nextToken(list)
			if len(name) > 0 {
				h.DelBytes(name)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// StripHopResponse is StripHopRequest for responses.
func StripHopResponse(h *fasthttp.ResponseHeader) {
	var buf [maxConnectionValue]byte
	if v := h.Peek(fasthttp.HeaderConnection); len(v) > 0 && len(v) <= len(buf) {
		for list := buf[:copy(buf[:], v)]; len(list) > 0; {
			var name []byte
			name, list = nextToken(list)
			if len(name) > 0 {
				h.DelBytes(name)
			}
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
