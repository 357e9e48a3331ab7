//go:build !race

package gateway

import "testing"

// The race detector changes allocation counts, hence the build tag.

func TestAllocs_ProxiedGETAllocatesNothing(t *testing.T) {
	for _, accessLog := range []bool{false, true} {
		t.Run("access log "+map[bool]string{false: "off", true: "on"}[accessLog], func(t *testing.T) {
			r := newProxyRigLogged(t, "/static", accessLog)
			for i := 0; i < 100; i++ { // warm pools and connections
				r.do(t)
			}
			if n := testing.AllocsPerRun(1000, func() { r.do(t) }); n != 0 {
				t.Fatalf("a proxied GET allocates %.2f times (client, gateway and backend together); want 0", n)
			}
		})
	}
}
