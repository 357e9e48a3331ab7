// Package jwt is the `jwt` filter: bearer tokens (RFC 7519) verified against a JWKS, fetched from a
// URL and refreshed in the background or read from a file, with a bounded cache of verified tokens
// so that a client repeating its token pays for the signature check once.
package jwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
)

// Config is what the YAML says.
type Config struct {
	// JWKSURL or JWKSFile (exactly one) is where the verification keys are.
	JWKSURL  string `yaml:"jwks_url"`
	JWKSFile string `yaml:"jwks_file"`
	// Issuer, when set, must equal the token's iss.
	Issuer string `yaml:"issuer"`
	// Audiences, when set: the token's aud must name one of them.
	Audiences []string `yaml:"audiences"`
	// Algorithms accepted. HMAC algorithms are not offered: a JWKS holds public keys.
	Algorithms []string `yaml:"algorithms"`
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway time.Duration `yaml:"leeway" default:"30s"`
	// RequireExp refuses tokens without exp (which would never expire).
	RequireExp bool `yaml:"require_exp" default:"true"`
	// RequiredClaims: every listed value must be in the claim (a space-separated string, like scope,
	// or an array); a token without them gets 403.
	RequiredClaims map[string][]string `yaml:"required_claims"`
	// ForwardClaims maps claims to upstream request headers; the client's own values of these
	// headers are always removed.
	ForwardClaims map[string]string `yaml:"forward_claims"`
	// ConsumerClaim names the claim that identifies the consumer.
	ConsumerClaim string `yaml:"consumer_claim" default:"sub"`
	// From lists where a token may be, tried in order: header:Authorization (a Bearer credential),
	// header:NAME (the whole value), cookie:NAME. Default header:Authorization.
	From []string `yaml:"from"`
	// JWKSRefresh is the background refresh period (a JWKS response's Cache-Control max-age, when it
	// has one, is used instead); JWKSMinRefresh the least time between fetches made because a token
	// named an unknown kid (and the retry period after a failed fetch); JWKSTimeout bounds a fetch.
	JWKSRefresh    time.Duration `yaml:"jwks_refresh" default:"5m"`
	JWKSMinRefresh time.Duration `yaml:"jwks_min_refresh" default:"30s"`
	JWKSTimeout    time.Duration `yaml:"jwks_timeout" default:"5s"`
	// MaxCachedTokens bounds the verified-token cache, and separately the cache of tokens refused
	// after their signature was checked; 0 turns both off.
	MaxCachedTokens int `yaml:"max_cached_tokens" default:"10000"`
	// Realm is named in WWW-Authenticate.
	Realm string `yaml:"realm" default:"weir"`
}

// SourceFiles implements filters.FileSettings: a changed JWKS file makes a new filter.
func (c Config) SourceFiles() []string { return []string{c.JWKSFile} }

var defaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"}

// known maps each accepted algorithm to the key type it verifies with.
var known = map[string]string{
	"RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
	"ES256": "EC", "ES384": "EC", "ES512": "EC", "EdDSA": "OKP",
}

type source struct {
	kind byte // 'a' Authorization: Bearer, 'h' a header's whole value, 'c' a cookie
	name string
}

type forward struct {
	claim, header string
}

// Filter is a compiled jwt filter.
type Filter struct {
	set       *keySet
	parser    *gojwt.Parser
	audiences []string
	required  map[string][]string
	forwards  []forward
	consumer  string
	from      []source
	now       func() time.Time
	leeway    time.Duration
	cache     *cache
	rejected  *cache // refusals that cost a signature check; apart, so that forged tokens never evict good ones
	challenge []byte // WWW-Authenticate without error
	invalid   []byte // WWW-Authenticate for a bad token
	scope     []byte // WWW-Authenticate for missing claims
}

