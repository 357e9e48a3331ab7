// Package cache is the `cache` filter: a shared HTTP cache (RFC 9111) in front of the route's
// upstream, in memory or in the Redis the replicas share, that coalesces concurrent misses into one
// upstream request and serves stale responses while it refreshes them or while the upstream fails.
package cache

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
)

// Config is what the YAML says.
type Config struct {
	// TTL is the freshness of a response that says nothing of its own (no max-age, s-maxage or
	// Expires); MaxTTL caps what a response may ask for.
	TTL    time.Duration `yaml:"ttl" default:"30s"`
	MaxTTL time.Duration `yaml:"max_ttl" default:"10m"`
	// Methods are the cached methods: GET, and HEAD (answered from GET's entries).
	Methods []string `yaml:"methods"`
	// Key are the parts of the request that pick an entry: host, path, query, header:NAME,
	// cookie:NAME, consumer. The headers a response's Vary names always count too.
	Key []string `yaml:"key"`
	// StaleWhileRevalidate: for this long after it went stale an entry is still served, while one
	// request refreshes it in the background. StaleIfError: for this long it is served when the
	// upstream fails (a 5xx, a timeout, an open breaker). A response's own stale-while-revalidate and
	// stale-if-error directives override them.
	StaleWhileRevalidate time.Duration `yaml:"stale_while_revalidate" default:"0s"`
	StaleIfError         time.Duration `yaml:"stale_if_error" default:"0s"`
	// Store is memory (this process) or redis (the config's redis block, shared by the replicas).
	Store string `yaml:"store" default:"memory"`
	// MaxBytes bounds the memory store; MaxObjectBytes the body of a response that is stored.
	MaxBytes       filters.Size `yaml:"max_bytes" default:"256MiB"`
	MaxObjectBytes filters.Size `yaml:"max_object_bytes" default:"1MiB"`
	// CoalesceTimeout bounds how long a request waits for another's upstream call for the same key
	// before it makes its own.
	CoalesceTimeout time.Duration `yaml:"coalesce_timeout" default:"10s"`
	// AllowAuthorization caches requests that carry Authorization (key them by consumer, or every
	// caller shares the entries); AllowSetCookie stores responses that set cookies, cookies and all.
	AllowAuthorization bool `yaml:"allow_authorization"`
	AllowSetCookie     bool `yaml:"allow_set_cookie"`
}

// Global reports whether the cache is kept in the config's redis: the gateway then builds it anew
// when the redis block goes away, so that the loss is reported.
func (c Config) Global() bool { return c.Store == "redis" }

type keyKind uint8

const (
	keyHost keyKind = iota
	keyPath
	keyQuery
	keyHeader
	keyCookie
	keyConsumer
)

type keyPart struct {
	kind keyKind
	name []byte // header:NAME, cookie:NAME
}

// Filter is a compiled cache filter. It outlives a reload that leaves its route and settings alone,
// and its store with it.
type Filter struct {
	cfg                 Config
	route               string
	key                 []keyPart
	cacheGet, cacheHead bool
	maxObject           int
	now                 func() time.Time
	log                 zerolog.Logger
	seed                maphash.Seed
	memory              *memoryStore // one or the other
	redis               *redisStore
	flights             flights

	answers                  [resultCount]filters.Counter // by result
	coalesced, refreshFailed filters.Counter
}

// result is what became of a request, as X-Cache says it and the metrics count it.
type result uint8

const (
	resultHit result = iota
	resultStale
	resultRevalidated
	resultMiss
	resultBypass
	resultCount
)

var (
	xCache      = [resultCount][]byte{[]byte("HIT"), []byte("STALE"), []byte("REVALIDATED"), []byte("MISS"), []byte("BYPASS")}
	resultNames = [resultCount]string{"hit", "stale", "revalidated", "miss", "bypass"}
)

// count counts an answer of the filter's.
func (f *Filter) count(r result) { f.answers[r].Inc() }

