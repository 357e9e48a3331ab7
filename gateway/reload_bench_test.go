package gateway

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// bigConfig has routes routes spread over upstreams pools of two targets each, with a mix of static,
// parameter and catch-all patterns, host-bound and not, and filters on every route.
func bigConfig(routes, upstreams int) []byte {
	var b strings.Builder
	b.WriteString("upstreams:\n")
	for u := 0; u < upstreams; u++ {
		fmt.Fprintf(&b, "  u%d:\n    balancer: weighted\n    targets:\n      - {url: \"http://10.0.%d.1:8080\", weight: 2}\n      - {url: \"http://10.0.%d.2:8080\"}\n", u, u, u)
	}
	b.WriteString("defaults:\n  filters:\n    - circuit_breaker: {consecutive_failures: 5}\nroutes:\n")
	for r := 0; r < routes; r++ {
		fmt.Fprintf(&b, "  - name: r%d\n    upstream: u%d\n    match:\n", r, r%upstreams)
		switch r % 4 {
		case 0:
			fmt.Fprintf(&b, "      path: /api/v%d/items\n      methods: [GET, POST]\n", r)
		case 1:
			fmt.Fprintf(&b, "      path: /api/v%d/items/{id}\n", r)
		case 2:
			fmt.Fprintf(&b, "      path: /files/%d/{rest:*}\n      hosts: [\"h%d.example.com\"]\n", r, r%10)
		case 3:
			fmt.Fprintf(&b, "      path: /api/v%d/users/{id:[0-9]+}\n      hosts: [\"*.example.com\"]\n", r)
		}
		fmt.Fprintf(&b, "    filters:\n      - rate_limit: {rate: %d, key: client_ip}\n      - rewrite: {request_headers: {set: {X-Route: r%d}}}\n", 100+r, r)
	}
	return []byte(b.String())
}

// BenchmarkReload is one whole reload of a 1,000-route, 100-upstream config: decode, validate,
// compile against the serving snapshot (taking its targets and filters over), swap, retire.
func BenchmarkReload(b *testing.B) {
	data := bigConfig(1000, 100)
	snap, err := Compile("big.yaml", data)
	if err != nil {
		b.Fatal(err)
	}
	srv := NewServer(snap, zerolog.Nop(), nil)
	b.ReportAllocs()
	for b.Loop() {
		prev := srv.Snapshot()
		next, err := CompileWith("big.yaml", data, Options{Log: zerolog.Nop(), Previous: prev})
		if err != nil {
			b.Fatal(err)
		}
		srv.current.Store(next)
		prev.retire(next, 0)
	}
}

// BenchmarkSnapshotLoad is what the request path pays for reloadability: one atomic load.
func BenchmarkSnapshotLoad(b *testing.B) {
	snap, err := Compile("big.yaml", bigConfig(10, 2))
	if err != nil {
		b.Fatal(err)
	}
	srv := NewServer(snap, zerolog.Nop(), nil)
	b.ReportAllocs()
	var s *Snapshot
	for b.Loop() {
		s = srv.current.Load()
	}
	_ = s
}