// New validates cfg and builds the filter.
func New(cfg Config, env filters.Env) (*Filter, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &filters.ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	f := &Filter{now: env.Now, leeway: cfg.Leeway, consumer: cfg.ConsumerClaim, audiences: cfg.Audiences, required: cfg.RequiredClaims}
	if f.now == nil {
		f.now = time.Now
	}
	switch {
	case (cfg.JWKSURL == "") == (cfg.JWKSFile == ""):
		bad("jwks_url", "set exactly one of jwks_url and jwks_file")
	case cfg.JWKSURL != "":
		if u, err := url.Parse(cfg.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("jwks_url", "%q is not an http(s) URL", cfg.JWKSURL)
		}
	}
	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = defaultAlgorithms
	}
	for i, a := range algs {
		if _, ok := known[a]; !ok {
			bad(fmt.Sprintf("algorithms[%d]", i), "unknown or refused algorithm %q; use %s (HMAC and none are never accepted)",
				a, strings.Join(defaultAlgorithms, ", "))
		}
	}
	if cfg.Leeway < 0 {
		bad("leeway", "must be 0s or more")
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"jwks_refresh", cfg.JWKSRefresh}, {"jwks_min_refresh", cfg.JWKSMinRefresh}, {"jwks_timeout", cfg.JWKSTimeout}} {
		if d.v <= 0 {
			bad(d.field, "must be more than zero")
		}
	}
	for claim, values := range cfg.RequiredClaims {
		if len(values) == 0 {
			bad("required_claims."+claim, "list the values the claim must hold")
		}
	}
	claims := make([]string, 0, len(cfg.ForwardClaims))
	for c := range cfg.ForwardClaims {
		claims = append(claims, c)
	}
	sort.Strings(claims)
	for _, c := range claims {
		h := cfg.ForwardClaims[c]
		if !filters.IsToken(h) {
			bad("forward_claims."+c, "%q is not a header name", h)
		}
		f.forwards = append(f.forwards, forward{claim: c, header: h})
	}
	from := cfg.From
	if len(from) == 0 {
		from = []string{"header:Authorization"}
	}
	for i, s := range from {
		switch kind, name, _ := strings.Cut(s, ":"); {
		case kind == "header" && strings.EqualFold(name, "Authorization"):
			f.from = append(f.from, source{kind: 'a', name: "Authorization"})
		case kind == "header" && filters.IsToken(name):
			f.from = append(f.from, source{kind: 'h', name: name})
		case kind == "cookie" && name != "":
			f.from = append(f.from, source{kind: 'c', name: name})
		default:
			bad(fmt.Sprintf("from[%d]", i), "unknown source %q; use header:Authorization, header:NAME or cookie:NAME", s)
		}
	}
	if err := filters.CheckRealm(cfg.Realm); err != nil {
		errs = append(errs, err)
	}
	if cfg.MaxCachedTokens < 0 {
		bad("max_cached_tokens", "must be 0 (no cache) or more")
	}
	if len(errs) == 0 {
		if cfg.JWKSFile != "" {
			set, err := fileSet(env.Resolve(cfg.JWKSFile))
			if err != nil {
				bad("jwks_file", "%v", err)
			}
			f.set = set
		} else {
			f.set = setFor(cfg.JWKSURL, cfg.JWKSRefresh, cfg.JWKSMinRefresh, cfg.JWKSTimeout, env.Log)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	opts := []gojwt.ParserOption{gojwt.WithValidMethods(algs), gojwt.WithLeeway(cfg.Leeway), gojwt.WithIssuedAt(),
		gojwt.WithTimeFunc(f.now)}
	if cfg.Issuer != "" {
		opts = append(opts, gojwt.WithIssuer(cfg.Issuer))
	}
	if cfg.RequireExp {
		opts = append(opts, gojwt.WithExpirationRequired())
	}
	f.parser = gojwt.NewParser(opts...)
	if cfg.MaxCachedTokens > 0 {
		f.cache = newCache(cfg.MaxCachedTokens)
		f.rejected = newCache(cfg.MaxCachedTokens)
	}
	realm := `Bearer realm="` + cfg.Realm + `"`
	f.challenge = []byte(realm)
	f.invalid = []byte(realm + `, error="invalid_token"`)
	f.scope = []byte(realm + `, error="insufficient_scope"`)
	return f, nil
}

// verdict is what checking one token concluded, cached for tokens that passed and for refusals that
// will not change while the key that checked the signature stays (keep).
type verdict struct {
	status   int    // 0: passed; 401 or 403
	keep     bool   // a refusal worth caching
	reason   string // for a refusal
	exp      int64  // Unix ns the verdict holds until (the token's exp); 0: no exp
	kid      string
	key      key    // the key that verified it, with its JWK alg
	gen      uint64 // the key set generation it was verified under
	consumer []byte
	headers  [][2][]byte // forward_claims: header, value
}

// Wrap implements filters.Filter.
func (f *Filter) Wrap(next filters.Handler) filters.Handler { return &step{Filter: f, next: next} }

type step struct {
	*Filter
	next filters.Handler
}

func (s *step) Serve(x *filters.Exchange) {
	h := &x.Ctx.Request.Header
	// No client may set the headers claims are forwarded in, token or not.
	for _, fw := range s.forwards {
		h.Del(fw.header)
	}
	token := s.token(h)
	if len(token) == 0 {
		s.refuse(x, fasthttp.StatusUnauthorized, "bearer token required", s.challenge)
		return
	}
	now := s.now()
	// A store per request would bounce the cache line between cores; once a second is enough for
	// idleStop's 30 minutes.
	if n := now.UnixNano(); n-s.set.lastUsed.Load() > int64(time.Second) {
		s.set.lastUsed.Store(n)
	}
	var v *verdict
	var digest [sha256.Size]byte
	if s.cache != nil {
		digest = sha256.Sum256(token)
		if v = s.cache.get(digest, now, s.set); v == nil {
			v = s.rejected.get(digest, now, s.set)
		}
	}
	if v == nil {
		fresh, ready := s.verify(token, now)
		if !ready {
			x.Ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, "1")
			x.Reject(fasthttp.StatusServiceUnavailable, "token keys not available")
			return
		}
		if s.cache != nil {
			switch {
			case fresh.status == 0:
				s.cache.put(digest, fresh)
			case fresh.keep:
				s.rejected.put(digest, fresh)
			}
		}
		v = fresh
	}
	if v.status != 0 {
		challenge := s.invalid
		if v.status == fasthttp.StatusForbidden {
			challenge = s.scope
		}
		s.refuse(x, v.status, v.reason, challenge)
		return
	}
	for _, hv := range v.headers {
		h.SetBytesKV(hv[0], hv[1])
	}
	if len(v.consumer) > 0 {
		x.Consumer = v.consumer
	}
	s.next.Serve(x)
}

