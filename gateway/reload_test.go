package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// runningGateway is a gateway started with Run on a config file, as cmd/weir does.
type runningGateway struct {
	public, admin string
	path          string
	sighup        chan struct{}
	https         string        // the HTTPS listener's address, when the config has server.tls
	events        *lockedBuffer // the gateway's event log, also shown in the test log
}

func addrText(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// startRun runs the config at path until the test ends.
func startRun(t *testing.T, path string) *runningGateway {
	return startRunWith(t, path, RunConfig{})
}

// startRunWith is startRun with extra RunConfig settings (FallbackTLS); Path, logs, Reload and Ready
// are set here.
func startRunWith(t *testing.T, path string, rc RunConfig) *runningGateway {
	t.Helper()
	g := &runningGateway{path: path, sighup: make(chan struct{}), events: &lockedBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		rc.Path, rc.Log, rc.AccessOut, rc.Reload = path, zerolog.New(io.MultiWriter(testLogWriter{t}, g.events)), io.Discard, g.sighup
		rc.Ready = func(l Listeners) {
			g.public, g.admin, g.https = addrText(l.HTTP), addrText(l.Admin), addrText(l.HTTPS)
			close(ready)
		}
		done <- Run(ctx, rc)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	})
	return g
}

// status fetches GET /config.
func (g *runningGateway) status(t *testing.T) Status {
	t.Helper()
	code, body, err := fasthttp.Get(nil, "http://"+g.admin+"/config")
	if err != nil || code != 200 {
		t.Fatalf("GET /config: %d %v", code, err)
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("GET /config body %q: %v", body, err)
	}
	return st
}

// waitApplied waits until the active config's hash is that of content.
func (g *runningGateway) waitApplied(t *testing.T, content string) {
	t.Helper()
	want := contentHash([]byte(content))
	waitFor(t, "the new config to be applied", func() bool { return g.status(t).Hash == want })
}

// reloadConfig is a gateway config for reload tests: admin on an ephemeral port, watch with a short
// debounce, one route per path in routes to backend, each stamping X-Config: version on responses.
func reloadConfig(version, backend string, routes ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server: {listen: \"127.0.0.1:0\"}\nadmin: {listen: \"127.0.0.1:0\"}\nreload: {debounce: 20ms}\n")
	fmt.Fprintf(&b, "log: {access: false}\nupstreams:\n  backend:\n    targets: [{url: \"http://%s\"}]\nroutes:\n", backend)
	for i, r := range routes {
		fmt.Fprintf(&b, "  - name: r%d\n    match: {path: %q}\n    upstream: backend\n", i, r)
		fmt.Fprintf(&b, "    filters: [{rewrite: {response_headers: {set: {X-Config: %s}}}}]\n", version)
	}
	return b.String()
}

func statusAt(t *testing.T, addr, path string) int {
	t.Helper()
	code, _, err := fasthttp.GetTimeout(nil, "http://"+addr+path, 5*time.Second)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return code
}

// configMapDir lays out a directory the way a Kubernetes ConfigMap volume does: config.yaml is a
// symlink to ..data/config.yaml, and ..data a symlink to a timestamped directory.
type configMapDir struct {
	dir string
	n   int
}

func newConfigMapDir(t *testing.T, content string) *configMapDir {
	c := &configMapDir{dir: t.TempDir()}
	c.update(t, content)
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), filepath.Join(c.dir, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *configMapDir) path() string { return filepath.Join(c.dir, "config.yaml") }

