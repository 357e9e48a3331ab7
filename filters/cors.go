package filters

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// CORSConfig is the `cors` filter: which browser origins may call the route (the Fetch standard's
// CORS protocol). weir answers preflight requests itself; they never reach the upstream.
type CORSConfig struct {
	// AllowOrigins are the origins allowed: exact ("https://app.example.com"), one wildcard label
	// ("https://*.example.com", any subdomain, not the bare domain), or "*" for any origin.
	AllowOrigins []string `yaml:"allow_origins"`
	// AllowMethods are advertised in answers to preflights. Default: GET, HEAD, POST, PUT, PATCH,
	// DELETE.
	AllowMethods []string `yaml:"allow_methods"`
	// AllowHeaders are the request headers a browser may send. Default (and "*"): whatever the
	// preflight asks for.
	AllowHeaders []string `yaml:"allow_headers"`
	// ExposeHeaders are response headers a browser script may read beyond the safelisted ones.
	ExposeHeaders []string `yaml:"expose_headers"`
	// AllowCredentials lets browsers send cookies and Authorization; it cannot go with "*".
	AllowCredentials bool `yaml:"allow_credentials"`
	// MaxAge is how long a browser may cache a preflight's answer (browsers cap it: Chrome at 2 h).
	MaxAge time.Duration `yaml:"max_age" default:"10m"`
}

// CORS is a compiled cors filter.
type CORS struct {
	any         bool                // "*"
	exact       map[string]struct{} // lower-case origins
	wildcards   [][2]string         // scheme+"://" and ".domain[:port]"
	methods     []byte
	headers     []byte // nil: reflect the preflight's request headers
	expose      []byte
	credentials bool
	maxAge      []byte
}

var defaultCORSMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}

// NewCORS validates cfg and builds the filter.
func NewCORS(cfg CORSConfig, _ Env) (*CORS, error) {
	var errs []error
	c := &CORS{exact: map[string]struct{}{}, credentials: cfg.AllowCredentials}
	if len(cfg.AllowOrigins) == 0 {
		errs = append(errs, fieldErr("allow_origins", "list the origins allowed, like https://app.example.com, https://*.example.com or *"))
	}
	for i, o := range cfg.AllowOrigins {
		field := fmt.Sprintf("allow_origins[%d]", i)
		lo := strings.ToLower(o)
		scheme, host, ok := strings.Cut(lo, "://")
		switch {
		case o == "*":
			c.any = true
			if cfg.AllowCredentials {
				errs = append(errs, fieldErr(field, `"*" cannot go with allow_credentials: true (browsers refuse it); list the origins`))
			}
		case !ok || (scheme != "http" && scheme != "https") || host == "" || strings.ContainsAny(host, "/?#") || strings.HasSuffix(host, "."):
			errs = append(errs, fieldErr(field, "%q is not an origin: want scheme://host[:port], like https://app.example.com", o))
		case strings.HasPrefix(host, "*."):
			if strings.Contains(host[1:], "*") || len(host) < 4 {
				errs = append(errs, fieldErr(field, "only one leading wildcard label is allowed, like https://*.example.com"))
				continue
			}
			c.wildcards = append(c.wildcards, [2]string{scheme + "://", host[1:]})
		case strings.Contains(host, "*"):
			errs = append(errs, fieldErr(field, "a wildcard stands only for the first label, like https://*.example.com"))
		default:
			c.exact[lo] = struct{}{}
		}
	}
	methods := cfg.AllowMethods
	if len(methods) == 0 {
		methods = defaultCORSMethods
	}
	for i, m := range methods {
		if !IsToken(m) {
			errs = append(errs, fieldErr(fmt.Sprintf("allow_methods[%d]", i), "%q is not a method name", m))
		}
	}
	c.methods = []byte(strings.Join(methods, ", "))
	check := func(field string, names []string) []byte {
		for i, n := range names {
			if !IsToken(n) {
				errs = append(errs, fieldErr(fmt.Sprintf("%s[%d]", field, i), "%q is not a header name", n))
			}
		}
		return []byte(strings.Join(names, ", "))
	}
	if !(len(cfg.AllowHeaders) == 0 || len(cfg.AllowHeaders) == 1 && cfg.AllowHeaders[0] == "*") {
		c.headers = check("allow_headers", cfg.AllowHeaders)
	}
	c.expose = check("expose_headers", cfg.ExposeHeaders)
	if cfg.MaxAge < 0 {
		errs = append(errs, fieldErr("max_age", "must be 0s or more"))
	}
	c.maxAge = strconv.AppendInt(nil, int64(cfg.MaxAge/time.Second), 10)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// allowed reports whether origin (as the browser sent it) may call the route.
func (c *CORS) allowed(origin []byte) bool {
	if c.any {
		return true
	}
	var buf [256]byte
	if len(origin) > len(buf) {
		return false
	}
	lo := buf[:len(origin)]
	for i, b := range origin {
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		lo[i] = b
	}
	if _, ok := c.exact[string(lo)]; ok {
		return true
	}
	for _, w := range c.wildcards {
		if len(lo) > len(w[0])+len(w[1]) && bytes.HasPrefix(lo, []byte(w[0])) && bytes.HasSuffix(lo, []byte(w[1])) &&
			hostLabels(lo[len(w[0]):len(lo)-len(w[1])]) {
			return true
		}
	}
	return false
}

// hostLabels: the part a wildcard stands for is one or more DNS labels, nothing else.
func hostLabels(b []byte) bool {
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-':
		case c == '.' && i > 0 && i < len(b)-1 && b[i-1] != '.':
		default:
			return false
		}
	}
	return len(b) > 0
}