func (s *step) refuse(x *filters.Exchange, status int, reason string, challenge []byte) {
	x.Ctx.Response.Header.SetBytesV(fasthttp.HeaderWWWAuthenticate, challenge)
	x.Reject(status, reason)
}

// token finds the request's token in the first source that has one.
func (s *step) token(h *fasthttp.RequestHeader) []byte {
	for _, src := range s.from {
		switch src.kind {
		case 'a':
			v := h.Peek(fasthttp.HeaderAuthorization)
			const prefix = "bearer "
			if len(v) > len(prefix) && strings.EqualFold(string(v[:len(prefix)]), prefix) {
				return v[len(prefix):]
			}
		case 'h':
			if v := h.Peek(src.name); len(v) > 0 {
				return v
			}
		case 'c':
			if v := h.Cookie(src.name); len(v) > 0 {
				return v
			}
		}
	}
	return nil
}

// verify checks a token not seen before: signature, algorithm, time claims, issuer, audience, then
// the required claims. ready is false when the key set has no keys yet.
func (f *Filter) verify(token []byte, now time.Time) (v *verdict, ready bool) {
	v = &verdict{}
	ready = true
	tok, err := f.parser.Parse(string(token), func(t *gojwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, gen, found, ok := f.set.lookup(kid)
		if !ok {
			ready = false
			return nil, errors.New("no keys")
		}
		if !found {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		alg := t.Method.Alg()
		if k.alg != "" && k.alg != alg {
			return nil, fmt.Errorf("key %q is for %s, not %s", kid, k.alg, alg)
		}
		// The key's type must be the algorithm's: an RSA key never verifies an ECDSA token, and no
		// public key ever stands in as an HMAC secret (HMAC is not offered at all).
		switch k.pub.(type) {
		case *rsa.PublicKey:
			if known[alg] != "RSA" {
				return nil, errors.New("algorithm does not match the key")
			}
		case *ecdsa.PublicKey:
			if known[alg] != "EC" {
				return nil, errors.New("algorithm does not match the key")
			}
		case ed25519.PublicKey:
			if known[alg] != "OKP" {
				return nil, errors.New("algorithm does not match the key")
			}
		}
		v.kid, v.key, v.gen = kid, k, gen
		return k.pub, nil
	})
	if !ready {
		return v, false
	}
	if err != nil {
		v.status, v.reason = fasthttp.StatusUnauthorized, "invalid token"
		// A refusal is remembered only if the key was found, so that checking it again would cost
		// a signature check (a forged or expired token repeated), and only if time cannot make the
		// token valid (nbf or iat ahead of the clock).
		v.keep = v.key.pub != nil && !errors.Is(err, gojwt.ErrTokenNotValidYet) && !errors.Is(err, gojwt.ErrTokenUsedBeforeIssued)
		return v, true
	}
	claims, _ := tok.Claims.(gojwt.MapClaims)
	if len(f.audiences) > 0 {
		aud, _ := claims.GetAudience()
		if !slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(f.audiences, a) }) {
			v.status, v.reason, v.keep = fasthttp.StatusUnauthorized, "invalid token", true
			return v, true
		}
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		v.exp = exp.Add(f.leeway).UnixNano()
	}
	for claim, want := range f.required {
		if !holds(claims[claim], want) {
			v.status, v.reason, v.keep = fasthttp.StatusForbidden, "token lacks a required claim", true
			return v, true
		}
	}
	if c, ok := claimText(claims[f.consumer]); ok && consumerValue(c) {
		v.consumer = []byte(c)
	}
	for _, fw := range f.forwards {
		if c, ok := claimText(claims[fw.claim]); ok && headerValue(c) {
			v.headers = append(v.headers, [2][]byte{[]byte(fw.header), []byte(c)})
		}
	}
	return v, true
}