// update does what the kubelet does: a new directory, a ..data_tmp symlink to it renamed over ..data,
// then the old directory removed. No event names config.yaml.
func (c *configMapDir) update(t *testing.T, content string) {
	t.Helper()
	c.n++
	name := fmt.Sprintf("..2026_%04d", c.n)
	if err := os.Mkdir(filepath.Join(c.dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, name, "config.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(name, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if c.n > 1 {
		os.RemoveAll(filepath.Join(c.dir, fmt.Sprintf("..2026_%04d", c.n-1)))
	}
}

// writeInPlace truncates and rewrites the file (two events), like `cat > config.yaml`.
func writeInPlace(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeByRename saves like most editors: a temporary file in the same directory renamed over the file.
func writeByRename(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".swp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestReload_EachKindOfSaveIsPickedUp(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	v1 := reloadConfig("1", backend, "/a")
	for _, tc := range []struct {
		desc string
		save func(t *testing.T, path, content string)
	}{
		{"in-place write", writeInPlace},
		{"editor's rename-on-save", writeByRename},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			path := writeConfigFile(t, v1)
			g := startRun(t, path)
			if s := statusAt(t, g.public, "/b"); s != 404 {
				t.Fatalf("/b before the change: %d", s)
			}
			v2 := reloadConfig("2", backend, "/a", "/b")
			tc.save(t, path, v2)
			g.waitApplied(t, v2)
			if s := statusAt(t, g.public, "/b"); s != 200 {
				t.Fatalf("/b after the change: %d", s)
			}
			// The watch survives the save: a second change is seen too.
			v3 := reloadConfig("3", backend, "/c")
			tc.save(t, path, v3)
			g.waitApplied(t, v3)
			if a := g.status(t).LastAttempt; a == nil || a.Result != Applied || a.Trigger != "file change" {
				t.Errorf("last attempt %+v, want an applied file change", a)
			}
		})
	}
	t.Run("Kubernetes ConfigMap ..data swap", func(t *testing.T) {
		cm := newConfigMapDir(t, v1)
		g := startRun(t, cm.path())
		for i := 2; i <= 3; i++ {
			next := reloadConfig(fmt.Sprint(i), backend, "/a", fmt.Sprintf("/v%d", i))
			cm.update(t, next)
			g.waitApplied(t, next)
			if s := statusAt(t, g.public, fmt.Sprintf("/v%d", i)); s != 200 {
				t.Fatalf("route of update %d: %d", i, s)
			}
		}
	})
}

func TestReload_InvalidConfigKeepsServingAndIsReportedWithItsLine(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	v1 := reloadConfig("1", backend, "/a")
	path := writeConfigFile(t, v1)
	g := startRun(t, path)

	bad := strings.Replace(v1, "upstream: backend", "upstream: backnd", 1)
	writeInPlace(t, path, bad)
	var st Status
	waitFor(t, "the rejected attempt", func() bool {
		st = g.status(t)
		return st.LastAttempt != nil && st.LastAttempt.Result == Rejected
	})
	if len(st.LastAttempt.Problems) != 1 || st.LastAttempt.Problems[0] != path+`:11: routes[0].upstream: unknown upstream "backnd"; did you mean "backend"?` {
		t.Errorf("problems %q, want the unknown upstream with file and line", st.LastAttempt.Problems)
	}
	if st.Hash != contentHash([]byte(v1)) {
		t.Error("the active hash changed although the config was rejected")
	}
	if s := statusAt(t, g.public, "/a"); s != 200 {
		t.Fatalf("the old config stopped serving: %d", s)
	}
	// A half-written file is just another invalid file; the next save applies.
	writeInPlace(t, path, v1[:len(v1)/2])
	v2 := reloadConfig("2", backend, "/a", "/b")
	writeInPlace(t, path, v2)
	g.waitApplied(t, v2)
}

func TestReload_TriggersWithoutTheWatch(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	noWatch := func(c string) string {
		return strings.Replace(c, "reload: {debounce: 20ms}", "reload: {watch: false}", 1)
	}
	v1 := noWatch(reloadConfig("1", backend, "/a"))
	path := writeConfigFile(t, v1)
	g := startRun(t, path)

	v2 := noWatch(reloadConfig("2", backend, "/a", "/b"))
	writeInPlace(t, path, v2)
	time.Sleep(100 * time.Millisecond)
	if g.status(t).Hash != contentHash([]byte(v1)) {
		t.Fatal("the file was reloaded although reload.watch is off")
	}
	g.sighup <- struct{}{}
	g.waitApplied(t, v2)
	if a := g.status(t).LastAttempt; a.Trigger != "SIGHUP" {
		t.Errorf("trigger %q, want SIGHUP", a.Trigger)
	}

	post := func() (int, Attempt) {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.SetRequestURI("http://" + g.admin + "/reload")
		req.Header.SetMethod("POST")
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(resp)
		if err := fasthttp.Do(req, resp); err != nil {
			t.Fatal(err)
		}
		var a Attempt
		if err := json.Unmarshal(resp.Body(), &a); err != nil {
			t.Fatalf("POST /reload body %q: %v", resp.Body(), err)
		}
		return resp.StatusCode(), a
	}
	if code, a := post(); code != 200 || a.Result != Unchanged {
		t.Errorf("POST /reload of the active content: %d %+v, want 200 unchanged", code, a)
	}
	writeInPlace(t, path, "routes: [")
	if code, a := post(); code != 422 || a.Result != Rejected || len(a.Problems) == 0 {
		t.Errorf("POST /reload of a broken file: %d %+v, want 422 rejected with problems", code, a)
	}
	v3 := noWatch(reloadConfig("3", backend, "/c"))
	writeInPlace(t, path, v3)
	if code, a := post(); code != 200 || a.Result != Applied {
		t.Errorf("POST /reload: %d %+v, want 200 applied", code, a)
	}
	if s := statusAt(t, g.public, "/c"); s != 200 {
		t.Errorf("/c after POST /reload: %d", s)
	}
}

