package filters

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/pattern"
)

// RewriteConfig is the `rewrite` filter's settings: how a request is changed before it goes upstream
// and how the response is changed before it goes back. Every key is optional, but at least one must do
// something.
//
// Paths here are decoded paths, the form the gateway routes on (ctx.Path(): percent-decoded, dot
// segments resolved, "//" collapsed). Prefixes and templates are therefore written with characters as
// themselves, never percent-encoded, and the path sent upstream is the rewritten decoded path,
// percent-encoded by the upstream client as it writes the request line.
//
// The path is changed by at most one of: strip_prefix/add_prefix, path, regex.
type RewriteConfig struct {
	// StripPrefix is removed from the start of the path when it is a whole-segment prefix: with /api,
	// /api/x becomes /x and /api becomes /, while /apiary is left alone. It starts with / and does not
	// end with one ("/" would strip nothing). Default "": nothing is stripped.
	StripPrefix string `yaml:"strip_prefix"`
	// AddPrefix is prepended to the path after strip_prefix: with /v2, /x becomes /v2/x and / becomes
	// /v2/. It starts with / and does not end with one. Default "": nothing is added.
	AddPrefix string `yaml:"add_prefix"`
	// Path replaces the whole path with a template over the route's path parameters: with the route
	// /api/users/{id}, "/v2/users/{id}" sends /api/users/42 as /v2/users/42. A catch-all parameter
	// ({rest:*} in the route) is written {rest} and brings its slashes along. An absent optional
	// parameter is empty. Parameters are read from the path the route matched, even when an earlier
	// filter rewrote it. Default "": path kept.
	Path string `yaml:"path"`
	// Regex rewrites the path with a regular expression: every match of pattern in the path is replaced
	// by replace. Default: absent, path kept. Unlike the other settings it allocates per request.
	Regex *RegexRewrite `yaml:"regex"`
	// Host is the Host header sent upstream (host or host:port), replacing the client's. Default "":
	// the client's Host is sent. (request_headers.remove: [Host] sends the target's address instead.)
	Host string `yaml:"host"`
	// Method is the method sent upstream, in upper case. CONNECT and TRACE are refused, and so is HEAD,
	// whose upstream answer has no body to give the client's request. The client's own method is put
	// back once the upstream has answered, so the response is framed for the request the client made.
	// Default "": the client's method is sent.
	Method string `yaml:"method"`
	// RequestHeaders changes the headers sent upstream, after host and method. Hop-by-hop headers
	// (Connection, Keep-Alive, Proxy-*, TE, Transfer-Encoding, Upgrade: the gateway strips them anyway)
	// and Content-Length (computed from the body) cannot be named; Host and X-Request-Id (the gateway's
	// request ID) only in remove. Use host to set Host. Default: headers kept.
	RequestHeaders HeaderRewrite `yaml:"request_headers"`
	// ResponseHeaders changes the headers of every response the route returns, the upstream's and the
	// gateway's own errors for requests this filter let through alike (an unreachable target's 502,
	// for example). Same restrictions as request_headers, except that Host may be named and
	// X-Request-Id, which the gateway sets on every response, not even in remove. Default: headers
	// kept.
	ResponseHeaders HeaderRewrite `yaml:"response_headers"`
	// Query changes the query string sent upstream. Parameters it does not name are forwarded exactly
	// as the client encoded them (empty "&&" pairs are dropped); the values it writes are
	// form-encoded (a space as +). Default: query kept.
	Query QueryRewrite `yaml:"query"`
}

// RegexRewrite is a regular-expression path rewrite.
type RegexRewrite struct {
	// Pattern is a Go regular expression (RE2 syntax) matched against the decoded path. Required.
	Pattern string `yaml:"pattern"`
	// Replace is the replacement for each match, with Go's $1, ${1}, $name and ${name} references to
	// pattern's groups ($$ is a literal $). A reference to a group the pattern lacks is refused, and so
	// is "$1x", which Go reads as the group named "1x" (write ${1}x). The result is a decoded path; a
	// leading / is added if it lacks one. Default "": matches are deleted.
	Replace string `yaml:"replace"`
}

