//go:build !race

package gateway

import (
	"runtime"
	"testing"
)

// The race detector changes allocation counts, hence the build tag.

// mallocsPer is the average number of heap allocations per call of f, over runs calls, across the
// whole process (client, gateway and backend goroutines alike). Unlike testing.AllocsPerRun it does
// not round down, so 999 allocations in 1000 runs read as 0.999, not 0; the threshold callers use
// leaves room only for the runtime's own rare background allocations.
func mallocsPer(runs int, f func()) float64 {
	var before, after runtime.MemStats
	// No runtime.GC() here: a collection empties every sync.Pool, and refilling them would be counted.
	runtime.ReadMemStats(&before)
	for i := 0; i < runs; i++ {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(runs)
}

func TestAllocs_ProxiedGETAllocatesNothing(t *testing.T) {
	for _, tc := range []struct {
		desc      string
		accessLog bool
		chain     string
		https     bool
		want      float64 // allocations per request, client and backend included
		path      string  // default /static
	}{
		{"no filters, access log off", false, "", false, 0, ""},
		{"no filters, access log on", true, "", false, 0, ""},
		{"rate_limit + circuit_breaker + header rewrite, access log on", true, benchChain, false, 0, ""},
		{"api_key, access log on", true, apiKeyChain, false, 0, ""},
		{"basic_auth, a remembered check, access log on", true, basicAuthChain, false, 0, ""},
		{"cors (an allowed origin) + access, access log on", true, corsChain, false, 0, ""},
		{"jwt, a repeated token, access log on", true, jwtChain, false, 0, ""},
		{"tracing on, an unsampled request, access log on", true, tracedUnsampled, false, 0, ""},
		{"a route with a path parameter (a 42-byte value), access log on", true, "", false, 0, "/users/" + longParam},
		{"a cache hit, access log on", true, cacheChain, false, 0, ""},
		// The canary route's header, query and cookie conditions all hold (no other route has its
		// path, so a condition that failed would make the request a 404 and the test fail).
		{"a route with header, query and cookie conditions, access log on", true, "", false, 0, "/canary?v=2"},
		// crypto/tls allocates once per record it reads (readFromUntil's atLeastReader escapes): once
		// in weir's server connection and once in the test's client. weir itself adds none.
		{"over HTTPS with HSTS, access log on", true, "", true, 2, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			rig := newProxyRigWith
			if tc.https {
				rig = newHTTPSProxyRig
			}
			path := tc.path
			if path == "" {
				path = "/static"
			}
			r := rig(t, path, tc.accessLog, tc.chain)
			for i := 0; i < 2000; i++ { // warm pools, buffers and connections
				r.do(t)
			}
			if n := mallocsPer(2000, func() { r.do(t) }); n >= tc.want+0.01 {
				t.Fatalf("a proxied GET allocates %.3f times (client, gateway and backend together); want %g", n, tc.want)
			}
		})
	}
}
