package gateway

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fasthttp/router"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/certs"
	"github.com/weir-gateway/weir/filters"
	"github.com/weir-gateway/weir/pattern"
	"github.com/weir-gateway/weir/upstream"
)

// Options are the process-wide things a snapshot's filters need.
type Options struct {
	// Log receives filter events (breaker transitions); the config's log.level is applied to it.
	// The zero value discards them.
	Log zerolog.Logger
	// Now is the clock for rate limits; nil means time.Now.
	Now func() time.Time
	// Metrics, if not nil, gets the snapshot's routes, pools and filters counted.
	Metrics *Metrics
	// Previous is the snapshot serving now, if any. What the new config describes exactly as it did
	// (same identity, same settings) is taken over from it rather than built anew: upstream targets
	// with their warm connections, filters with their limiter buckets and breaker state.
	Previous *Snapshot
}

// LoadFile reads, decodes, validates and compiles a config file. The error, if any, is Problems
// listing everything wrong with the file.
func LoadFile(path string, opts Options) (*Snapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{File: path, Msg: fmt.Sprintf("cannot read config: %v", err)}}
	}
	return CompileWith(path, data, opts)
}

// Compile builds a Snapshot from config bytes with default Options; file names their source in
// problems. Nothing is started: upstream connections open on first use.
func Compile(file string, data []byte) (*Snapshot, error) {
	return CompileWith(file, data, Options{Log: zerolog.Nop()})
}

// CompileWith is Compile with explicit Options.
func CompileWith(file string, data []byte, opts Options) (*Snapshot, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cfg := &Config{File: file}
	sink := newProblemSink(file)
	if !decodeConfig(data, cfg, sink) {
		return nil, sink.err()
	}
	c := compiler{cfg: cfg, sink: sink, opts: opts, filterSeen: map[string]int{}}
	snap := c.safeSnapshot()
	if err := sink.err(); err != nil {
		return nil, err
	}
	sink.warnings.sort()
	snap.Warnings = sink.warnings
	return snap, nil
}

// safeSnapshot turns a panic while compiling (a bug) into a problem: a reload must reject the file,
// not take down the gateway serving the previous one.
func (c *compiler) safeSnapshot() (s *Snapshot) {
	defer func() {
		if p := recover(); p != nil {
			c.opts.Log.Error().Str("panic", fmt.Sprint(p)).Bytes("stack", debug.Stack()).Msg("panic while compiling a config")
			c.sink.list = append(c.sink.list, Problem{File: c.cfg.File,
				Msg: fmt.Sprintf("internal error while compiling this config (a bug in weir; please report it): %v", p)})
			s = nil
		}
	}()
	return c.snapshot()
}