// New validates cfg and builds the filter.
func New(cfg Config, env filters.Env) (*Filter, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &filters.ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	now := env.Now
	if now == nil {
		now = time.Now
	}
	f := &Filter{cfg: cfg, route: env.Route, maxObject: int(cfg.MaxObjectBytes), now: now, seed: maphash.MakeSeed(),
		log: env.Log.With().Str("filter", "cache").Logger(), flights: flights{m: map[uint64]*flight{}}}
	if cfg.TTL < 0 {
		bad("ttl", "must be 0 (store only responses that give their own freshness) or more")
	}
	if cfg.MaxTTL <= 0 {
		bad("max_ttl", "must be positive, like 10m")
	} else if cfg.TTL > cfg.MaxTTL {
		bad("ttl", "%s is above max_ttl (%s)", cfg.TTL, cfg.MaxTTL)
	}
	if cfg.StaleWhileRevalidate < 0 {
		bad("stale_while_revalidate", "must be 0 or more")
	}
	if cfg.StaleIfError < 0 {
		bad("stale_if_error", "must be 0 or more")
	}
	if cfg.CoalesceTimeout <= 0 {
		bad("coalesce_timeout", "must be positive, like 10s")
	}
	if cfg.MaxObjectBytes <= 0 || cfg.MaxObjectBytes > 1<<30 {
		bad("max_object_bytes", "must be from 1 byte to 1GiB")
	}
	methods := cfg.Methods
	if len(methods) == 0 {
		methods = []string{fasthttp.MethodGet, fasthttp.MethodHead}
	}
	for i, m := range methods {
		switch strings.ToUpper(m) {
		case fasthttp.MethodGet:
			f.cacheGet = true
		case fasthttp.MethodHead:
			f.cacheHead = true
		default:
			bad(fmt.Sprintf("methods[%d]", i), "%q cannot be cached; use GET and HEAD", m)
		}
	}
	if f.cacheHead && !f.cacheGet {
		bad("methods", "HEAD is answered from GET's entries: list GET too")
	}
	parts := cfg.Key
	if len(parts) == 0 {
		parts = []string{"host", "path", "query"}
	}
	seen := map[string]bool{}
	for i, p := range parts {
		field := fmt.Sprintf("key[%d]", i)
		if seen[strings.ToLower(p)] {
			bad(field, "%s is listed twice", p)
			continue
		}
		seen[strings.ToLower(p)] = true
		kind, name, _ := strings.Cut(p, ":")
		switch {
		case p == "host":
			f.key = append(f.key, keyPart{kind: keyHost})
		case p == "path":
			f.key = append(f.key, keyPart{kind: keyPath})
		case p == "query":
			f.key = append(f.key, keyPart{kind: keyQuery})
		case p == "consumer":
			f.key = append(f.key, keyPart{kind: keyConsumer})
		case kind == "header" && name != "" && !strings.ContainsAny(name, " :\t"):
			f.key = append(f.key, keyPart{kind: keyHeader, name: []byte(name)})
		case kind == "cookie" && name != "" && !strings.ContainsAny(name, " ;=\t"):
			f.key = append(f.key, keyPart{kind: keyCookie, name: []byte(name)})
		default:
			bad(field, "unknown key part %q; use host, path, query, consumer, header:NAME or cookie:NAME", p)
		}
	}
	c := env.Counters
	for r, name := range resultNames {
		f.answers[r] = c.CacheEvent(name)
	}
	f.coalesced = c.CacheEvent("coalesced")
	f.refreshFailed = c.CacheEvent("refresh_failed")
	switch cfg.Store {
	case "memory":
		if cfg.MaxBytes < 1<<20 {
			bad("max_bytes", "must be at least 1MiB, like 256MiB")
		} else if cfg.MaxObjectBytes > cfg.MaxBytes/4 {
			bad("max_object_bytes", "must be at most a quarter of max_bytes (%d bytes), or one response would push out the rest", cfg.MaxBytes/4)
		}
	case "redis":
		if env.SharedCache == nil {
			bad("store", "redis needs the config's redis block (redis: {addrs: [\"127.0.0.1:6379\"]})")
		}
	default:
		bad("store", "unknown store %q; use memory or redis", cfg.Store)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.Store == "redis" {
		f.redis = &redisStore{r: env.SharedCache, prefix: "cache:" + env.Route + ":", keepValidated: cfg.MaxTTL, log: f.log}
	} else {
		f.memory = newMemoryStore(int64(cfg.MaxBytes), cfg.MaxTTL, c.CacheEvent("evicted"))
	}
	return f, nil
}

// Route is the route the filter serves, for the gateway's metrics and purges.
func (f *Filter) Route() string { return f.route }

// HeldBytes is what the memory store holds (0 for the redis store).
func (f *Filter) HeldBytes() int64 {
	if f.memory != nil {
		return f.memory.held()
	}
	return 0
}

// Purge drops the entries whose key starts with prefix (every entry for ""), and says how many. Keys
// are written host, then path, then ?query (with the default key), so "api.example.com/products/"
// drops every product.
func (f *Filter) Purge(prefix string) int {
	if f.memory != nil {
		return f.memory.purge([]byte(prefix))
	}
	return f.redis.purge([]byte(prefix))
}

// Close releases the memory store's background work; the gateway calls it for a filter a reload
// dropped, once the old snapshot's requests are done.
func (f *Filter) Close() {
	if f.memory != nil {
		f.memory.close()
	}
}

// Wrap implements filters.Filter.
func (f *Filter) Wrap(next filters.Handler) filters.Handler { return &step{f: f, next: next} }

type step struct {
	f    *Filter
	next filters.Handler
}

// Serve answers from the store when it can, and otherwise sends one request upstream for all the
// requests that want the same entry.
func (s *step) Serve(x *filters.Exchange) {
	f, ctx := s.f, x.Ctx
	req := &ctx.Request.Header
	head := ctx.IsHead()
	if !(f.cacheGet && ctx.IsGet() || f.cacheHead && head) || x.WebSocket || len(req.Peek(fasthttp.HeaderRange)) > 0 ||
		!f.cfg.AllowAuthorization && len(req.Peek(fasthttp.HeaderAuthorization)) > 0 {
		s.next.Serve(x)
		ctx.Response.Header.SetCanonical(nameXCache, xCache[resultBypass])
		f.count(resultBypass)
		return
	}
	var kb [256]byte
	key := f.appendKey(kb[:0], x)
	e := f.lookup(key, req)
	now := f.now().UnixNano()
	if e != nil {
		age := e.age(now)
		switch {
		case !e.Revalidate && age < e.Lifetime:
			f.serve(x, e, resultHit, now)
			f.count(resultHit)
			return
		case !e.Revalidate && !e.Strict && age < e.Lifetime+e.SWR:
			f.serve(x, e, resultStale, now)
			f.count(resultStale)
			if !head {
				s.refreshInBackground(x, key, e)
			}
			return
		}
	}
	if head {
		// A HEAD's answer has no body to store for GETs; it goes upstream on its own.
		s.next.Serve(x)
		ctx.Response.Header.SetCanonical(nameXCache, xCache[resultMiss])
		f.count(resultMiss)
		return
	}
	s.fetch(x, key, e)
}

// appendKey writes the request's key: the host as routing reads it (filters.AppendHostKey), the
// path the client sent, then ?query, then each header: or cookie: part as \x00name=SHA-256(value),
// and the consumer as \x00consumer=name.
func (f *Filter) appendKey(dst []byte, x *filters.Exchange) []byte {
	for _, p := range f.key {
		switch p.kind {
		case keyHost:
			dst = filters.AppendHostKey(dst, x.Host)
		case keyPath:
			dst = append(dst, x.Path...)
		case keyQuery:
			if q := x.Ctx.URI().QueryString(); len(q) > 0 {
				dst = append(append(dst, '?'), q...)
			}
		case keyHeader:
			dst = appendDigest(append(append(append(dst, 0), p.name...), '='), x.Ctx.Request.Header.PeekBytes(p.name))
		case keyCookie:
			dst = appendDigest(append(append(append(dst, 0), p.name...), '='), x.Ctx.Request.Header.CookieBytes(p.name))
		case keyConsumer:
			dst = append(append(dst, "\x00consumer="...), x.Consumer...)
		}
	}
	return dst
}

// lookup finds the entry for key, following a Vary marker to the request's variant.
func (f *Filter) lookup(key []byte, req *fasthttp.RequestHeader) *Entry {
	e := f.get(hashKey(f.seed, key), key)
	if e == nil || !e.marker() {
		return e
	}
	var vb [512]byte
	vkey := appendVariant(vb[:0], key, e.Vary, req)
	return f.get(hashKey(f.seed, vkey), vkey)
}

// appendVariant is the key of the request's variant among the responses that vary by names.
func appendVariant(dst, key []byte, names [][]byte, req *fasthttp.RequestHeader) []byte {
	dst = append(append(dst, key...), 1)
	for _, n := range names {
		dst = append(append(dst, n...), '=')
		if v := req.PeekBytes(n); credentialHeader(n) {
			dst = appendDigest(dst, v)
		} else {
			dst = append(dst, v...)
		}
		dst = append(dst, 0)
	}
	return dst
}

// appendDigest writes the SHA-256 of a header or cookie value into a key instead of the value: keys
// are written to Redis and compared in memory, and a value that picks the entry (a session cookie, an
// Authorization header, an API key) must not be readable in either. An empty value stays empty.
func appendDigest(dst, v []byte) []byte {
	if len(v) == 0 {
		return dst
	}
	sum := sha256.Sum256(v)
	return append(dst, sum[:]...)
}

// credentialHeader reports whether a Vary header (lowercase) may carry a credential, so that its
// value goes into keys as a digest: Authorization, Cookie and the like, and names with auth, key,
// token or secret in them.
func credentialHeader(name []byte) bool {
	switch string(name) {
	case "authorization", "proxy-authorization", "cookie":
		return true
	}
	for _, w := range []string{"auth", "key", "token", "secret", "session"} {
		if bytes.Contains(name, []byte(w)) {
			return true
		}
	}
	return false
}

// varyNames are the request headers a response varies by, lowercased; nil without Vary.
func varyNames(resp *fasthttp.Response) [][]byte {
	var names [][]byte
	for _, v := range resp.Header.PeekAll(fasthttp.HeaderVary) {
		for len(v) > 0 {
			var n []byte
			n, v = nextItem(v)
			if n = bytes.ToLower(n); len(n) > 0 && !containsBytes(names, n) {
				names = append(names, n)
			}
		}
	}
	return names
}

func containsBytes(list [][]byte, b []byte) bool {
	for _, v := range list {
		if bytes.Equal(v, b) {
			return true
		}
	}
	return false
}

// serve answers x from e: a 304 when the client's validators match it.
func (f *Filter) serve(x *filters.Exchange, e *Entry, r result, now int64) {
	if e.Status == fasthttp.StatusOK && notModified(&x.Ctx.Request.Header, e.ETag, e.LastModified) {
		e.writeNotModified(&x.Ctx.Response, xCache[r], now)
		return
	}
	e.writeTo(&x.Ctx.Response, xCache[r], now)
}

// fetch sends x upstream unless another request for the same key already does; then it waits for
// that one's entry.
func (s *step) fetch(x *filters.Exchange, key []byte, stale *Entry) {
	f := s.f
	h := hashKey(f.seed, key)
	fl, leader := f.flights.join(h)
	if !leader {
		if e := fl.wait(f.cfg.CoalesceTimeout); e != nil && f.fits(e, key, &x.Ctx.Request.Header) {
			f.coalesced.Inc()
			r := fl.result
			if r != resultStale {
				r = resultHit // served without a call of its own
			}
			f.serve(x, e, r, f.now().UnixNano())
			f.count(r)
			return
		}
		// The other request timed out, or got nothing this one may use (uncacheable, another variant).
		fl, leader = nil, false
	}
	var e *Entry
	r := resultMiss
	if fl != nil {
		// Deferred: a panic further down the chain must not leave the key's waiters, and every later
		// request for it, waiting on a flight that never lands.
		defer func() {
			fl.finish(e, r)
			f.flights.done(h, fl)
		}()
	}
	if fl != nil {
		// Another request may have stored the entry between this one's lookup and its join: its
		// flight was over by then. Looking again keeps the key at one upstream call.
		now := f.now().UnixNano()
		if fresh := f.lookup(key, &x.Ctx.Request.Header); fresh != nil && fresh != stale && !fresh.Revalidate &&
			fresh.age(now) < fresh.Lifetime {
			e, r = fresh, resultHit
			f.serve(x, e, r, now)
			f.count(r)
			return
		}
	}
	e, r = s.upstream(x, key, stale)
	f.count(r)
}

// fits reports whether e, another request's entry for key, is this request's variant.
func (f *Filter) fits(e *Entry, key []byte, req *fasthttp.RequestHeader) bool {
	if bytes.Equal(e.Key, key) {
		return true
	}
	marker := f.get(hashKey(f.seed, key), key)
	if marker == nil || !marker.marker() {
		return false
	}
	var vb [512]byte
	return bytes.Equal(appendVariant(vb[:0], key, marker.Vary, req), e.Key)
}

// upstream calls the rest of the chain for key, with stale's validators if there is one, and stores
// what may be stored. It returns the entry x was answered from (nil when x carries the upstream's
// answer as it came) and the X-Cache result.
func (s *step) upstream(x *filters.Exchange, key []byte, stale *Entry) (*Entry, result) {
	f, ctx := s.f, x.Ctx
	req, resp := &ctx.Request.Header, &ctx.Response
	// The client's own validators are answered from the entry; the upstream gets the cache's, so that
	// its answer can be stored whole.
	inm, ims := bytes.Clone(req.Peek(fasthttp.HeaderIfNoneMatch)), bytes.Clone(req.Peek(fasthttp.HeaderIfModifiedSince))
	req.Del(fasthttp.HeaderIfNoneMatch)
	req.Del(fasthttp.HeaderIfModifiedSince)
	if stale != nil {
		if len(stale.ETag) > 0 {
			req.SetBytesV(fasthttp.HeaderIfNoneMatch, stale.ETag)
		}
		if len(stale.LastModified) > 0 {
			req.SetBytesV(fasthttp.HeaderIfModifiedSince, stale.LastModified)
		}
	}
	s.next.Serve(x)
	req.Del(fasthttp.HeaderIfNoneMatch)
	req.Del(fasthttp.HeaderIfModifiedSince)
	if len(inm) > 0 {
		req.SetBytesV(fasthttp.HeaderIfNoneMatch, inm)
	}
	if len(ims) > 0 {
		req.SetBytesV(fasthttp.HeaderIfModifiedSince, ims)
	}
	now := f.now()
	nowNs := now.UnixNano()
	status := resp.StatusCode()
	switch {
	case x.Answered() && status == fasthttp.StatusNotModified && stale != nil:
		p := f.policyOf(resp, stale.Status, now)
		if !hasFreshness(resp) {
			p.lifetime = stale.Lifetime
		}
		e := stale.refreshed(resp, p, nowNs)
		if p.store {
			f.set(hashKey(f.seed, e.Key), e)
		}
		resp.Reset()
		f.serve(x, e, resultRevalidated, nowNs)
		return e, resultRevalidated
	case x.Answered() && status < 500:
		p := f.policyOf(resp, status, now)
		if !p.store {
			resp.Header.SetCanonical(nameXCache, xCache[resultMiss])
			return nil, resultMiss
		}
		e := f.storeResponse(key, resp, p, nowNs, &ctx.Request.Header)
		resp.Reset()
		f.serve(x, e, resultMiss, nowNs)
		return e, resultMiss
	case (x.Answered() || x.Status >= 500) && stale != nil && !stale.Strict && stale.age(nowNs) < stale.Lifetime+stale.SIE:
		// The upstream failed (a 5xx of its own or the gateway's: unreachable, timed out, breaker
		// open): the stale entry is a better answer than the error. A step's 4xx stays.
		x.Status, x.Reason, x.Failed = 0, "", false
		resp.Reset()
		f.serve(x, stale, resultStale, nowNs)
		return stale, resultStale
	}
	resp.Header.SetCanonical(nameXCache, xCache[resultMiss])
	return nil, resultMiss
}

// hasFreshness reports whether a response sets its own freshness.
func hasFreshness(resp *fasthttp.Response) bool {
	return len(resp.Header.Peek(fasthttp.HeaderCacheControl)) > 0 || len(resp.Header.Peek(fasthttp.HeaderExpires)) > 0
}

// storeResponse stores resp for key; a response with Vary is stored as the request's variant, under a
// marker at key naming the Vary headers.
func (f *Filter) storeResponse(key []byte, resp *fasthttp.Response, p responsePolicy, now int64, req *fasthttp.RequestHeader) *Entry {
	names := varyNames(resp)
	if len(names) == 0 {
		e := newEntry(key, resp, p, now, f.cfg.AllowSetCookie)
		f.set(hashKey(f.seed, key), e)
		return e
	}
	marker := &Entry{Key: bytes.Clone(key), Vary: names, Stored: now, Lifetime: p.lifetime, SWR: p.swr, SIE: p.sie}
	// The marker lives as long as the variants may: the longest the store would keep any of them.
	marker.Lifetime = max(p.lifetime, f.cfg.MaxTTL)
	f.set(hashKey(f.seed, key), marker)
	vkey := appendVariant(nil, key, names, req)
	e := newEntry(vkey, resp, p, now, f.cfg.AllowSetCookie)
	f.set(hashKey(f.seed, vkey), e)
	return e
}

// refreshInBackground refreshes a stale entry with a copy of x's request, unless a refresh or fetch
// for the key is already under way. x is answered already.
func (s *step) refreshInBackground(x *filters.Exchange, key []byte, stale *Entry) {
	f := s.f
	h := hashKey(f.seed, key)
	fl, leader := f.flights.join(h)
	if !leader {
		return
	}
	if cur := f.lookup(key, &x.Ctx.Request.Header); cur != stale {
		// A refresh stored a new entry (or the entry went) between this request's lookup and its
		// join: that refresh's flight was over. Another would be a second upstream call.
		fl.finish(nil, resultMiss)
		f.flights.done(h, fl)
		return
	}
	bg := new(fasthttp.RequestCtx)
	bg.Init(&x.Ctx.Request, x.Ctx.RemoteAddr(), nil)
	y := filters.AcquireExchange(bg)
	y.Route, y.Split, y.Pool, y.Client, y.Consumer = x.Route, x.Split, x.Pool, x.Client, x.Consumer
	y.ClientIP = append(y.IPBuf(), x.ClientIP...)
	y.RequestID = append(y.IDBuf(), x.RequestID...)
	y.Host = append(y.HostBuf(), x.Host...)
	y.Path = append(y.PathBuf(), x.Path...)
	own := bytes.Clone(key)
	go func() {
		var e *Entry
		r := resultMiss
		defer func() {
			if p := recover(); p != nil {
				f.log.Error().Str("route", f.route).Str("panic", fmt.Sprint(p)).Msg("panic in a background cache refresh")
			}
			fl.finish(e, r)
			f.flights.done(h, fl)
			bg.Response.ResetBody() // closes a streamed body, and the upstream connection under it
			filters.ReleaseExchange(y)
		}()
		e, r = s.upstream(y, own, stale)
		if e == nil || e == stale {
			f.refreshFailed.Inc()
			f.log.Warn().Str("route", f.route).Int("status", bg.Response.StatusCode()).Str("reason", y.Reason).
				Msg("background cache refresh got nothing to store; the stale entry stays")
		}
	}()
}

// flights are the upstream calls under way, by key hash: the first request for a key makes the call,
// those that come while it runs wait for its entry.
type flights struct {
	mu sync.Mutex
	m  map[uint64]*flight
}

type flight struct {
	done   chan struct{}
	e      *Entry
	result result
}

// join returns the key's flight, and whether the caller leads it (and must finish it).
func (fs *flights) join(h uint64) (*flight, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fl, ok := fs.m[h]; ok {
		return fl, false
	}
	fl := &flight{done: make(chan struct{})}
	fs.m[h] = fl
	return fl, true
}

// done removes fl from the flights.
func (fs *flights) done(h uint64, fl *flight) {
	fs.mu.Lock()
	if fs.m[h] == fl {
		delete(fs.m, h)
	}
	fs.mu.Unlock()
}

// finish hands e (nil: nothing the others may use) to the waiters.
func (fl *flight) finish(e *Entry, r result) {
	fl.e, fl.result = e, r
	close(fl.done)
}

// wait returns the leader's entry, or nil if it has none or takes longer than d.
func (fl *flight) wait(d time.Duration) *Entry {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-fl.done:
		return fl.e
	case <-t.C:
		return nil
	}
}