func TestReload_IntervalBackstop(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	interval := func(c string) string {
		return strings.Replace(c, "reload: {debounce: 20ms}", "reload: {watch: false, interval: 50ms}", 1)
	}
	path := writeConfigFile(t, interval(reloadConfig("1", backend, "/a")))
	g := startRun(t, path)
	v2 := interval(reloadConfig("2", backend, "/b"))
	writeInPlace(t, path, v2)
	g.waitApplied(t, v2)
}

func TestReload_ListenerChangesAreReportedAsNeedingARestart(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	path := writeConfigFile(t, reloadConfig("1", backend, "/a"))
	g := startRun(t, path)
	v2 := strings.Replace(reloadConfig("2", backend, "/a", "/b"), `server: {listen: "127.0.0.1:0"}`,
		`server: {listen: "127.0.0.1:1", read_timeout: 3s}`, 1)
	writeInPlace(t, path, v2)
	g.waitApplied(t, v2)
	if got := g.status(t).RestartRequired; fmt.Sprint(got) != "[server.listen server.read_timeout]" {
		t.Errorf("restart_required = %v", got)
	}
	if s := statusAt(t, g.public, "/b"); s != 200 {
		t.Errorf("the rest of the config must still apply: /b got %d", s)
	}
}

func TestAdmin_HealthReadinessAndUnknownPaths(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	g := startRun(t, writeConfigFile(t, reloadConfig("1", backend, "/a")))
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/healthz", 200}, {"GET", "/readyz", 200}, {"GET", "/config", 200},
		{"POST", "/healthz", 405}, {"GET", "/reload", 405}, {"GET", "/nope", 404},
	} {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + g.admin + tc.path)
		req.Header.SetMethod(tc.method)
		if err := fasthttp.Do(req, resp); err != nil || resp.StatusCode() != tc.want {
			t.Errorf("%s %s: %d %v, want %d", tc.method, tc.path, resp.StatusCode(), err, tc.want)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	// The public listener does not serve admin endpoints.
	if s := statusAt(t, g.public, "/healthz"); s != 404 {
		t.Errorf("public /healthz: %d, want 404", s)
	}
}

func TestReload_BreakerStartsFreshWhenItsRouteMovesToOtherTargets(t *testing.T) {
	dead := closedAddr(t)
	alive := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	cfg := func(target string) string {
		return strings.Replace(reloadConfig("x", target, "/{rest:*}"), "filters: [", "filters: [{circuit_breaker: {consecutive_failures: 1, open_timeout: 1h}}, ", 1)
	}
	v1 := cfg(dead)
	path := writeConfigFile(t, v1)
	g := startRun(t, path)
	statusAt(t, g.public, "/x") // 502: the breaker opens
	if s := statusAt(t, g.public, "/x"); s != 503 {
		t.Fatalf("breaker did not open: %d", s)
	}
	v2 := cfg(alive)
	writeInPlace(t, path, v2)
	g.waitApplied(t, v2)
	if s := statusAt(t, g.public, "/x"); s != 200 {
		t.Fatalf("after moving the route to a healthy target: %d, want 200 (the old breaker judged other targets)", s)
	}
}

