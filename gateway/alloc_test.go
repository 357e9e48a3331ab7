//go:build !race

package gateway

import "testing"

// The race detector changes allocation counts, hence the build tag.

func TestAllocs_ProxiedGETAllocatesNothing(t *testing.T) {
	for _, tc := range []struct {
		desc      string
		accessLog bool
		chain     string
	}{
		{"no filters, access log off", false, ""},
		{"no filters, access log on", true, ""},
		{"rate_limit + circuit_breaker, access log on", true, benchChain},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := newProxyRigWith(t, "/static", tc.accessLog, tc.chain)
			for i := 0; i < 100; i++ { // warm pools and connections
				r.do(t)
			}
			if n := testing.AllocsPerRun(1000, func() { r.do(t) }); n != 0 {
				t.Fatalf("a proxied GET allocates %.2f times (client, gateway and backend together); want 0", n)
			}
		})
	}
}