// Wrap implements Filter.
func (c *CORS) Wrap(next Handler) Handler { return &corsStep{CORS: c, next: next} }

type corsStep struct {
	*CORS
	next Handler
}

func (s *corsStep) Serve(x *Exchange) {
	req := &x.Ctx.Request.Header
	origin := req.Peek("Origin")
	resp := &x.Ctx.Response.Header
	if req.IsOptions() && len(origin) > 0 && len(req.Peek("Access-Control-Request-Method")) > 0 {
		// A preflight carries no credentials: it is answered here, before any authentication.
		if s.allowed(origin) {
			s.allowOrigin(resp, origin)
			resp.SetBytesV("Access-Control-Allow-Methods", s.methods)
			if h := s.headers; h != nil {
				resp.SetBytesV("Access-Control-Allow-Headers", h)
			} else if asked := req.Peek("Access-Control-Request-Headers"); len(asked) > 0 {
				resp.SetBytesV("Access-Control-Allow-Headers", asked)
			}
			resp.SetBytesV("Access-Control-Max-Age", s.maxAge)
		}
		resp.Set(fasthttp.HeaderVary, "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
		x.Reject(fasthttp.StatusNoContent, "CORS preflight")
		return
	}
	s.next.Serve(x)
	// After next: the upstream's response (or a rejection's) is the one the fields go on.
	if len(origin) > 0 && s.allowed(origin) {
		s.allowOrigin(resp, origin)
		if len(s.expose) > 0 {
			resp.SetBytesV("Access-Control-Expose-Headers", s.expose)
		}
	}
	if !s.any { // the answer depends on Origin
		AddVary(resp, "Origin")
	}
}

func (s *corsStep) allowOrigin(resp *fasthttp.ResponseHeader, origin []byte) {
	if s.any && !s.credentials {
		resp.Set("Access-Control-Allow-Origin", "*")
	} else {
		resp.SetBytesV("Access-Control-Allow-Origin", origin)
	}
	if s.credentials {
		resp.Set("Access-Control-Allow-Credentials", "true")
	}
}

// AddVary adds name to the response's Vary field unless it is listed already (or Vary is *).
func AddVary(h *fasthttp.ResponseHeader, name string) {
	v := h.Peek(fasthttp.HeaderVary)
	if len(v) == 0 {
		h.Set(fasthttp.HeaderVary, name)
		return
	}
	for rest := v; len(rest) > 0; {
		item := rest
		if i := bytes.IndexByte(rest, ','); i >= 0 {
			item, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		item = bytes.TrimSpace(item)
		if string(item) == "*" || bytes.EqualFold(item, []byte(name)) {
			return
		}
	}
	var buf [256]byte
	h.SetBytesV(fasthttp.HeaderVary, append(append(append(buf[:0], v...), ", "...), name...))
}
