package gateway

import (
	"bytes"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
	"unsafe"

	"github.com/fasthttp/router"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/certs"
	"github.com/weir-gateway/weir/filters"
	"github.com/weir-gateway/weir/filters/cache"
	"github.com/weir-gateway/weir/pattern"
	"github.com/weir-gateway/weir/upstream"
)

// Snapshot is one compiled config: everything a request needs, immutable once built. The server
// loads the current snapshot once per request and uses it to the end, so a request never mixes two
// configs.
type Snapshot struct {
	Server   ServerConfig
	Admin    AdminConfig
	Reload   ReloadConfig
	Log      LogConfig
	LogLevel zerolog.Level
	Routes   []*Route
	// Warnings are things in the config that work but deserve attention (a certificate close to its
	// expiry, an unverified upstream); weir validate prints them, load and reload log them.
	Warnings Problems

	pools   map[string]*upstream.Pool
	targets map[string]*upstream.Target // every pool's targets, by Target.Key
	filters map[string]filters.Filter   // every route's filters, by route, kind, settings and order
	metrics *Metrics                    // nil when not counted

	routeByName map[string]*Route
	// adminToken is the SHA-256 of admin.token_file's token; nil when the admin listener is open.
	adminToken []byte
	hosts      map[string]*routeTable // exact host names, lower-case, no port
	wildcards  []*routeTable          // *.suffix tables, longest suffix first
	anyHost    *routeTable            // routes without match.hosts
	trusted    []netip.Prefix

	tracing snapshotTracing
	redis   snapshotRedis

	tls          *tlsListener             // nil without server.tls
	redirectPort string                   // ":8443" in redirects to HTTPS; "" for 443
	sources      map[string]*certs.Source // certificate, key and CA files in use, by kind and paths
}

// Route is a compiled route: where its requests go and what runs on them.
type Route struct {
	Name string
	Pool *upstream.Pool
	// Match is the route's match block as configured, and Filters its compiled filters in chain
	// order, for tools that describe routes (weir demo).
	Match   MatchConfig
	Filters []filters.Filter
	// conds are the match block's header, query and cookie conditions.
	conds []condition
	// handler runs the route's filters around the upstream call.
	handler filters.Handler
	metrics *routeMetrics // nil when not counted
	// webSocket: upgrade requests keep their Upgrade and may become tunnels idle for up to wsIdle.
	webSocket bool
	wsIdle    time.Duration
}

// upstreamStep ends every route's chain: it picks a target and forwards to it.
type upstreamStep struct {
	pools   []*upstream.Pool // the route's pool, or its split's (Exchange.Split picks)
	log     zerolog.Logger
	route   *Route
	server  *ServerConfig
	timeout time.Duration // the route's; 0: the pool's
}

func (u upstreamStep) Serve(x *filters.Exchange) {
	req := &x.Ctx.Request
	if x.WebSocket && u.route.webSocket {
		// The strip removed them with the other hop-by-hop headers; this hop asks for the upgrade too.
		req.Header.Set(fasthttp.HeaderConnection, "Upgrade")
		req.Header.Set(fasthttp.HeaderUpgrade, "websocket")
	}
	if len(x.Consumer) > 0 {
		req.Header.SetBytesV(headerConsumer, x.Consumer) // every client-sent X-Consumer was stripped
	}
	var up *upstream.Upload
	if body := x.Ctx.RequestBodyStream(); body != nil {
		var status int
		var reason string
		if up, status, reason = requestBody(x, u.server, body); status != 0 {
			x.Reject(status, reason)
			return
		}
		x.StreamedUpload = up != nil
	}
	pool := u.pools[0]
	if x.Split > 0 && x.Split < len(u.pools) {
		pool = u.pools[x.Split]
	}
	var out upstream.Outcome
	err := pool.Do(req, &x.Ctx.Response, x.ClientIP, u.timeout, &out)
	if out.Tunnel != nil {
		x.Tunnel = out.Tunnel
	}
	x.UpstreamTime = out.Elapsed
	x.Attempts = out.Attempts
	if x.Trace.Sampled {
		traceRetries(x, &out)
	}
	if out.Target != nil {
		x.Target = out.Target.Addr
	}
	if err != nil {
		u.failed(x, pool, up, out.Attempts, err)
	}
}

