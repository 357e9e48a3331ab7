package cache

import (
	"bytes"
	"time"

	"github.com/valyala/fasthttp"
)

// directives are a response's Cache-Control directives that a shared cache acts on (RFC 9111 §5.2.2,
// and RFC 5861's stale-while-revalidate and stale-if-error).
type directives struct {
	maxAge, sMaxAge, swr, sie                time.Duration
	hasMaxAge, hasSMaxAge, hasSWR, hasSIE    bool
	noStore, noCache, private, public        bool
	mustRevalidate, proxyRevalidate, invalid bool
}

// parseCacheControl adds the directives in one Cache-Control value to d. Unknown directives are
// ignored, as RFC 9111 requires; a duplicated or malformed freshness directive makes the response
// stale at once (§4.2.1: "a cache SHOULD consider it stale").
func parseCacheControl(v []byte, d *directives) {
	for len(v) > 0 {
		var item []byte
		item, v = nextItem(v)
		name, arg, hasArg := bytes.Cut(item, []byte{'='})
		name = bytes.TrimSpace(name)
		arg = bytes.Trim(bytes.TrimSpace(arg), `"`)
		seconds := func(dst *time.Duration, seen *bool) {
			n, ok := parseSeconds(arg)
			if !hasArg || !ok || *seen {
				d.invalid = true
				return
			}
			*dst, *seen = n, true
		}
		switch {
		case bytes.EqualFold(name, []byte("max-age")):
			seconds(&d.maxAge, &d.hasMaxAge)
		case bytes.EqualFold(name, []byte("s-maxage")):
			seconds(&d.sMaxAge, &d.hasSMaxAge)
		case bytes.EqualFold(name, []byte("stale-while-revalidate")):
			seconds(&d.swr, &d.hasSWR)
		case bytes.EqualFold(name, []byte("stale-if-error")):
			seconds(&d.sie, &d.hasSIE)
		case bytes.EqualFold(name, []byte("no-store")):
			d.noStore = true
		case bytes.EqualFold(name, []byte("no-cache")):
			// no-cache="field" lets a cache store the rest; weir revalidates the whole response instead.
			d.noCache = true
		case bytes.EqualFold(name, []byte("private")):
			// private="field" likewise: not stored at all, the safe reading for a shared cache.
			d.private = true
		case bytes.EqualFold(name, []byte("public")):
			d.public = true
		case bytes.EqualFold(name, []byte("must-revalidate")):
			d.mustRevalidate = true
		case bytes.EqualFold(name, []byte("proxy-revalidate")):
			d.proxyRevalidate = true
		}
	}
}

// nextItem cuts the first item, trimmed, off a comma-separated header value.
func nextItem(list []byte) (item, rest []byte) {
	if i := bytes.IndexByte(list, ','); i >= 0 {
		return bytes.TrimSpace(list[:i]), list[i+1:]
	}
	return bytes.TrimSpace(list), nil
}

// parseSeconds reads a delta-seconds value; an overflowing one is the largest (RFC 9111 §1.2.2).
func parseSeconds(b []byte) (time.Duration, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < 1<<31 {
			n = n*10 + int64(c-'0')
		}
	}
	return time.Duration(min(n, 1<<31)) * time.Second, true
}

// cacheableByDefault are the statuses a cache may store without explicit freshness (RFC 9110 §15.1),
// 206 left out: weir does not cache ranges.
var cacheableByDefault = map[int]bool{200: true, 203: true, 204: true, 300: true, 301: true, 308: true,
	404: true, 405: true, 410: true, 414: true, 501: true}

// responsePolicy is what a response allows a shared cache to do with it.
type responsePolicy struct {
	store bool
	// why is the reason it is not stored, for tests and debugging.
	why string
	// lifetime is its freshness lifetime; swr and sie how long it may be served stale.
	lifetime, swr, sie time.Duration
	// revalidate: every use needs the upstream's confirmation (no-cache); strict: it must never be
	// served stale (must-revalidate, proxy-revalidate, s-maxage).
	revalidate, strict bool
}