// resilience checks and maps health_check, passive_health and retries.
func (c *compiler) resilience(path string, uc *UpstreamConfig, st *upstream.Settings) {
	if hc := uc.HealthCheck; hc != nil {
		hp := path + ".health_check"
		if !strings.HasPrefix(hc.Path, "/") {
			c.problem(hp+".path", "must be a path starting with /, got %q", hc.Path)
		}
		c.positive(hp+".interval", hc.Interval)
		c.positive(hp+".timeout", hc.Timeout)
		if hc.HealthyThreshold < 1 {
			c.problem(hp+".healthy_threshold", "must be 1 or more")
		}
		if hc.UnhealthyThreshold < 1 {
			c.problem(hp+".unhealthy_threshold", "must be 1 or more")
		}
		check := &upstream.HealthCheck{Path: hc.Path, Interval: hc.Interval, Timeout: hc.Timeout,
			HealthyThreshold: hc.HealthyThreshold, UnhealthyThreshold: hc.UnhealthyThreshold}
		if hc.ExpectedStatuses == nil {
			for s := 200; s < 300; s++ {
				check.Expected[s/64] |= 1 << (s % 64)
			}
		}
		for i, s := range hc.ExpectedStatuses {
			if s < 100 || s > 599 {
				c.problem(fmt.Sprintf("%s.expected_statuses[%d]", hp, i), "%d is not an HTTP status", s)
				continue
			}
			check.Expected[s/64] |= 1 << (s % 64)
		}
		st.HealthCheck = check
	}
	ph := uc.PassiveHealth
	if ph.ConsecutiveFailures < 0 {
		c.problem(path+".passive_health.consecutive_failures", "must be 0 (off) or more")
	}
	if ph.ConsecutiveFailures > 0 {
		c.positive(path+".passive_health.ejection_time", ph.EjectionTime)
		if ph.MaxEjectionTime < ph.EjectionTime {
			c.problem(path+".passive_health.max_ejection_time", "must be at least ejection_time (%s)", ph.EjectionTime)
		}
	}
	st.Passive = upstream.Passive{ConsecutiveFailures: ph.ConsecutiveFailures, EjectionTime: ph.EjectionTime, MaxEjectionTime: ph.MaxEjectionTime}

	rc := uc.Retries
	rp := path + ".retries"
	if rc.Attempts < 1 {
		c.problem(rp+".attempts", "must be 1 (no retries) or more")
	}
	if rc.BudgetRatio < 0 || rc.BudgetRatio > 1 {
		c.problem(rp+".budget_ratio", "must be between 0 and 1, got %g", rc.BudgetRatio)
	}
	if rc.MinRetriesPerSecond < 0 {
		c.problem(rp+".min_retries_per_second", "must be 0 or more")
	}
	if rc.Deadline < 0 {
		c.problem(rp+".deadline", "must be more than zero")
	}
	st.Retry = upstream.Retry{Attempts: rc.Attempts, BudgetRatio: rc.BudgetRatio, MinPerSecond: rc.MinRetriesPerSecond, Deadline: rc.Deadline}
	on := rc.On
	if on == nil {
		on = []string{"connect_failure"}
	}
	for i, w := range on {
		status, err := strconv.Atoi(w)
		switch {
		case w == "connect_failure":
			st.Retry.OnConnect = true
		case w == "timeout":
			st.Retry.OnTimeout = true
		case err == nil && status >= 500 && status <= 599:
			st.Retry.Statuses[status/64] |= 1 << (status % 64)
		default:
			c.problem(fmt.Sprintf("%s.on[%d]", rp, i), "unknown retry condition %q; use connect_failure, timeout or a 5xx status", w)
		}
	}
}

// maxTargets bounds a pool: a request's tried targets are tracked in a 64-bit set, so that a retry
// goes to a target it has not tried yet without allocating.
const maxTargets = 64

// maxWeight bounds target weights: the hash balancer gives each target 160 ring points per unit of
// weight, so weights are kept to a range where the ring stays small (as HAProxy does, 1 to 256).
const maxWeight = 256

type compiler struct {
	cfg  *Config
	sink *problemSink
	opts Options
	snap *Snapshot // being built

	filterSeen   map[string]int // filter identities built so far, to tell identical filters of a route apart
	routeTargets string         // the route's target URLs, sorted: part of a breaker's identity
}

// existingTarget finds a target with this key in the snapshot being built (pools may share one) or in
// the previous one.
func (c *compiler) existingTarget(key string) *upstream.Target {
	if t, ok := c.snap.targets[key]; ok {
		return t
	}
	if c.opts.Previous != nil {
		return c.opts.Previous.targets[key]
	}
	return nil
}

// reuseFilter returns the filter the previous snapshot built for identity, if any, and records the
// identity for the new snapshot. Identical filters on one route are told apart by their order.
func (c *compiler) reuseFilter(identity string) (key string, f filters.Filter) {
	n := c.filterSeen[identity]
	c.filterSeen[identity] = n + 1
	key = fmt.Sprintf("%s#%d", identity, n)
	if c.opts.Previous != nil {
		f = c.opts.Previous.filters[key]
	}
	return key, f
}

// problem records a semantic problem unless the value at path already failed to decode.
func (c *compiler) problem(path, format string, args ...any) {
	if !c.sink.covered(path) {
		c.sink.addf(path, format, args...)
	}
}