// HeaderRewrite changes a header set. A header name may appear in only one of set, add and remove
// (names compare case-insensitively).
type HeaderRewrite struct {
	// Set gives each named header exactly this value, replacing any it had. Default: none.
	Set map[string]string `yaml:"set"`
	// Add appends a header line with this value, keeping existing lines of that name. Default: none.
	Add map[string]string `yaml:"add"`
	// Remove deletes every line of each named header. Default: none.
	//
	// Set and remove delete with fasthttp's header Del, which fills each gap with the last header line,
	// so the relative order of other repeated lines can change.
	Remove []string `yaml:"remove"`
}

// QueryRewrite changes the query string. A parameter name may appear in only one of set, add and
// remove; names are compared with the client's after decoding, case-sensitively.
type QueryRewrite struct {
	// Set removes every occurrence of each named parameter and appends name=value once, after the
	// parameters kept. Default: none.
	Set map[string]string `yaml:"set"`
	// Add appends name=value, keeping existing occurrences. Default: none.
	Add map[string]string `yaml:"add"`
	// Remove deletes every occurrence of each named parameter; removing the only one leaves no query
	// string at all. Default: none.
	Remove []string `yaml:"remove"`
}

// Rewrite is a compiled rewrite filter. Everything the request path needs is precomputed; the static
// rewrites (prefixes, templates, headers, host, method, query) do not allocate per request as long as
// the new path fits in 1 KiB, the new query in 2 KiB and the route has at most 16 parameters. A regex
// rewrite allocates (regexp has no replace-into-a-buffer API).
type Rewrite struct {
	mode    rewritePathMode
	strip   string
	add     string
	tmpl    []rewriteTmplPart
	pat     *pattern.Pattern
	re      *regexp.Regexp
	replace []byte
	query   *rewriteQuery // nil: the query is not touched
	host    string
	method  string
	reqHdr  rewriteHeaders
	respHdr rewriteHeaders
}

type rewritePathMode uint8

const (
	pathKept rewritePathMode = iota
	pathPrefix
	pathTemplate
	pathRegex
)

// rewriteTmplPart is a literal piece of a path template (param < 0) or the index of a route parameter
// in the order pattern.Params returns them.
type rewriteTmplPart struct {
	lit   string
	param int
}

type rewriteHeaders struct {
	remove []string
	set    []rewriteKV
	add    []rewriteKV
}

type rewriteKV struct{ name, value string }

// rewriteQuery holds the query changes: drop lists the decoded names whose occurrences go (remove and
// set), tail the encoded pairs appended after the parameters kept (set, then add).
type rewriteQuery struct {
	drop []string
	tail []byte
}

const (
	// Sizes of the stack buffers new paths and query strings are built in; longer ones still work but
	// allocate.
	rewritePathBuf  = 1024
	rewriteQueryBuf = 2048
	// maxTemplateParams bounds the route parameters read into a stack array for a path template;
	// routes with more still work but allocate.
	maxTemplateParams = 16
)

