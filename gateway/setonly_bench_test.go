package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkSetOnly is the gateway's stamping of X-Request-Id on an upstream's typical response.
func BenchmarkSetOnly(b *testing.B) {
	var h fasthttp.ResponseHeader
	id := []byte("0123456789abcdef0123456789abcdef")
	for b.Loop() {
		h.Reset()
		h.SetContentType("application/json")
		h.Set("Cache-Control", "no-cache")
		h.Set("Vary", "Accept-Encoding")
		setOnly(&h, nameRequestID, id)
	}
}