func (c *compiler) snapshot() *Snapshot {
	s := &Snapshot{
		Server:  c.cfg.Server,
		Log:     c.cfg.Log,
		pools:   make(map[string]*upstream.Pool),
		hosts:   make(map[string]*routeTable),
		targets: make(map[string]*upstream.Target),
		filters: make(map[string]filters.Filter),
		sources: make(map[string]*certs.Source),
		metrics: c.opts.Metrics,

		routeByName: make(map[string]*Route),
	}
	c.snap = s
	c.server(s)
	s.Admin, s.Reload = c.cfg.Admin, c.cfg.Reload
	if a := c.cfg.Admin.Listen; a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			c.problem("admin.listen", "invalid listen address %q; write it like \"127.0.0.1:9901\", or \"\" to turn the admin listener off", a)
		}
	}
	if f := c.cfg.Admin.TokenFile; f != "" {
		s.adminToken = c.adminToken(c.resolveFile(f))
	}
	c.positive("reload.debounce", c.cfg.Reload.Debounce)
	if c.cfg.Reload.Interval < 0 {
		c.problem("reload.interval", "must be 0s (off) or more")
	}
	if c.cfg.Log.AccessSample < 1 {
		c.problem("log.access_sample", "must be 1 (log every request) or more")
	}
	switch lvl := c.cfg.Log.Level; lvl {
	case "debug", "info", "warn", "error":
		s.LogLevel, _ = zerolog.ParseLevel(lvl)
	default:
		c.problem("log.level", "unknown level %q; use debug, info, warn or error", lvl)
	}
	c.redis(s)
	for _, name := range sortedKeys(c.cfg.Upstreams) {
		if pool := c.pool(name, c.cfg.Upstreams[name]); pool != nil {
			s.pools[name] = pool
		}
	}
	if len(c.cfg.Routes) == 0 {
		c.problem("routes", "no routes are defined; add at least one under routes")
	}
	names := make(map[string]int)
	for i := range c.cfg.Routes {
		c.route(s, fmt.Sprintf("routes[%d]", i), &c.cfg.Routes[i], names)
	}
	c.tracing(s) // last: its tracer is built only for a config without problems
	return s
}