// NewRewrite validates cfg and compiles it. env.Pattern supplies the route's parameters for a path
// template. Every bad setting is reported, as ConfigErrors joined together.
func NewRewrite(cfg RewriteConfig, env Env) (*Rewrite, error) {
	r := &Rewrite{host: cfg.Host, method: cfg.Method, pat: env.Pattern}
	var errs []error
	fail := func(field, format string, args ...any) { errs = append(errs, fieldErr(field, format, args...)) }

	// At most one way to change the path.
	var first string
	for _, m := range []struct {
		key, mode string
		set       bool
	}{
		{"path", "path", cfg.Path != ""},
		{"regex", "regex", cfg.Regex != nil},
		{"strip_prefix", "prefix", cfg.StripPrefix != ""},
		{"add_prefix", "prefix", cfg.AddPrefix != ""},
	} {
		switch {
		case !m.set:
		case first == "":
			first = m.key
		case m.mode != "prefix" || (first != "strip_prefix" && first != "add_prefix"):
			fail(m.key, "cannot be combined with %s: path, regex and strip_prefix/add_prefix are alternative ways to change the path; use one", first)
		}
	}

	if cfg.StripPrefix != "" {
		if msg := rewritePrefixProblem(cfg.StripPrefix); msg != "" {
			fail("strip_prefix", "%s", msg)
		} else if cfg.StripPrefix == "/" {
			fail("strip_prefix", `"/" strips nothing; leave strip_prefix out`)
		}
	}
	if cfg.AddPrefix != "" {
		if msg := rewritePrefixProblem(cfg.AddPrefix); msg != "" {
			fail("add_prefix", "%s", msg)
		} else if cfg.AddPrefix == "/" {
			fail("add_prefix", `"/" adds nothing; leave add_prefix out`)
		}
	}
	if cfg.StripPrefix != "" || cfg.AddPrefix != "" {
		r.mode, r.strip, r.add = pathPrefix, cfg.StripPrefix, cfg.AddPrefix
	}
	if cfg.Path != "" {
		var names []string
		if env.Pattern != nil {
			names = env.Pattern.Names()
		}
		tmpl, msg := compileRewriteTemplate(cfg.Path, names, env.Pattern)
		if msg != "" {
			fail("path", "%s", msg)
		}
		r.mode, r.tmpl = pathTemplate, tmpl
	}
	if cfg.Regex != nil {
		r.mode = pathRegex
		r.replace = []byte(cfg.Regex.Replace)
		if cfg.Regex.Pattern == "" {
			fail("regex.pattern", "is required: the regular expression matched against the path")
		} else if re, err := regexp.Compile(cfg.Regex.Pattern); err != nil {
			fail("regex.pattern", "invalid regular expression: %v", err)
		} else {
			r.re = re
			if msg := rewriteReplaceProblem(re, cfg.Regex.Replace); msg != "" {
				fail("regex.replace", "%s", msg)
			}
		}
	}

	if cfg.Host != "" && !rewriteValidHost(cfg.Host) {
		fail("host", "%q is not a host name or host:port", cfg.Host)
	}
	if cfg.Method != "" {
		switch {
		case !rewriteUpperToken(cfg.Method):
			fail("method", "%q is not an upper-case method name such as POST", cfg.Method)
		case cfg.Method == fasthttp.MethodConnect || cfg.Method == fasthttp.MethodTrace:
			fail("method", "%s is not forwarded by the gateway", cfg.Method)
		case cfg.Method == fasthttp.MethodHead:
			fail("method", "HEAD would leave the client's request without a response body")
		}
	}

	var hErrs []error
	r.reqHdr, hErrs = compileRewriteHeaders("request_headers", cfg.RequestHeaders, true)
	errs = append(errs, hErrs...)
	if cfg.Host != "" {
		for i, n := range cfg.RequestHeaders.Remove {
			if strings.EqualFold(n, fasthttp.HeaderHost) {
				fail(fmt.Sprintf("request_headers.remove[%d]", i), "Host cannot be removed when the host setting sets it; use one")
			}
		}
	}
	r.respHdr, hErrs = compileRewriteHeaders("response_headers", cfg.ResponseHeaders, false)
	errs = append(errs, hErrs...)
	var qErrs []error
	r.query, qErrs = compileRewriteQuery(cfg.Query)
	errs = append(errs, qErrs...)

	if r.mode == pathKept && r.query == nil && r.host == "" && r.method == "" && r.reqHdr.empty() && r.respHdr.empty() && len(errs) == 0 {
		fail("", "changes nothing; give at least one of strip_prefix, add_prefix, path, regex, host, method, request_headers, response_headers, query")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// Wrap returns the handler applying the rewrite around next.
func (r *Rewrite) Wrap(next Handler) Handler { return &rewriteStep{r: r, next: next} }

type rewriteStep struct {
	r    *Rewrite
	next Handler
}

// Serve rewrites the request (path, then query, host, method, headers), runs the rest of the chain,
// then rewrites the response headers.
func (s *rewriteStep) Serve(x *Exchange) {
	r := s.r
	req := &x.Ctx.Request
	switch r.mode {
	case pathPrefix:
		r.rewritePrefix(req.URI())
	case pathTemplate:
		r.rewriteTemplate(req.URI(), x.Path)
	case pathRegex:
		r.rewriteRegex(req.URI())
	}
	if r.query != nil {
		r.query.apply(req.URI())
	}
	if r.host != "" {
		req.Header.SetHost(r.host)
	}
	if r.method == "" {
		r.reqHdr.applyRequest(&req.Header)
		s.next.Serve(x)
	} else {
		s.serveAs(x)
	}
	r.respHdr.applyResponse(&x.Ctx.Response.Header)
}

// serveAs runs the rest of the chain with the request's method rewritten. The server frames the
// response (a body or not, for HEAD) by the request's method after the handler returns, and the access
// log reports it: both must see the client's method, even when something after this step panics and
// the gateway answers 500 instead, hence the defer.
func (s *rewriteStep) serveAs(x *Exchange) {
	req := &x.Ctx.Request
	var saved [24]byte
	orig := append(saved[:0], req.Header.Method()...)
	defer req.Header.SetMethodBytes(orig)
	req.Header.SetMethod(s.r.method)
	s.r.reqHdr.applyRequest(&req.Header)
	s.next.Serve(x)
}

// The path rewrites build the new decoded path in a stack buffer, escaping '%' so that SetPathBytes,
// which decodes what it is given, stores exactly that path. They are not inlined so that their
// buffers are off the stack while the rest of the chain runs.

//go:noinline
func (r *Rewrite) rewritePrefix(u *fasthttp.URI) {
	p := u.Path()
	stripped := false
	if r.strip != "" && len(p) >= len(r.strip) && string(p[:len(r.strip)]) == r.strip {
		switch {
		case len(p) == len(r.strip):
			p, stripped = rewriteSlash, true
		case p[len(r.strip)] == '/':
			p, stripped = p[len(r.strip):], true
		}
	}
	if !stripped && r.add == "" {
		return // not a whole-segment prefix, and nothing to add
	}
	var buf [rewritePathBuf]byte
	b := append(buf[:0], r.add...)
	b = appendRewritePath(b, p)
	u.SetPathBytes(b)
}

var rewriteSlash = []byte("/")

// rewriteTemplate reads the route's parameters from routed, the path the route matched (the
// gateway keeps it in Exchange.Path), not from the current path: an earlier filter may have rewritten
// that, and the pattern would then read the wrong segments.
//
//go:noinline
func (r *Rewrite) rewriteTemplate(u *fasthttp.URI, routed []byte) {
	if len(routed) == 0 {
		routed = u.Path()
	}
	var params []pattern.Param
	if r.pat != nil {
		var pbuf [maxTemplateParams]pattern.Param
		params = r.pat.Params(routed, pbuf[:0])
	}
	var buf [rewritePathBuf]byte
	b := buf[:0]
	for _, part := range r.tmpl {
		switch {
		case part.param < 0:
			b = append(b, part.lit...)
		case part.param < len(params):
			b = appendRewritePath(b, params[part.param].Value)
		}
	}
	u.SetPathBytes(b)
}

// rewriteRegex allocates: regexp offers no replacement into a caller's buffer.
//
//go:noinline
func (r *Rewrite) rewriteRegex(u *fasthttp.URI) {
	p := u.Path()
	if !r.re.Match(p) {
		return
	}
	out := r.re.ReplaceAll(p, r.replace)
	var buf [rewritePathBuf]byte
	b := buf[:0]
	if len(out) == 0 || out[0] != '/' {
		b = append(b, '/')
	}
	b = appendRewritePath(b, out)
	u.SetPathBytes(b)
}

// appendRewritePath appends the decoded path p in the form URI.SetPathBytes decodes back to p: only
// '%' needs escaping.
func appendRewritePath(dst, p []byte) []byte {
	for _, c := range p {
		if c == '%' {
			dst = append(dst, "%25"...)
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// apply rewrites the query string by hand rather than through URI.QueryArgs: Args re-encodes every
// parameter when it serializes, and the parameters this filter does not name must reach the upstream
// byte for byte (signatures are computed over them).
//
//go:noinline
func (q *rewriteQuery) apply(u *fasthttp.URI) {
	var buf [rewriteQueryBuf]byte
	out := buf[:0]
	rest := u.QueryString()
	for len(rest) > 0 {
		pair := rest
		if i := bytes.IndexByte(rest, '&'); i >= 0 {
			pair, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if len(pair) == 0 {
			continue
		}
		key := pair
		if i := bytes.IndexByte(pair, '='); i >= 0 {
			key = pair[:i]
		}
		if q.drops(key) {
			continue
		}
		if len(out) > 0 {
			out = append(out, '&')
		}
		out = append(out, pair...)
	}
	if len(q.tail) > 0 {
		if len(out) > 0 {
			out = append(out, '&')
		}
		out = append(out, q.tail...)
	}
	// SetQueryStringBytes also marks QueryArgs stale, so the request line is built from this string.
	u.SetQueryStringBytes(out)
}

func (q *rewriteQuery) drops(rawKey []byte) bool {
	for _, k := range q.drop {
		if queryKeyIs(rawKey, k) {
			return true
		}
	}
	return false
}

// queryKeyIs reports whether the raw (encoded) query key decodes to key, decoding as fasthttp's Args
// does: '+' is a space, a %XX escape a byte, a malformed escape itself.
func queryKeyIs(raw []byte, key string) bool {
	j := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '+':
			c = ' '
		case c == '%' && i+2 < len(raw) && rewriteUnhex(raw[i+1]) >= 0 && rewriteUnhex(raw[i+2]) >= 0:
			c = byte(rewriteUnhex(raw[i+1])<<4 | rewriteUnhex(raw[i+2]))
			i += 2
		}
		if j >= len(key) || key[j] != c {
			return false
		}
		j++
	}
	return j == len(key)
}

func rewriteUnhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func (h *rewriteHeaders) empty() bool {
	return len(h.remove) == 0 && len(h.set) == 0 && len(h.add) == 0
}

// applyRequest and applyResponse are the same steps, written once per header type (see
// upstream.StripHopRequest for why not generically).
func (h *rewriteHeaders) applyRequest(hd *fasthttp.RequestHeader) {
	for _, n := range h.remove {
		hd.Del(n)
	}
	for _, kv := range h.set {
		hd.Del(kv.name) // Set alone would replace only the first of several lines
		hd.Set(kv.name, kv.value)
	}
	for _, kv := range h.add {
		hd.Add(kv.name, kv.value)
	}
}

func (h *rewriteHeaders) applyResponse(hd *fasthttp.ResponseHeader) {
	for _, n := range h.remove {
		hd.Del(n)
	}
	for _, kv := range h.set {
		hd.Del(kv.name) // Set alone would replace only the first of several lines
		hd.Set(kv.name, kv.value)
	}
	for _, kv := range h.add {
		hd.Add(kv.name, kv.value)
	}
}

// ---- validation and compilation ----

// rewritePathTextProblem checks text that becomes part of a decoded path.
func rewritePathTextProblem(s string) string {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < ' ' || c == 0x7f:
			return "contains a control character"
		case c == '?' || c == '#':
			return fmt.Sprintf("contains %q; it is a path only, without query or fragment (use the query setting)", c)
		case c == '%':
			return "contains %; paths here are decoded, so write characters as themselves, not percent-encoded"
		}
	}
	if strings.Contains(s, "//") {
		return `has an empty segment ("//"); request paths are normalized and never contain one`
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == "." || seg == ".." {
			return `has a "." or ".." segment; request paths are normalized and never contain one`
		}
	}
	return ""
}

func rewritePrefixProblem(p string) string {
	switch {
	case p[0] != '/':
		return fmt.Sprintf("%q must start with /", p)
	case p != "/" && p[len(p)-1] == '/':
		return fmt.Sprintf("%q must not end with /", p)
	}
	if msg := rewritePathTextProblem(p); msg != "" {
		return fmt.Sprintf("%q %s", p, msg)
	}
	return ""
}

// compileRewriteTemplate parses a path template such as /v2/users/{id}; names are the route's
// parameters in the order pattern.Params returns them.
func compileRewriteTemplate(t string, names []string, pat *pattern.Pattern) ([]rewriteTmplPart, string) {
	if t[0] != '/' {
		return nil, fmt.Sprintf("%q must start with /", t)
	}
	var parts []rewriteTmplPart
	var text strings.Builder // the template with parameters replaced by "x", for the path checks
	rest := t
	for rest != "" {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			parts = append(parts, rewriteTmplPart{lit: rest, param: -1})
			text.WriteString(rest)
			break
		}
		if rest[open] == '}' {
			return nil, fmt.Sprintf("%q has a } without a matching {", t)
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return nil, fmt.Sprintf("%q has a { without a matching }", t)
		}
		end += open
		if open > 0 {
			parts = append(parts, rewriteTmplPart{lit: rest[:open], param: -1})
			text.WriteString(rest[:open])
		}
		name := rest[open+1 : end]
		if !pattern.ValidName(name) {
			return nil, fmt.Sprintf("%q: {%s} is not a parameter reference; write {name} with the name of one of the route's parameters", t, name)
		}
		i := slices.Index(names, name)
		if i < 0 {
			route := "the route's path"
			if pat != nil {
				route += " " + pat.Text
			}
			if len(names) == 0 {
				return nil, fmt.Sprintf("%q: {%s} is not a parameter of %s, which has none", t, name, route)
			}
			return nil, fmt.Sprintf("%q: {%s} is not a parameter of %s; its parameters are %s", t, name, route, strings.Join(names, ", "))
		}
		parts = append(parts, rewriteTmplPart{param: i})
		text.WriteString("x")
		rest = rest[end+1:]
	}
	if msg := rewritePathTextProblem(text.String()); msg != "" {
		return nil, fmt.Sprintf("%q %s", t, msg)
	}
	return parts, ""
}

// rewriteReplaceProblem checks the group references of a replacement the way regexp.Expand reads them.
func rewriteReplaceProblem(re *regexp.Regexp, repl string) string {
	for i := 0; i < len(repl); i++ {
		if repl[i] != '$' {
			continue
		}
		if i+1 < len(repl) && repl[i+1] == '$' {
			i++
			continue
		}
		name, num, n, ok := rewriteExtract(repl[i+1:])
		if !ok {
			return fmt.Sprintf("the $ at offset %d starts no group reference; write $$ for a literal $", i)
		}
		ref := repl[i : i+1+n]
		i += n
		switch {
		case num >= 0 && num > re.NumSubexp():
			return fmt.Sprintf("%s refers to group %d, but the pattern has %s", ref, num, rewritePlural(re.NumSubexp(), "group"))
		case num >= 0:
		case re.SubexpIndex(name) >= 0:
		default:
			digits := 0
			for digits < len(name) && '0' <= name[digits] && name[digits] <= '9' {
				digits++
			}
			if digits > 0 && digits < len(name) && !strings.HasPrefix(ref, "${") {
				return fmt.Sprintf("%s refers to a group named %q, which the pattern lacks; write ${%s}%s for group %s followed by %q",
					ref, name, name[:digits], name[digits:], name[:digits], name[digits:])
			}
			return fmt.Sprintf("%s refers to a group named %q, which the pattern lacks", ref, name)
		}
	}
	return ""
}

// rewriteExtract mirrors regexp's extract: the reference after a $ (name or {name}), its number (-1 if
// it is not a number), and the bytes it spans.
func rewriteExtract(s string) (name string, num, n int, ok bool) {
	brace := false
	str := s
	if str != "" && str[0] == '{' {
		brace, str = true, str[1:]
	}
	i := 0
	for i < len(str) {
		r, size := utf8.DecodeRuneInString(str[i:])
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' {
			break
		}
		i += size
	}
	if i == 0 {
		return "", 0, 0, false
	}
	name = str[:i]
	if brace {
		if i >= len(str) || str[i] != '}' {
			return "", 0, 0, false
		}
		i++
	}
	num = 0
	for j := 0; j < len(name); j++ {
		if name[j] < '0' || '9' < name[j] || num >= 1e8 {
			num = -1
			break
		}
		num = num*10 + int(name[j]) - '0'
	}
	if name[0] == '0' && len(name) > 1 {
		num = -1
	}
	n = i
	if brace {
		n++
	}
	return name, num, n, true
}