// holds: every wanted value is in the claim, a space-separated string (scope) or an array.
func holds(claim any, want []string) bool {
	var have []string
	switch c := claim.(type) {
	case string:
		have = strings.Fields(c)
	case []any:
		for _, e := range c {
			if s, ok := e.(string); ok {
				have = append(have, s)
			}
		}
	case bool, float64:
		s, _ := claimText(c)
		have = []string{s}
	}
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// claimText renders a claim for a header: strings as they are, numbers and booleans as JSON writes
// them, arrays of strings comma-separated.
func claimText(c any) (string, bool) {
	switch v := c.(type) {
	case string:
		return v, true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(v), true
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return "", false
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), true
	}
	return "", false
}

// headerValue: visible ASCII, spaces and tabs, at most 1 KiB; a claim that is not is not forwarded.
func headerValue(s string) bool {
	if len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// consumerValue: visible ASCII without spaces, at most 128 bytes (sub values like "auth0|1234").
func consumerValue(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// cache holds verdicts by SHA-256 of the token, each until the token's exp (when it has one) and
// only while the key that checked its signature is still in the set, unchanged: a key removed from
// the JWKS voids its tokens at the next lookup, and a key replaced under the same kid gets every
// token it refused checked again.
type cache struct {
	max   int
	mu    sync.RWMutex
	m     map[[sha256.Size]byte]*verdict
	swept int64 // Unix ns of the last sweep for expired entries, under mu
}

func newCache(max int) *cache { return &cache{max: max, m: make(map[[sha256.Size]byte]*verdict)} }

func (c *cache) get(k [sha256.Size]byte, now time.Time, set *keySet) *verdict {
	c.mu.RLock()
	v := c.m[k]
	c.mu.RUnlock()
	if v == nil {
		return nil
	}
	if v.exp != 0 && now.UnixNano() >= v.exp {
		return nil
	}
	// Every verdict cached came from a key found in a loaded set, and a set never unloads: cur is not nil.
	if cur := set.current.Load(); cur.n != v.gen {
		// The set changed since: the verdict holds only if its key is still there, unchanged.
		if held, ok := cur.keys[v.kid]; !ok || !held.same(v.key) {
			c.mu.Lock()
			delete(c.m, k)
			c.mu.Unlock()
			return nil
		}
	}
	return v
}

func (c *cache) put(k [sha256.Size]byte, v *verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		// A sweep walks the whole map under the write lock, and a full cache of entries that never
		// expire (refusals of forged tokens have no exp) would have every put walk it for nothing:
		// at most one sweep a second.
		if now := time.Now().UnixNano(); now-c.swept >= int64(time.Second) {
			c.swept = now
			for key, old := range c.m {
				if old.exp != 0 && now >= old.exp {
					delete(c.m, key)
				}
			}
		}
		// Still full: one arbitrary entry makes room (map order is random), so a flood of distinct
		// valid tokens costs churn, not memory.
		for key := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = v
}