// policyOf decides what the filter may do with a response with status (a 304's is the stored
// response's) that arrived at now. A request with credentials reaches it only with
// allow_authorization: the route said such answers may be shared.
func (f *Filter) policyOf(resp *fasthttp.Response, status int, now time.Time) responsePolicy {
	var d directives
	for _, v := range resp.Header.PeekAll(fasthttp.HeaderCacheControl) {
		parseCacheControl(v, &d)
	}
	explicit := d.hasMaxAge || d.hasSMaxAge || len(resp.Header.Peek(fasthttp.HeaderExpires)) > 0
	switch {
	case resp.IsBodyStream():
		return responsePolicy{why: "streamed"}
	case d.noStore:
		return responsePolicy{why: "no-store"}
	case d.private:
		return responsePolicy{why: "private"}
	case !cacheableByDefault[status] && !(explicit && (status < 400 && status != 206 && status != 304)):
		return responsePolicy{why: "status"}
	case len(resp.Header.Peek(fasthttp.HeaderSetCookie)) > 0 && !f.cfg.AllowSetCookie:
		return responsePolicy{why: "set-cookie"}
	case bytes.Contains(resp.Header.Peek(fasthttp.HeaderVary), []byte("*")):
		return responsePolicy{why: "vary-star"}
	case len(resp.Body()) > f.maxObject:
		return responsePolicy{why: "too-large"}
	}
	p := responsePolicy{store: true, revalidate: d.noCache, strict: d.mustRevalidate || d.proxyRevalidate || d.hasSMaxAge,
		swr: f.cfg.StaleWhileRevalidate, sie: f.cfg.StaleIfError}
	switch {
	case d.invalid:
		p.lifetime = 0
	case d.hasSMaxAge:
		p.lifetime = d.sMaxAge
	case d.hasMaxAge:
		p.lifetime = d.maxAge
	case explicit:
		// Expires, relative to the upstream's Date (its clock, not ours); an invalid date means expired.
		exp, err := fasthttp.ParseHTTPDate(resp.Header.Peek(fasthttp.HeaderExpires))
		date, derr := fasthttp.ParseHTTPDate(resp.Header.Peek(fasthttp.HeaderDate))
		if derr != nil {
			date = now
		}
		if err == nil && exp.After(date) {
			p.lifetime = exp.Sub(date)
		}
	default:
		p.lifetime = f.cfg.TTL
	}
	p.lifetime = min(p.lifetime, f.cfg.MaxTTL)
	if d.hasSWR {
		p.swr = min(d.swr, f.cfg.MaxTTL)
	}
	if d.hasSIE {
		p.sie = min(d.sie, f.cfg.MaxTTL)
	}
	if p.strict {
		p.swr, p.sie = 0, 0
	}
	if p.lifetime <= 0 && !p.revalidate && p.swr == 0 && p.sie == 0 && !hasValidators(resp) {
		return responsePolicy{why: "no-freshness"}
	}
	return p
}

func hasValidators(resp *fasthttp.Response) bool {
	return len(resp.Header.Peek(fasthttp.HeaderETag)) > 0 || len(resp.Header.Peek(fasthttp.HeaderLastModified)) > 0
}

// notModified reports whether the client's conditional request is satisfied by an entry with etag
// and lastModified (RFC 9110 §13.1.2, §13.1.3: If-None-Match wins over If-Modified-Since; weak
// comparison).
func notModified(req *fasthttp.RequestHeader, etag, lastModified []byte) bool {
	if inm := req.Peek(fasthttp.HeaderIfNoneMatch); len(inm) > 0 {
		if len(etag) == 0 {
			return false
		}
		if bytes.Equal(bytes.TrimSpace(inm), []byte("*")) {
			return true
		}
		want := weakless(etag)
		for len(inm) > 0 {
			var tag []byte
			tag, inm = nextItem(inm)
			if bytes.Equal(weakless(tag), want) {
				return true
			}
		}
		return false
	}
	ims := req.Peek(fasthttp.HeaderIfModifiedSince)
	if len(ims) == 0 || len(lastModified) == 0 {
		return false
	}
	since, err := fasthttp.ParseHTTPDate(ims)
	if err != nil {
		return false
	}
	lm, err := fasthttp.ParseHTTPDate(lastModified)
	return err == nil && !lm.After(since)
}

func weakless(tag []byte) []byte {
	if len(tag) > 2 && (tag[0] == 'W' || tag[0] == 'w') && tag[1] == '/' {
		return tag[2:]
	}
	return tag
}