func (c *compiler) server(s *Snapshot) {
	sc := c.cfg.Server
	switch _, _, err := net.SplitHostPort(sc.Listen); {
	case sc.Listen == "" && sc.TLS == nil:
		c.problem("server.listen", "no listener: set server.listen (like \":8080\"), server.tls, or both")
	case sc.Listen == "" && sc.RedirectHTTPS:
		c.problem("server.redirect_https", "redirects are answered on the plain listener, and server.listen is off")
	case sc.Listen != "" && err != nil:
		c.problem("server.listen", "invalid listen address %q; write it like \":8080\" or \"127.0.0.1:8080\", or \"\" to serve only TLS", sc.Listen)
	}
	c.tlsListener(s)
	c.positive("server.read_timeout", sc.ReadTimeout)
	c.positive("server.write_timeout", sc.WriteTimeout)
	c.positive("server.idle_timeout", sc.IdleTimeout)
	c.positive("server.shutdown_timeout", sc.ShutdownTimeout)
	if sc.MaxHeaderBytes < 1024 {
		c.problem("server.max_header_bytes", "must be at least 1KiB to hold a request line and headers, got %d bytes", sc.MaxHeaderBytes)
	}
	if sc.WriteBufferBytes < 1024 || sc.WriteBufferBytes > 1<<20 {
		c.problem("server.write_buffer_bytes", "must be between 1KiB and 1MiB, got %d bytes", sc.WriteBufferBytes)
	}
	if sc.MaxBodyBytes <= 0 {
		c.problem("server.max_body_bytes", "must be more than 0 bytes")
	}
	if sc.BufferRequests < 0 || sc.BufferRequests > 64<<20 {
		c.problem("server.buffer_requests", "must be between 0 (stream every body) and 64MiB, got %d bytes", sc.BufferRequests)
	}
	for i, p := range sc.TrustedProxies {
		prefix, err := parsePrefix(p)
		if err != nil {
			c.problem(fmt.Sprintf("server.trusted_proxies[%d]", i), "invalid address or CIDR %q; write it like \"10.0.0.0/8\" or \"192.0.2.7\"", p)
			continue
		}
		s.trusted = append(s.trusted, prefix)
	}
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

func (c *compiler) positive(path string, d interface{ Nanoseconds() int64 }) {
	if d.Nanoseconds() <= 0 {
		c.problem(path, "must be more than zero")
	}
}

func (c *compiler) pool(name string, uc *UpstreamConfig) *upstream.Pool {
	path := "upstreams." + name
	if uc == nil {
		c.problem(path, "upstream %q has no settings; it needs at least targets", name)
		return nil
	}
	before := len(c.sink.list)
	st := upstream.Settings{
		Name:            name,
		ConnectTimeout:  uc.ConnectTimeout,
		Timeout:         uc.Timeout,
		MaxConns:        uc.MaxConnsPerTarget,
		ConnWaitTimeout: uc.ConnWaitTimeout,
		IdleConnTimeout: uc.IdleConnTimeout,
		Streaming: upstream.Streaming{BufferBytes: int(uc.BufferResponses), MaxBytes: int(uc.MaxResponseBytes),
			Idle: uc.StreamIdleTimeout},

		MaxResponseHeaderBytes: int(uc.MaxResponseHeaderBytes),
		Log:                    c.opts.Log,
	}
	if m := c.opts.Metrics; m != nil {
		st.Counters = m.poolCounters(name)
	}
	c.resilience(path, uc, &st)
	st.TLS = c.upstreamTLS(path, uc)
	var err error
	st.Balancer, err = upstream.ParseBalancer(uc.Balancer)
	balancerOK := err == nil
	if !balancerOK {
		c.problem(path+".balancer", "%v", err)
	}
	switch {
	case uc.HashKey != "" && st.Balancer != upstream.Hash && balancerOK:
		c.problem(path+".hash_key", "hash_key is only used by the hash balancer, but balancer is %s", uc.Balancer)
	case uc.HashKey == "" && st.Balancer == upstream.Hash:
		c.problem(path+".hash_key", "balancer hash needs a hash_key: client_ip, path, header:NAME or cookie:NAME")
	case uc.HashKey != "":
		if st.HashKey, err = upstream.ParseHashKey(uc.HashKey); err != nil {
			c.problem(path+".hash_key", "%v", err)
		}
	}
	if len(uc.Targets) == 0 {
		c.problem(path+".targets", "the pool has no targets; list at least one, like - url: http://127.0.0.1:9001")
	}
	if len(uc.Targets) > maxTargets {
		c.problem(path+".targets", "a pool holds at most %d targets, got %d; split it into several upstreams", maxTargets, len(uc.Targets))
	}
	seen := make(map[string]int)
	for i, tc := range uc.Targets {
		tpath := fmt.Sprintf("%s.targets[%d]", path, i)
		spec, err := upstream.ParseTarget(tc.URL)
		if err != nil {
			c.problem(tpath+".url", "%v", err)
			continue
		}
		if j, dup := seen[spec.Addr]; dup {
			c.problem(tpath+".url", "target %s is already listed as targets[%d]; raise its weight instead", spec.Addr, j)
			continue
		}
		seen[spec.Addr] = i
		switch {
		case tc.Weight < 1 || tc.Weight > maxWeight:
			c.problem(tpath+".weight", "weight must be 1 to %d, got %d", maxWeight, tc.Weight)
		case tc.Weight > 1 && balancerOK && st.Balancer != upstream.Weighted && st.Balancer != upstream.Hash:
			c.problem(tpath+".weight", "weight is only used by the weighted and hash balancers, but balancer is %s", uc.Balancer)
		}
		spec.Weight = tc.Weight
		st.Targets = append(st.Targets, spec)
	}
	c.positive(path+".connect_timeout", uc.ConnectTimeout)
	c.positive(path+".timeout", uc.Timeout)
	c.positive(path+".idle_conn_timeout", uc.IdleConnTimeout)
	if uc.ConnWaitTimeout < 0 {
		c.problem(path+".conn_wait_timeout", "must be zero (fail at once) or more")
	}
	if uc.MaxConnsPerTarget < 1 {
		c.problem(path+".max_conns_per_target", "must be 1 or more, got %d", uc.MaxConnsPerTarget)
	}
	if uc.MaxResponseBytes < 0 {
		c.problem(path+".max_response_bytes", "must be 0 (no cap) or more")
	}
	if uc.BufferResponses < 0 || uc.BufferResponses > 64<<20 {
		c.problem(path+".buffer_responses", "must be between 0 (stream every body) and 64MiB, got %d bytes", uc.BufferResponses)
	}
	c.positive(path+".stream_idle_timeout", uc.StreamIdleTimeout)
	if uc.MaxResponseHeaderBytes < 1024 {
		c.problem(path+".max_response_header_bytes", "must be at least 1KiB to hold a status line and headers, got %d bytes", uc.MaxResponseHeaderBytes)
	}
	if len(c.sink.list) > before {
		return nil
	}
	pool := upstream.NewPool(st, c.existingTarget)
	for _, t := range pool.Targets {
		c.snap.targets[t.Key()] = t
	}
	return pool
}

func (c *compiler) route(s *Snapshot, path string, rc *RouteConfig, names map[string]int) {
	before := len(c.sink.list)
	switch j, dup := names[rc.Name]; {
	case rc.Name == "":
		c.problem(path+".name", "every route needs a name (it appears in logs and metrics)")
	case dup:
		c.problem(path+".name", "route name %q is already used by routes[%d]", rc.Name, j)
	default:
		names[rc.Name] = len(names)
	}
	r := &Route{Name: rc.Name, Match: rc.Match, webSocket: rc.WebSocket.Enabled, wsIdle: rc.WebSocket.IdleTimeout}
	if rc.Timeout < 0 {
		c.problem(path+".timeout", "must be more than zero (or absent for the pool's timeout)")
	}
	if rc.WebSocket.Enabled {
		c.positive(path+".websocket.idle_timeout", rc.WebSocket.IdleTimeout)
	}
	var split *splitter
	switch {
	case len(rc.Split) > 0 && rc.Upstream != "":
		c.problem(path+".split", "give upstream or split, not both")
	case len(rc.Split) > 0:
		split = c.split(path, rc.Name, rc.Split, rc.SplitKey)
		r.Pool = split.pools[0]
	case rc.SplitKey != "":
		c.problem(path+".split_key", "split_key goes with split")
	case rc.Upstream == "":
		c.problem(path+".upstream", "every route needs an upstream (or a split)")
	default:
		if _, ok := c.cfg.Upstreams[rc.Upstream]; !ok {
			c.problem(path+".upstream", "unknown upstream %q%s", rc.Upstream, suggest(rc.Upstream, sortedKeys(c.cfg.Upstreams), "upstreams"))
			break
		}
		r.Pool = s.pools[rc.Upstream] // nil when the pool itself is invalid; reported there
	}
	methods := c.methods(path+".match.methods", rc.Match.Methods)
	r.conds = c.conditions(path+".match", rc.Match)
	hosts := c.hosts(path+".match.hosts", rc.Match.Hosts)
	if rc.Match.Path == "" {
		c.problem(path+".match.path", "every route needs a path pattern, like /api/users/{id} or /{rest:*}")
	}
	pat, err := pattern.Parse(rc.Match.Path)
	if err != nil && rc.Match.Path != "" {
		c.problem(path+".match.path", "%v", err)
	}
	// A problem found earlier for this route's keys may have kept this one from being recorded (see
	// problem), so a missing pattern is checked itself: the filters below read it.
	if len(c.sink.list) > before || pat == nil {
		return
	}
	pools := []*upstream.Pool{r.Pool}
	if split != nil {
		pools = split.pools
	}
	var judged []string
	for i, p := range pools {
		if p == nil {
			continue
		}
		addrs := make([]string, len(p.Targets))
		for j, t := range p.Targets {
			addrs[j] = t.URL
		}
		sort.Strings(addrs)
		judged = append(judged, fmt.Sprintf("%d:%s", i, strings.Join(addrs, " ")))
	}
	c.routeTargets = strings.Join(judged, " | ")
	// defaults.filters are built for each route: every route gets its own limiter buckets and breaker.
	env := filters.Env{Route: rc.Name, Pattern: pat, Now: c.opts.Now, Log: c.opts.Log.With().Str("route", rc.Name).Logger(),
		Dir: filepath.Dir(c.cfg.File), SharedLimits: c.sharedLimits(s), SharedCache: c.sharedCache(s)}
	if split != nil {
		env.Splits = split.names
	}
	env.Mirror = func(name string) (filters.Sender, error) {
		pool, ok := s.pools[name]
		switch {
		case !ok:
			return nil, fmt.Errorf("unknown upstream %q%s", name, suggest(name, sortedKeys(c.cfg.Upstreams), "upstreams"))
		case pool == nil:
			return nil, fmt.Errorf("upstream %q is invalid (see its problems)", name)
		}
		return func(req *fasthttp.Request, resp *fasthttp.Response, clientIP []byte) error {
			var out upstream.Outcome
			err := pool.Do(req, resp, clientIP, 0, &out)
			return err
		}, nil
	}
	if m := c.opts.Metrics; m != nil {
		env.Counters = m.filterCounters(rc.Name)
		r.metrics = m.forRoute(rc.Name)
	}
	defaults, dpaths, dnames, okDefaults := c.buildFilters("defaults.filters", c.cfg.Defaults.Filters, env)
	own, opaths, onames, okOwn := c.buildFilters(path+".filters", rc.Filters, env)
	if !okDefaults || !okOwn {
		return
	}
	c.checkFilterOrder(append(dpaths, opaths...), append(dnames, onames...), methods)
	if len(c.sink.list) > before {
		return
	}
	r.Filters = append(defaults, own...)
	r.handler = filters.Chain(r.Filters, upstreamStep{pools: pools, log: c.opts.Log, route: r, server: &s.Server,
		timeout: rc.Timeout})
	if split != nil {
		r.handler = splitStep{s: split, next: r.handler}
	}
	for _, h := range hosts {
		t := s.table(h)
		other, err := t.add(rc.Match.Path, methods, r)
		if err != nil {
			c.problem(path+".match.path", "%v", err)
			return
		}
		if other != nil {
			c.problem(path+".match", "route %q already matches the same host, path, method and conditions; give one of them another condition (headers, query, cookies) or remove it", other.Name)
			return
		}
	}
	s.Routes = append(s.Routes, r)
	s.routeByName[r.Name] = r
}

func (c *compiler) methods(path string, ms []string) []string {
	for i, m := range ms {
		switch {
		case slices.Contains(ms[:i], m):
			c.problem(fmt.Sprintf("%s[%d]", path, i), "method %s is listed twice", m)
		case m == fasthttp.MethodConnect || m == fasthttp.MethodTrace:
			c.problem(fmt.Sprintf("%s[%d]", path, i), "%s is never proxied; weir answers it with 501", m)
		case !isMethodToken(m):
			c.problem(fmt.Sprintf("%s[%d]", path, i), "invalid method %q; methods are upper-case, like GET or POST", m)
		}
	}
	return ms
}

func isMethodToken(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if (m[i] < 'A' || m[i] > 'Z') && m[i] != '-' && m[i] != '_' {
			return false
		}
	}
	return true
}

