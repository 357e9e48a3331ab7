package gateway

import (
	"bytes"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/upstream"
)

// checkRequest enforces the gateway's request rules before routing. It returns 0 for a request that
// may proceed, or the status and reason to answer with.
//
// The central rule: the gateway decides one host and one path, routes on them, and forwards exactly
// them. fasthttp's ctx.Path() is the decoded, dot-segment-resolved path, and the upstream client
// writes that same normalized path; the router is handed ctx.Path() too (never the raw path it would
// use by default), so "/public/../admin" is routed and forwarded as "/admin", never matched as
// /public/... and sent as /admin.
func checkRequest(ctx *fasthttp.RequestCtx) (int, string) {
	req := &ctx.Request
	if req.Header.IsConnect() || req.Header.IsTrace() {
		return fasthttp.StatusNotImplemented, "method not supported by the gateway"
	}
	// A chunked request has a length of -1, or 0 once fasthttp found its body empty; other requests
	// skip the scan.
	if cl := req.Header.ContentLength(); (cl == -1 || cl == 0) && upstream.HasHeaderLine(req.Header.RawHeaders(), fasthttp.HeaderContentLength) &&
		upstream.HasHeaderLine(req.Header.RawHeaders(), fasthttp.HeaderTransferEncoding) {
		// fasthttp framed the body by its chunks; a proxy in front may have framed it by the length,
		// and then the rest of this connection is not what that proxy thinks it sent. RFC 9112 §6.3
		// lets a server refuse the request, and the connection must not be reused after it.
		ctx.SetConnectionClose()
		return fasthttp.StatusBadRequest, "request has both Content-Length and Transfer-Encoding"
	}
	if hasSpaceInHeaderName(req.Header.RawHeaders()) {
		// fasthttp lets "X Test: 1" through; an upstream may read the name as "X", "XTest" or refuse
		// it. nginx answers 400, as RFC 9110's token rule implies.
		return fasthttp.StatusBadRequest, "header name contains a space"
	}
	target := req.Header.RequestURI()
	switch {
	case len(target) > 0 && target[0] == '/':
	case hasPrefixFold(target, "http://") || hasPrefixFold(target, "https://"):
		// Absolute form: RFC 9112 §3.2.2 says the target's authority wins over the Host header, and
		// fasthttp's URI already holds it. Make the header agree, so routing (which reads the header)
		// and forwarding (which sends the header) see the same host; the path goes upstream in origin
		// form.
		host := ctx.URI().Host()
		if len(host) == 0 {
			return fasthttp.StatusBadRequest, "request target has no host"
		}
		req.Header.SetHostBytes(host)
	default:
		// Authority form (host:port) and asterisk form (*) have no path to route.
		return fasthttp.StatusBadRequest, "request target must be a path"
	}
	raw := req.URI().PathOriginal()
	// Each of these means something different to different decoders, so no single normalized form is
	// safe to route on: an encoded slash, backslash or NUL moves segment boundaries; an encoded percent
	// is decoded again by some upstreams (%252e%252e becomes ..); an encoded semicolon hides a path
	// parameter. Refuse them outright, as Traefik's encodedcharacters middleware does.
	for _, enc := range [...]string{"%2f", "%5c", "%00", "%25", "%3b"} {
		if containsFold(raw, enc) {
			return fasthttp.StatusBadRequest, "path contains an encoded slash, backslash, NUL, percent or semicolon"
		}
	}
	if bytes.IndexByte(raw, '\\') >= 0 {
		return fasthttp.StatusBadRequest, "path contains a backslash"
	}
	path := ctx.Path()
	for _, c := range path {
		if c < 0x20 || c == 0x7f {
			return fasthttp.StatusBadRequest, "path contains a control character"
		}
	}
	if hasDotParamSegment(path) {
		return fasthttp.StatusBadRequest, "path has a dot segment with parameters"
	}
	return 0, ""
}

// hasSpaceInHeaderName reports whether any header line of raw (a request's header block, without the
// request line) has a space before its colon. fasthttp already refuses other non-token bytes and
// whitespace next to the colon.
func hasSpaceInHeaderName(raw []byte) bool {
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if colon := bytes.IndexByte(line, ':'); colon > 0 && bytes.IndexByte(line[:colon], ' ') >= 0 {
			return true
		}
	}
	return false
}

// hasDotParamSegment finds segments like "..;x" or ".;x": fasthttp keeps them, but Java servlet
// containers read them as ".." and "." (the "..;" bypass), so /public/..;/admin would be routed as
// /public and served as /admin.
func hasDotParamSegment(path []byte) bool {
	for len(path) > 0 {
		var seg []byte
		if i := bytes.IndexByte(path[1:], '/'); i >= 0 {
			seg, path = path[1:i+1], path[i+1:]
		} else {
			seg, path = path[1:], nil
		}
		if dot, _, ok := bytes.Cut(seg, []byte(";")); ok && (string(dot) == "." || string(dot) == "..") {
			return true
		}
	}
	return false
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// containsFold reports whether b contains the lower-case ASCII pattern sub, ignoring case.
func containsFold(b []byte, sub string) bool {
	for i := 0; i+len(sub) <= len(b); i++ {
		if bytes.EqualFold(b[i:i+len(sub)], []byte(sub)) {
			return true
		}
	}
	return false
}