func TestReload_UnchangedFiltersKeepTheirStateChangedOnesStartFresh(t *testing.T) {
	b := startSwitchableBackend(t, 200)
	cfg := func(burst int, extraRoute string) string {
		return fmt.Sprintf(`server: {listen: "127.0.0.1:0"}
admin: {listen: "127.0.0.1:0"}
reload: {debounce: 20ms}
upstreams:
  backend:
    targets: [{url: "http://%s"}]
routes:
  - name: limited
    match: {path: /limited}
    upstream: backend
    filters: [{rate_limit: {rate: 1, per: 1h, burst: %d}}]
  - name: guarded
    match: {path: /guarded}
    upstream: backend
    filters: [{circuit_breaker: {consecutive_failures: 1, open_timeout: 1h}}]
%s`, b.addr, burst, extraRoute)
	}
	v1 := cfg(1, "")
	path := writeConfigFile(t, v1)
	g := startRun(t, path)
	if s := statusAt(t, g.public, "/limited"); s != 200 {
		t.Fatalf("first /limited: %d", s)
	}
	b.status.Store(500)
	statusAt(t, g.public, "/guarded") // a failure opens the breaker
	b.status.Store(200)

	v2 := cfg(1, "  - {name: other, match: {path: /other}, upstream: backend}\n")
	writeInPlace(t, path, v2)
	g.waitApplied(t, v2)
	if s := statusAt(t, g.public, "/limited"); s != 429 {
		t.Errorf("/limited after an unrelated change: %d, want 429 (its bucket kept)", s)
	}
	if s := statusAt(t, g.public, "/guarded"); s != 503 {
		t.Errorf("/guarded after an unrelated change: %d, want 503 (its breaker kept open)", s)
	}

	v3 := cfg(2, "  - {name: other, match: {path: /other}, upstream: backend}\n")
	writeInPlace(t, path, v3)
	g.waitApplied(t, v3)
	if s := statusAt(t, g.public, "/limited"); s != 200 {
		t.Errorf("/limited after its burst changed: %d, want 200 (a fresh bucket)", s)
	}
}

// countingListener counts the connections a backend accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// startCountingBackend serves h, counting accepted connections; connState may be nil.
func startCountingBackend(t *testing.T, h fasthttp.RequestHandler, connState func(net.Conn, fasthttp.ConnState)) (string, *countingListener) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	srv := &fasthttp.Server{Handler: h, ConnState: connState}
	go srv.Serve(cl)
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String(), cl
}

func TestReload_RemovedUpstreamFinishesInFlightThenCloses(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	var closed atomic.Int64
	oldAddr, _ := startCountingBackend(t, func(ctx *fasthttp.RequestCtx) {
		entered <- struct{}{}
		<-release
		ctx.WriteString("old")
	}, func(_ net.Conn, s fasthttp.ConnState) {
		if s == fasthttp.StateClosed {
			closed.Add(1)
		}
	})
	newAddr := startBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.WriteString("new") })
	cfg := func(target string) string {
		return strings.Replace(reloadConfig("x", target, "/{rest:*}"), "targets:", "timeout: 5s\n    targets:", 1)
	}
	v1 := cfg(oldAddr)
	path := writeConfigFile(t, v1)
	g := startRun(t, path)

	inFlight := sendAsync(g.public)
	<-entered
	v2 := cfg(newAddr)
	writeInPlace(t, path, v2)
	g.waitApplied(t, v2)
	if code, body, _ := fasthttp.Get(nil, "http://"+g.public+"/x"); code != 200 || string(body) != "new" {
		t.Fatalf("after the reload: %d %q, want the new upstream", code, body)
	}
	if closed.Load() != 0 {
		t.Fatal("the old upstream's connection closed while its request was in flight")
	}
	close(release)
	if resp := <-inFlight; resp == nil || string(resp.Body()) != "old" {
		t.Fatalf("the in-flight request on the removed upstream did not complete: %v", resp)
	}
	waitFor(t, "the removed upstream's connection to close", func() bool { return closed.Load() == 1 })
}

