package gateway

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"net"
	"net/netip"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
)

const (
	headerXFF       = "X-Forwarded-For"
	headerXFProto   = "X-Forwarded-Proto"
	headerXFHost    = "X-Forwarded-Host"
	headerRequestID = "X-Request-Id"
)

// peerAddr is the address of the TCP peer.
func peerAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	if ta, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(ctx.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (s *Snapshot) isTrusted(a netip.Addr) bool {
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// setForwarded writes X-Forwarded-For, -Proto and -Host and resolves the client address into x.
//
// A trusted proxy's X-Forwarded-* are believed: XFF gets the peer appended, Proto and Host are kept if
// present, and the client is the right-most XFF address that is not itself a trusted proxy. Anyone
// else's are replaced, so a client cannot forge where it came from.
func (s *Snapshot) setForwarded(ctx *fasthttp.RequestCtx, x *filters.Exchange) {
	h := &ctx.Request.Header
	peer := peerAddr(ctx)
	var peerBuf [64]byte
	peerText := peer.AppendTo(peerBuf[:0])
	x.Client = peer
	x.ClientIP = append(x.IPBuf(), peerText...)

	trusted := s.isTrusted(peer)
	// A client may send several X-Forwarded-For lines; they form one list (RFC 9110 §5.3).
	var buf [512]byte
	prior := buf[:0]
	if trusted {
		lines := h.PeekAll(headerXFF)
		x.Client, x.ClientIP = s.clientFromXFF(peer, x.ClientIP, lines)
		for i, line := range lines {
			if i > 0 {
				prior = append(prior, ", "...)
			}
			prior = append(prior, line...)
		}
	}
	h.Del(headerXFF)
	if len(prior) > 0 {
		h.SetBytesV(headerXFF, append(append(prior, ", "...), peerText...))
	} else {
		h.SetBytesV(headerXFF, peerText)
	}
	if !trusted || len(h.Peek(headerXFProto)) == 0 {
		h.Del(headerXFProto)
		if ctx.IsTLS() {
			h.Set(headerXFProto, "https")
		} else {
			h.Set(headerXFProto, "http")
		}
	}
	if !trusted || len(h.Peek(headerXFHost)) == 0 {
		h.Del(headerXFHost)
		if host := h.Host(); len(host) > 0 {
			h.SetBytesV(headerXFHost, host)
		}
	}
	if !trusted {
		// Other spellings of the same claims would let a client speak past the rules above.
		h.Del("Forwarded")
		h.Del("X-Real-Ip")
		// Underscore spellings: CGI-style upstreams (nginx variables, WSGI, PHP) map them to the same
		// variable names as the dashed headers weir sets.
		h.Del("X_forwarded_for")
		h.Del("X_forwarded_proto")
		h.Del("X_forwarded_host")
		h.Del("X_real_ip")
	}
}

// clientFromXFF picks the right-most address in a trusted proxy's X-Forwarded-For lines that is not
// itself a trusted proxy; that is the first hop no trusted party vouches for. An entry that does not
// parse stops the walk, and the address found so far (at worst the peer) is kept. lines must be the
// header's own memory, not a stack buffer: netip.ParseAddr may keep its input.
func (s *Snapshot) clientFromXFF(peer netip.Addr, peerText []byte, lines [][]byte) (netip.Addr, []byte) {
	client, text := peer, peerText
	for l := len(lines) - 1; l >= 0; l-- {
		for rest := lines[l]; len(rest) > 0; {
			var item []byte
			if i := bytes.LastIndexByte(rest, ','); i >= 0 {
				item, rest = bytes.TrimSpace(rest[i+1:]), rest[:i]
			} else {
				item, rest = bytes.TrimSpace(rest), nil
			}
			a, err := netip.ParseAddr(b2s(item))
			if err != nil {
				return client, text
			}
			client, text = a.Unmap(), append(text[:0], item...)
			if !s.isTrusted(client) {
				return client, text
			}
		}
	}
	return client, text
}

// requestID keeps a client's X-Request-ID when it is sane (1–128 characters of [A-Za-z0-9._:+/=-]),
// else generates 128 random bits in hex. The value is written into x and onto the request.
func requestID(ctx *fasthttp.RequestCtx, x *filters.Exchange) {
	if v := ctx.Request.Header.Peek(headerRequestID); saneRequestID(v) {
		x.RequestID = append(x.IDBuf(), v...)
	} else {
		var raw [16]byte
		for i := 0; i < len(raw); i += 8 {
			r := rand.Uint64()
			for j := 0; j < 8; j++ {
				raw[i+j] = byte(r >> (8 * j))
			}
		}
		x.RequestID = hex.AppendEncode(x.IDBuf(), raw[:])
	}
	// Del first: Set replaces only the first of several lines.
	ctx.Request.Header.Del(headerRequestID)
	ctx.Request.Header.SetBytesV(headerRequestID, x.RequestID)
}

func saneRequestID(v []byte) bool {
	if len(v) == 0 || len(v) > 128 {
		return false
	}
	for _, c := range v {
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '+' || c == '/' || c == '=' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}