// failed answers an attempt that got no usable response. It is a function of its own, kept out of
// Serve, so that its locals (the classification, the log event) do not sit in every request's stack
// frame: a connection's goroutine keeps the stack its deepest request needed.
//
//go:noinline
func (u upstreamStep) failed(x *filters.Exchange, pool *upstream.Pool, up *upstream.Upload, attempts int, err error) {
	if up != nil {
		// Reading the client's body failed, not the upstream: answer the client's failure.
		if tooLarge, cerr := up.ClientFailed(); tooLarge {
			x.Reject(fasthttp.StatusRequestEntityTooLarge, "request body too large")
			return
		} else if cerr != nil {
			x.Reject(bodyReadFailure(cerr))
			return
		}
	}
	f := upstream.Classify(err)
	if !f.Local && pool.NoneAvailable() {
		// Every target is known down: that is the gateway having nowhere to send the request.
		f = upstream.Failure{Status: fasthttp.StatusServiceUnavailable, Reason: filters.ReasonNoTarget}
	}
	x.Failed = !f.Local
	x.Reject(f.Status, f.Reason)
	u.log.Warn().Bytes("request_id", x.RequestID).Str("route", x.Route).Str("upstream", x.Target).
		Int("attempts", attempts).Err(err).Msg(f.Reason)
}

// routeTable holds the routes of one host key. The router holds every pattern only to refuse those
// that conflict (fasthttp/router's rules); requests are looked up in trees, by method (router.MethodWild
// for the routes of any method), which find the same routes without the router's allocations.
type routeTable struct {
	suffix  string // for wildcard tables: ".example.com"
	router  *router.Router
	trees   []methodTree           // a scan of a few short strings beats hashing the method
	methods []string               // methods registered by method-restricted routes, for the Allow header of a 405
	groups  map[string]*routeGroup // by "METHOD pattern" ("* pattern" for any method)
}

type methodTree struct {
	method string
	tree   *pattern.Tree[*routeGroup]
}

// tree is the table's tree for method, made on first use.
func (t *routeTable) tree(method string) *pattern.Tree[*routeGroup] {
	if tr := t.treeOf(method); tr != nil {
		return tr
	}
	tr := &pattern.Tree[*routeGroup]{}
	t.trees = append(t.trees, methodTree{method, tr})
	return tr
}

// treeOf is the table's tree for method, nil if it has none.
func (t *routeTable) treeOf(method string) *pattern.Tree[*routeGroup] {
	for i := range t.trees {
		if t.trees[i].method == method {
			return t.trees[i].tree
		}
	}
	return nil
}

// find looks path up among method's routes, then among those of any method (as the router's Lookup
// does); wildOnly skips the first.
func (t *routeTable) find(method, path string, wildOnly bool) *routeGroup {
	if !wildOnly && method != router.MethodWild {
		if tr := t.treeOf(method); tr != nil {
			if g, ok := tr.Match(path); ok {
				return g
			}
		}
	}
	if tr := t.treeOf(router.MethodWild); tr != nil {
		if g, ok := tr.Match(path); ok {
			return g
		}
	}
	return nil
}

func (s *Snapshot) table(host string) *routeTable {
	t := &routeTable{router: router.New()}
	// A gateway answers for itself: no redirects to "fixed" paths (they leak normalization and add a
	// hop), and 404/405 are decided by Snapshot.match.
	t.router.RedirectTrailingSlash = false
	t.router.RedirectFixedPath = false
	t.router.HandleMethodNotAllowed = false
	t.router.HandleOPTIONS = false
	switch {
	case host == "":
		if s.anyHost == nil {
			s.anyHost = t
		}
		return s.anyHost
	case strings.HasPrefix(host, "*."):
		suffix := host[1:]
		for _, w := range s.wildcards {
			if w.suffix == suffix {
				return w
			}
		}
		t.suffix = suffix
		s.wildcards = append(s.wildcards, t)
		sort.SliceStable(s.wildcards, func(i, j int) bool { return len(s.wildcards[i].suffix) > len(s.wildcards[j].suffix) })
		return t
	}
	if existing, ok := s.hosts[host]; ok {
		return existing
	}
	s.hosts[host] = t
	return t
}