// TestReload_UnderLoadDropsNothing is the proof the issue asks for: continuous keep-alive traffic on a
// route both configs share, while the config flips between them 100 times by every kind of save.
func TestReload_UnderLoadDropsNothing(t *testing.T) {
	addr, accepted := startCountingBackend(t, func(ctx *fasthttp.RequestCtx) { ctx.WriteString("ok") }, nil)
	a := reloadConfig("A", addr, "/shared", "/only-a")
	b := reloadConfig("B", addr, "/shared", "/only-b")
	cm := newConfigMapDir(t, a)
	g := startRun(t, cm.path())

	var stop atomic.Bool
	var sent, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	defer func() { stop.Store(true); wg.Wait() }() // also when the test fails midway
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &fasthttp.HostClient{Addr: g.public} // keep-alive
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			req.SetRequestURI("http://" + g.public + "/shared")
			for !stop.Load() {
				err := c.DoTimeout(req, resp, 5*time.Second)
				sent.Add(1)
				version := resp.Header.PeekAll("X-Config")
				if err != nil || resp.StatusCode() != 200 || string(resp.Body()) != "ok" || len(version) != 1 ||
					(string(version[0]) != "A" && string(version[0]) != "B") {
					failed.Add(1)
					mu.Lock()
					if len(failures) < 10 {
						failures = append(failures, fmt.Sprintf("%v %d %q X-Config=%q", err, resp.StatusCode(), resp.Body(), version))
					}
					mu.Unlock()
				}
			}
		}()
	}

	// Let all four keep-alive connections open before the first flip.
	waitFor(t, "traffic to warm up", func() bool { return sent.Load() > 2000 })
	var afterFirst int64
	dataDir := func() string {
		target, _ := os.Readlink(filepath.Join(cm.dir, "..data"))
		return filepath.Join(cm.dir, target)
	}
	for i := 1; i <= 100; i++ {
		next := a
		if i%2 == 1 {
			next = b
		}
		switch i % 3 {
		case 0:
			cm.update(t, next)
		case 1:
			writeInPlace(t, filepath.Join(dataDir(), "config.yaml"), next)
		case 2:
			writeByRename(t, filepath.Join(dataDir(), "config.yaml"), next)
		}
		g.waitApplied(t, next)
		if i == 1 {
			afterFirst = accepted.accepted.Load()
		}
	}
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during 100 reloads, e.g. %q", failed.Load(), sent.Load(), failures[0])
	}
	if n := accepted.accepted.Load(); n != afterFirst {
		t.Errorf("the shared route's backend accepted %d new connections after the first reload; its pool must carry over", n-afterFirst)
	}
	t.Logf("%d requests, 0 failed, over 100 reloads; backend connections: %d", sent.Load(), accepted.accepted.Load())
}

// TestReload_ThousandReloadsLeaveNothingBehind alternates two configs whose upstreams differ, so every
// reload builds one target and drains another, with traffic through each, and checks that goroutines
// and heap come back to where they were.
func TestReload_ThousandReloadsLeaveNothingBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("1000 reloads")
	}
	b1 := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	b2 := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	cfg := func(backend string, burst int) []byte {
		return []byte(strings.Replace(reloadConfig("x", backend, "/{rest:*}"), "targets:", "idle_conn_timeout: 50ms\n    targets:", 1) +
			fmt.Sprintf("defaults: {filters: [{rate_limit: {rate: 1000000, burst: %d, key: client_ip}}]}\n", burst))
	}
	path := writeConfigFile(t, string(cfg(b1, 1000)))
	data, _ := os.ReadFile(path)
	snap, err := Compile(path, data)
	if err != nil {
		t.Fatal(err)
	}
	gw, srv := serveSnapshot(t, snap)
	r := NewReloader(path, data, srv, Options{Log: zerolog.Nop()})
	reloadOnce := func(i int) {
		backend := b1
		if i%2 == 1 {
			backend = b2
		}
		writeInPlace(t, path, string(cfg(backend, 1000+i)))
		if a := r.Reload("test"); a.Result != Applied {
			t.Fatalf("reload %d: %+v", i, a)
		}
		if s := statusAt(t, gw, "/x"); s != 200 {
			t.Fatalf("request after reload %d: %d", i, s)
		}
	}
	measure := func() (int, uint64) {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapAlloc
	}
	for i := 1; i < 20; i++ { // warm up pools and caches (reload 0 would be the content already active)
		reloadOnce(i)
	}
	time.Sleep(300 * time.Millisecond) // drained targets' cleaners exit after idle_conn_timeout
	g0, h0 := measure()
	began := time.Now()
	for i := 20; i < 1020; i++ {
		reloadOnce(i)
	}
	t.Logf("1000 reloads with a request after each took %v", time.Since(began).Round(time.Millisecond))
	var g1 int
	var h1 uint64
	// The baseline heap is small enough that 10% is within the noise of pools and caches, hence a fixed
	// allowance on top; a leak of the retired snapshots would be tens of megabytes.
	const slack = 256 << 10
	start := time.Now()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if g1, h1 = measure(); (g1 <= g0+g0/10 && h1 <= h0+h0/10+slack) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("after 1000 reloads: goroutines %d -> %d, heap %d KiB -> %d KiB (settled after %v)", g0, g1, h0>>10, h1>>10, time.Since(start).Round(time.Millisecond))
	if g1 > g0+g0/10 {
		t.Errorf("goroutines grew from %d to %d", g0, g1)
	}
	if h1 > h0+h0/10+slack {
		t.Errorf("heap grew from %d KiB to %d KiB", h0>>10, h1>>10)
	}
}

