package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// dashboardQueries returns every PromQL expression of deploy/grafana/weir.json: panel targets and
// template variable queries.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../deploy/grafana/weir.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("deploy/grafana/weir.json: %v", err)
	}
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			out = append(out, v.Definition)
		}
	}
	return out
}

var metricName = regexp.MustCompile(`\bweir_[a-z_]+\b`)

// Every metric the dashboard queries is one a running weir exports: the test drives a gateway
// through each feature the dashboard shows (a split with a fallback, rate limit, breaker and mirror,
// a dead upstream, a streamed body, a cache, a WebSocket, a TLS handshake failure, a reload), then checks
// each name against its /metrics.
func TestDashboard_QueriesOnlyMetricsWeirExports(t *testing.T) {
	backend := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ws":
			c, err := websocket.Accept(w, r, nil)
			if err == nil {
				c.CloseNow()
			}
		case "/stream":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: 1\n\n")
		default:
			fmt.Fprint(w, "ok")
		}
	}))
	f := newTLSFiles(t)
	cert, key := f.issue(t, "api", "api.example.com")
	dir := t.TempDir()
	config := fmt.Sprintf(`server:
  listen: "127.0.0.1:0"
  tls: {listen: "127.0.0.1:0", certificates: [{cert_file: %q, key_file: %q}]}
admin: {listen: "127.0.0.1:0"}
log: {access: false}
upstreams:
  a: {targets: [{url: "http://%[3]s"}]}
  b: {targets: [{url: "http://%[3]s"}]}
  dead: {targets: [{url: "http://%[4]s"}], passive_health: {consecutive_failures: 1, ejection_time: 1m}, retries: {attempts: 2, on: [connect_failure]}}
routes:
  - name: main
    match: {path: /main}
    split: [{upstream: a, weight: 1}, {upstream: b, weight: 1}]
    filters:
      - fallback: {on: [rate_limited], body: "{}"}
      - rate_limit: {rate: 1, per: 1h}
      - circuit_breaker: {consecutive_failures: 1, open_timeout: 1h}
      - mirror: {upstream: b}
  - {name: dead, match: {path: /dead}, upstream: dead, filters: [{circuit_breaker: {consecutive_failures: 1, open_timeout: 1h}}]}
  - {name: cached, match: {path: /cached}, upstream: a, filters: [{cache: {}}]}
  - {name: other, match: {path: "/{rest:*}"}, upstream: a}
`, cert, key, backend, closedAddr(t))
	path := filepath.Join(dir, "config.yaml")
	must(t, os.WriteFile(path, []byte(config), 0o600))
	g := startRun(t, path)

	for range 2 {
		sendMethod(t, g.public, "GET", "/main") // then refused, answered by the fallback
	}
	sendMethod(t, g.public, "GET", "/dead") // errors, a retry, an ejection, the breaker opens
	sendMethod(t, g.public, "GET", "/stream")
	sendMethod(t, g.public, "GET", "/cached")
	ws, _, err := websocket.Dial(context.Background(), "ws://"+g.public+"/ws", nil)
	if err == nil {
		ws.CloseNow()
	}
	if c, err := net.Dial("tcp", g.https); err == nil {
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // plain HTTP to the TLS port
		_, _ = c.Read(make([]byte, 512))
		c.Close()
	}
	sendMethod(t, g.admin, "POST", "/reload")

	var text string
	exported := map[string]bool{}
	// The mirror's copy and the failed handshake are counted after the client has its answer (the
	// handshake's just after weir wrote its 400 to the plain-HTTP client: see tlsConn.handshakeFailed).
	waitFor(t, "the mirror's copy and the failed handshake to be counted", func() bool {
		text = g.scrape(t)
		return strings.Contains(text, "weir_mirror_requests_total{") &&
			strings.Contains(text, "weir_tls_handshake_failures_total{")
	})
	for _, line := range strings.Split(text, "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			exported[strings.Fields(name)[0]] = true
		}
	}
	var missing []string
	for _, q := range dashboardQueries(t) {
		for _, m := range metricName.FindAllString(q, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
			if !exported[m] && !exported[base] {
				missing = append(missing, m)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the dashboard queries metrics weir does not export: %v\nexported: %v", missing, exportedNames(exported))
	}
	if len(dashboardQueries(t)) < 20 {
		t.Errorf("the dashboard has only %d queries", len(dashboardQueries(t)))
	}
}

func exportedNames(m map[string]bool) []string {
	var out []string
	for k := range m {
		if strings.HasPrefix(k, "weir_") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