// match finds the route for the request: first among the routes for its exact host, then the most
// specific wildcard, then the routes for any host. It returns nil and the Allow value when the path
// exists only for other methods (405), or nil and "" when nothing matches (404).
func (s *Snapshot) match(ctx *fasthttp.RequestCtx, host, path []byte) (*Route, string) {
	var candidates [3]*routeTable
	tables := candidates[:0]
	if t, ok := s.hosts[b2s(host)]; ok {
		tables = append(tables, t)
	}
	for _, t := range s.wildcards {
		if len(host) > len(t.suffix) && bytes.HasSuffix(host, []byte(t.suffix)) {
			tables = append(tables, t)
			break
		}
	}
	if s.anyHost != nil {
		tables = append(tables, s.anyHost)
	}
	method, p := b2s(ctx.Method()), b2s(path)
	pathFound := false
	for _, t := range tables {
		g := t.find(method, p, false)
		for g != nil {
			pathFound = true
			if r := g.pick(ctx); r != nil {
				return r, ""
			}
			// None of the method's routes has its conditions met: the any-method routes of the same
			// path come next, then the next host table.
			wild := g.wild
			g = nil
			if !wild {
				g = t.find(method, p, true)
			}
		}
	}
	if pathFound {
		return nil, "" // the path is there, but no route's conditions hold: 404
	}
	return nil, allowed(tables, p)
}

// allowed lists the methods any of tables would accept for path, for a 405's Allow header; "" if none.
func allowed(tables []*routeTable, path string) string {
	var ms []string
	for _, t := range tables {
		for _, m := range t.methods {
			if tr := t.treeOf(m); tr != nil && !slices.Contains(ms, m) {
				if _, ok := tr.Match(path); !ok {
					continue
				}
				ms = append(ms, m)
			}
		}
	}
	sort.Strings(ms)
	return strings.Join(ms, ", ")
}

// Pools returns the snapshot's upstream pools by name.
func (s *Snapshot) Pools() map[string]*upstream.Pool { return s.pools }

// activate starts what a snapshot runs only while it serves: its pools' active health checks.
func (s *Snapshot) activate() {
	for _, p := range s.pools {
		p.Activate()
	}
	if t := s.tracing.tracer; t != nil {
		t.Start()
	}
	s.activateRedis()
}

// Close stops the snapshot's health checks and drops its targets' idle connections, at shutdown.
func (s *Snapshot) Close() {
	for _, t := range s.targets {
		t.Drain(0)
	}
	if t := s.tracing.tracer; t != nil {
		shutdownTracer(t, 0)
	}
	if c := s.redis.conn; c != nil {
		c.Close()
	}
	for _, f := range s.filters {
		if c, ok := f.(*cache.Filter); ok {
			c.Close()
		}
	}
}

// retire releases what s holds and next does not: targets next no longer uses are drained (their
// in-flight requests, which still run on s, finish first, for up to grace) and closed, and so are the
// caches next dropped; other filters hold no resources beyond memory. It returns at once; draining
// runs in the background.
func (s *Snapshot) retire(next *Snapshot, grace time.Duration) {
	for key, t := range s.targets {
		if next.targets[key] != t {
			go t.Drain(grace)
		}
	}
	// Requests still running on s end their spans on its tracer: it stops once they have had grace.
	if t := s.tracing.tracer; t != nil && t != next.tracing.tracer {
		go shutdownTracer(t, grace)
	}
	if c := s.redis.conn; c != nil && c != next.redis.conn {
		go closeAfter(grace, c.Close)
	}
	for key, f := range s.filters {
		if c, ok := f.(*cache.Filter); ok && next.filters[key] != f {
			go closeAfter(grace, c.Close)
		}
	}
}

// b2s views b as a string without copying. The string must not outlive b's contents: here, the request.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