func rewritePlural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// IsToken reports whether s is an RFC 9110 token: a header name, a method, a cookie or parameter
// name weir can match. Filters and the gateway's route conditions check names with it.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func rewriteUpperToken(s string) bool {
	return IsToken(s) && strings.ToUpper(s) == s
}

// rewriteValidHost accepts a DNS name or IP address, with an optional port.
func rewriteValidHost(h string) bool {
	host, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		if a, err := netip.ParseAddr(h[1:end]); err != nil || !a.Is6() {
			return false
		}
		host = "x"
		if rest := h[end+1:]; rest != "" {
			if rest[0] != ':' {
				return false
			}
			port = rest[1:]
			if port == "" {
				return false
			}
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i+1:]
		if port == "" {
			return false
		}
	}
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '+' {
			return false
		}
	}
	return true
}

// rewriteHeaderProblem checks a header name for one operation ("set", "add" or "remove").
func rewriteHeaderProblem(name, op string, request bool) string {
	lower := strings.ToLower(name)
	writes := op != "remove"
	switch {
	case !IsToken(name):
		return fmt.Sprintf("%q is not a valid header name", name)
	case lower == "connection" || lower == "keep-alive" || lower == "te" || lower == "transfer-encoding" ||
		lower == "upgrade" || strings.HasPrefix(lower, "proxy-"):
		if writes {
			return fmt.Sprintf("%s is a hop-by-hop header: it concerns one connection and is never forwarded", name)
		}
		return fmt.Sprintf("%s is a hop-by-hop header and is never forwarded; removing it does nothing", name)
	case lower == "content-length":
		return "Content-Length is computed from the body"
	case lower == "host" && request && writes:
		return "Host is set with the host setting"
	case lower == "x-request-id" && (writes || !request):
		return "X-Request-Id is managed by the gateway"
	case op == "add" && singleValued(lower, request):
		// fasthttp keeps these outside its list of lines, one value each: Add would replace.
		return fmt.Sprintf("%s holds a single value; use set", name)
	}
	return ""
}

