package gateway

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"net"
	"net/netip"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
	"github.com/weir-gateway/weir/upstream"
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

// replacedUntrusted are the headers weir writes itself for a peer it does not trust; any the client
// sent are dropped. The underscore spellings matter to CGI-style upstreams (nginx variables, WSGI, PHP),
// which map them to the same variable names as the dashed ones.
var replacedUntrusted = upstream.NewNameSet(headerXFF, headerXFProto, headerXFHost, headerRequestID, "Forwarded",
	"X-Real-Ip", "X_forwarded_for", "X_forwarded_proto", "X_forwarded_host", "X_real_ip", "X_request_id",
	headerClientCertSubject, headerClientCertFingerprint, "X_client_cert_subject", "X_client_cert_fingerprint",
	headerConsumer, "X_consumer")

// replacedTrusted: a trusted proxy's X-Forwarded-Proto and -Host stay; X-Forwarded-For is rewritten
// with the peer appended. The client certificate headers describe weir's own TLS peer, and X-Consumer
// weir's own authentication, so nobody's are believed.
var replacedTrusted = upstream.NewNameSet(headerXFF, headerRequestID, "X_request_id",
	headerClientCertSubject, headerClientCertFingerprint, "X_client_cert_subject", "X_client_cert_fingerprint",
	headerConsumer, "X_consumer")

// headerConsumer carries the authenticated caller's name upstream (Exchange.Consumer).
// The forwarding headers' names in fasthttp's canonical form, for SetCanonical; proto values.
var (
	nameXFF, nameXFProto, nameXFHost = []byte(headerXFF), []byte(headerXFProto), []byte(headerXFHost)
	nameRequestID, nameHSTS          = []byte(headerRequestID), []byte(headerHSTS)
	valueHTTP, valueHTTPS            = []byte("http"), []byte("https")
)

const headerConsumer = "X-Consumer"

// forwardHeaders prepares the request's headers for the upstream, in one pass that keeps the order of
// the lines it leaves: it strips hop-by-hop headers and the headers weir replaces, then writes
// X-Forwarded-For, -Proto, -Host and X-Request-Id. It also resolves the client address into x.
//
// Stripping comes before weir's own headers, so a client cannot name them in Connection to have them
// removed. A trusted proxy's X-Forwarded-* are believed: XFF gets the peer appended, Proto and Host are
// kept if present, and the client is the right-most XFF address that is not itself a trusted proxy.
// Anyone else's are replaced, so a client cannot forge where it came from.
func (s *Snapshot) forwardHeaders(ctx *fasthttp.RequestCtx, x *filters.Exchange) {
	h := &ctx.Request.Header
	peer := peerAddr(ctx)
	var peerBuf [64]byte
	peerText := peer.AppendTo(peerBuf[:0])
	x.Client = peer
	x.ClientIP = append(x.IPBuf(), peerText...)

	trusted := s.isTrusted(peer)
	// A client may send several X-Forwarded-For lines; they form one list (RFC 9110 §5.3). They are
	// read before the strip below removes them.
	var buf [512]byte
	xff := buf[:0]
	replaced := replacedUntrusted
	if trusted {
		replaced = replacedTrusted
		lines := h.PeekAll(headerXFF)
		x.Client, x.ClientIP = s.clientFromXFF(peer, x.ClientIP, lines)
		for _, line := range lines {
			xff = append(append(xff, line...), ", "...)
		}
	}
	upstream.StripHopRequest(h, replaced)

	// The strip removed every line of the replaced headers, so weir's are set as the only ones. They
	// go in by their canonical names, which skips fasthttp's normalization of the key and its scan of
	// the value for line breaks: the values come from parsed header lines, the peer's address and a
	// checked request ID, none of which can hold one.
	h.SetCanonical(nameXFF, append(xff, peerText...))
	h.SetCanonical(nameRequestID, x.RequestID)
	proto := valueHTTP
	if tc, ok := ctx.Conn().(*tlsConn); ok {
		proto = valueHTTPS
		if tc.subject != nil {
			h.AddBytesV(headerClientCertSubject, tc.subject)
			h.AddBytesV(headerClientCertFingerprint, tc.fingerprint)
		}
	} else if ctx.IsTLS() {
		proto = valueHTTPS
	}
	host := h.Host()
	if !trusted {
		h.SetCanonical(nameXFProto, proto)
		if len(host) > 0 {
			h.SetCanonical(nameXFHost, host)
		}
		return
	}
	// A trusted proxy's lines stay, but an empty one carries no value: Set replaces it in place rather
	// than leaving it first for upstreams that read the first line.
	if len(h.Peek(headerXFProto)) == 0 {
		h.SetCanonical(nameXFProto, proto)
	}
	if len(host) > 0 && len(h.Peek(headerXFHost)) == 0 {
		h.SetBytesV(headerXFHost, host)
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
// else generates 128 random bits in hex, into x. forwardHeaders sends it upstream.
func requestID(ctx *fasthttp.RequestCtx, x *filters.Exchange) {
	if v := ctx.Request.Header.Peek(headerRequestID); saneRequestID(v) {
		x.RequestID = append(x.IDBuf(), v...)
		return
	}
	var raw [16]byte
	for i := 0; i < len(raw); i += 8 {
		r := rand.Uint64()
		for j := 0; j < 8; j++ {
			raw[i+j] = byte(r >> (8 * j))
		}
	}
	x.RequestID = hex.AppendEncode(x.IDBuf(), raw[:])
}

// setOnly makes value the only line of a response header; key is in canonical form. Set alone
// replaces just the first line; Del alone reorders other repeated headers (see upstream/hop.go), so
// Del is used only when the header is there more than once.
func setOnly(h *fasthttp.ResponseHeader, key []byte, value []byte) {
	if len(h.PeekAll(b2s(key))) > 1 {
		h.DelBytes(key)
	}
	h.SetCanonical(key, value) // key is canonical already; value is the gateway's own
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