// reloaderFor serves config v1 from a file and returns a Reloader for it (no watch).
func reloaderFor(t *testing.T, v1 string) (*Reloader, string, string) {
	t.Helper()
	path := writeConfigFile(t, v1)
	snap, err := Compile(path, []byte(v1))
	if err != nil {
		t.Fatal(err)
	}
	gw, srv := serveSnapshot(t, snap)
	return NewReloader(path, []byte(v1), srv, Options{Log: zerolog.New(testLogWriter{t})}), path, gw
}

func TestReload_AFileStillBeingWrittenIsNotApplied(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	v1 := reloadConfig("1", backend, "/a")
	r, path, _ := reloaderFor(t, v1)
	// The writer has put down a prefix that parses (a config with one route fewer) and finishes during
	// the settle time.
	full := reloadConfig("2", backend, "/a", "/b", "/c")
	partial := full[:strings.LastIndex(full, "  - name: r1")]
	if _, err := Compile(path, []byte(partial)); err != nil {
		t.Fatalf("the partial file should parse, to make the point: %v", err)
	}
	writeInPlace(t, path, partial)
	go func() {
		time.Sleep(50 * time.Millisecond)
		writeInPlace(t, path, full)
	}()
	if a := r.reload("file change", 150*time.Millisecond, false); a.Result != "" {
		t.Fatalf("a file that changed between reads was %s", a.Result)
	}
	if r.Status().Hash != contentHash([]byte(v1)) {
		t.Fatal("the partial file was applied")
	}
	if a := r.reload("file change", 50*time.Millisecond, false); a.Result != Applied || r.Status().Routes != 3 {
		t.Fatalf("the finished file: %+v, %d routes", a, r.Status().Routes)
	}
}

func TestReload_ASaveWhileTheWatchIsBeingSetUpIsApplied(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	r, path, gw := reloaderFor(t, reloadConfig("1", backend, "/a"))
	writeInPlace(t, path, reloadConfig("2", backend, "/a", "/b")) // before the watch exists: no event
	ctx, cancel := context.WithCancel(context.Background())
	done, err := r.Watch(ctx, true, 20*time.Millisecond, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-done }()
	if s := statusAt(t, gw, "/b"); s != 200 {
		t.Fatalf("/b after Watch returned: %d, want 200", s)
	}
}

func TestReload_ABusyNeighbourFileDoesNotPostponeReloads(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	r, path, _ := reloaderFor(t, reloadConfig("1", backend, "/a"))
	ctx, cancel := context.WithCancel(context.Background())
	done, err := r.Watch(ctx, true, 100*time.Millisecond, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-done }()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a log file next to the config, written every 20ms
		other := filepath.Join(filepath.Dir(path), "other.log")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				os.WriteFile(other, []byte(fmt.Sprint(i)), 0o644)
			}
		}
	}()
	v2 := reloadConfig("2", backend, "/a", "/b")
	writeInPlace(t, path, v2)
	waitFor(t, "the change to apply despite the busy directory", func() bool { return r.Status().Hash == contentHash([]byte(v2)) })
}

func TestReload_LimiterKeepsItsBucketWhenItsPoolGainsATarget(t *testing.T) {
	b1 := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	b2 := startBackend(t, func(ctx *fasthttp.RequestCtx) {})
	cfg := func(targets string) string {
		return fmt.Sprintf(`upstreams:
  backend:
    targets: [%s]
routes:
  - {name: r, match: {path: /x}, upstream: backend, filters: [{rate_limit: {rate: 1, per: 1h, burst: 1}}]}
`, targets)
	}
	v1 := cfg(fmt.Sprintf(`{url: "http://%s"}`, b1))
	r, path, gw := reloaderFor(t, v1)
	if s := statusAt(t, gw, "/x"); s != 200 {
		t.Fatalf("first: %d", s)
	}
	writeInPlace(t, path, cfg(fmt.Sprintf(`{url: "http://%s"}, {url: "http://%s"}`, b1, b2)))
	if a := r.Reload("test"); a.Result != Applied {
		t.Fatalf("%+v", a)
	}
	if s := statusAt(t, gw, "/x"); s != 429 {
		t.Fatalf("after scaling the pool out: %d, want 429 (a scale-out must not hand out a fresh burst)", s)
	}
}