func singleValued(lower string, request bool) bool {
	switch lower {
	case "content-type", "content-encoding":
		return true
	case "user-agent":
		return request
	case "server":
		return !request
	}
	return false
}

func compileRewriteHeaders(field string, cfg HeaderRewrite, request bool) (rewriteHeaders, []error) {
	var h rewriteHeaders
	var errs []error
	seen := map[string]string{} // lower-case name -> the field that named it
	check := func(f, name, op string) bool {
		if msg := rewriteHeaderProblem(name, op, request); msg != "" {
			errs = append(errs, fieldErr(f, "%s", msg))
			return false
		}
		lower := strings.ToLower(name)
		if prev, dup := seen[lower]; dup {
			errs = append(errs, fieldErr(f, "%s is already named at %s; name each header once, in one of set, add and remove", name, prev))
			return false
		}
		seen[lower] = f
		return true
	}
	for _, op := range []string{"set", "add"} {
		m := cfg.Set
		if op == "add" {
			m = cfg.Add
		}
		for _, name := range sortedRewriteKeys(m) {
			f := field + "." + op + "." + name
			value := m[name]
			if !check(f, name, op) {
				continue
			}
			if strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
				errs = append(errs, fieldErr(f, "the value contains a control character"))
				continue
			}
			kv := rewriteKV{name: name, value: value}
			if op == "set" {
				h.set = append(h.set, kv)
			} else {
				h.add = append(h.add, kv)
			}
		}
	}
	for i, name := range cfg.Remove {
		if f := fmt.Sprintf("%s.remove[%d]", field, i); check(f, name, "remove") {
			h.remove = append(h.remove, name)
		}
	}
	return h, errs
}