// hosts normalizes the route's host list; an empty list means any host and yields the "" table key.
func (c *compiler) hosts(path string, hs []string) []string {
	if len(hs) == 0 {
		return []string{""}
	}
	out := make([]string, 0, len(hs))
	for i, h := range hs {
		n := strings.TrimSuffix(strings.ToLower(h), ".")
		name := strings.TrimPrefix(n, "*.")
		if name == "" || strings.ContainsAny(name, "*/:@ ") || strings.Contains(name, "..") {
			c.problem(fmt.Sprintf("%s[%d]", path, i), "invalid host %q; write a name like api.example.com or a wildcard like *.example.com (no port)", h)
			continue
		}
		if slices.Contains(out, n) {
			c.problem(fmt.Sprintf("%s[%d]", path, i), "host %q is listed twice (hosts compare case-insensitively)", h)
			continue
		}
		out = append(out, n)
	}
	return out
}

// add registers r for pattern and methods (any method when empty). Routes for the same pattern and
// method share one routeGroup; other is a route already there with the same conditions. The router
// checks the pattern against the others (its registration panics become errors); lookups go to the
// table's trees.
func (t *routeTable) add(pattern string, methods []string, r *Route) (other *Route, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("path pattern %q cannot be added: %v", pattern, p)
		}
	}()
	if t.groups == nil {
		t.groups = map[string]*routeGroup{}
	}
	keys := methods
	if len(keys) == 0 {
		keys = []string{router.MethodWild}
	}
	for _, m := range keys {
		g := t.groups[m+" "+pattern]
		if g == nil {
			g = &routeGroup{wild: m == router.MethodWild}
			t.groups[m+" "+pattern] = g
			if g.wild {
				t.router.ANY(pattern, registered)
			} else {
				t.router.Handle(m, pattern, registered)
			}
			if err := t.tree(m).AddText(pattern, g); err != nil {
				return nil, err
			}
		}
		if o := g.add(r); o != nil {
			return o, nil
		}
		if !g.wild && !slices.Contains(t.methods, m) {
			t.methods = append(t.methods, m)
		}
	}
	return nil, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// adminToken reads the admin token file and returns the token's digest: only the digest is kept,
// and compared in constant time (see Admin.authorized).
func (c *compiler) adminToken(file string) []byte {
	data, err := os.ReadFile(file)
	if err != nil {
		c.problem("admin.token_file", "cannot read the token: %v", err)
		return nil
	}
	token := bytes.TrimSpace(data)
	if len(token) < 16 || bytes.ContainsAny(token, " \t\r\n") {
		c.problem("admin.token_file", "%s must hold one token of 16 characters or more (openssl rand -hex 32 makes one)", file)
		return nil
	}
	sum := sha256.Sum256(token)
	return sum[:]
}