func compileRewriteQuery(cfg QueryRewrite) (*rewriteQuery, []error) {
	q := &rewriteQuery{}
	var errs []error
	seen := map[string]string{}
	check := func(f, name string) bool {
		if name == "" {
			errs = append(errs, fieldErr(f, "a parameter name cannot be empty"))
			return false
		}
		if prev, dup := seen[name]; dup {
			errs = append(errs, fieldErr(f, "%q is already named at %s; name each parameter once, in one of set, add and remove", name, prev))
			return false
		}
		seen[name] = f
		return true
	}
	for _, op := range []string{"set", "add"} {
		m := cfg.Set
		if op == "add" {
			m = cfg.Add
		}
		for _, name := range sortedRewriteKeys(m) {
			f := "query." + op + "." + name
			if name == "" {
				f = "query." + op
			}
			if !check(f, name) {
				continue
			}
			if op == "set" {
				q.drop = append(q.drop, name)
			}
			if len(q.tail) > 0 {
				q.tail = append(q.tail, '&')
			}
			q.tail = fasthttp.AppendQuotedArg(q.tail, []byte(name))
			q.tail = append(q.tail, '=')
			q.tail = fasthttp.AppendQuotedArg(q.tail, []byte(m[name]))
		}
	}
	for i, name := range cfg.Remove {
		if check(fmt.Sprintf("query.remove[%d]", i), name) {
			q.drop = append(q.drop, name)
		}
	}
	if len(q.drop) == 0 && len(q.tail) == 0 {
		return nil, errs
	}
	return q, errs
}

func sortedRewriteKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
