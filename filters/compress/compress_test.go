package compress

import (
	"fmt"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
)

func TestChoose_AcceptEncodingWithQValues(t *testing.T) {
	f, err := New(Config{GzipLevel: 5, BrotliLevel: 4, ZstdLevel: 1}, filters.Env{})
	if err != nil {
		t.Fatal(err)
	}
	for accept, want := range map[string]string{
		"":                              "",
		"gzip":                          "gzip",
		"gzip, deflate, br":             "br",
		"gzip, deflate, br, zstd":       "zstd",
		"gzip;q=0.5, br;q=0.8":          "br",
		"br;q=0, gzip":                  "gzip",
		"BR;Q=1.0, GZIP;q=1":            "br",
		"identity;q=0":                  "",
		"identity":                      "",
		"*":                             "zstd",
		"*;q=0.1, gzip;q=0.5":           "gzip",
		"*, zstd;q=0, br;q=0":           "gzip",
		"gzip;q=0.000":                  "",
		"gzip;q=2":                      "",
		"x-gzip":                        "gzip",
		"deflate":                       "",
		"gzip;level=9;q=0.3, br;q=0.29": "gzip",
	} {
		got := ""
		if c := f.choose([]byte(accept)); c != nil {
			got = c.name
		}
		if got != want {
			t.Errorf("Accept-Encoding %q chose %q, want %q", accept, got, want)
		}
	}
}

func TestCompressible(t *testing.T) {
	f, err := New(Config{GzipLevel: 5, BrotliLevel: 4, ZstdLevel: 1}, filters.Env{})
	if err != nil {
		t.Fatal(err)
	}
	s := &step{Filter: f}
	for _, tc := range []struct {
		ctype, encoding string
		status          int
		want            bool
	}{
		{"application/json", "", 200, true},
		{"Application/JSON; charset=utf-8", "", 200, true},
		{"application/problem+json", "", 500, true},
		{"text/html", "", 200, true},
		{"text/event-stream", "", 200, false},
		{"image/png", "", 200, false},
		{"application/json", "gzip", 200, false},
		{"application/json", "", 206, false},
		{"application/json", "", 304, false},
		{"", "", 200, false},
	} {
		var h fasthttp.ResponseHeader
		h.SetStatusCode(tc.status)
		h.SetContentType(tc.ctype)
		if tc.encoding != "" {
			h.SetContentEncoding(tc.encoding)
		}
		if got := s.compressible(&h); got != tc.want {
			t.Errorf("%q %q %d: compressible %v, want %v", tc.ctype, tc.encoding, tc.status, got, tc.want)
		}
	}
}

type jsonBody struct{ body []byte }

func (j jsonBody) Serve(x *filters.Exchange) {
	x.Ctx.Response.Header.SetContentType("application/json")
	x.Ctx.Response.SetBody(j.body)
}

// benchJSON is an API-like JSON document of about n bytes.
func benchJSON(n int) []byte {
	var b []byte
	b = append(b, `{"items":[`...)
	for i := 0; len(b) < n-40; i++ {
		b = fmt.Appendf(b, `{"id":%d,"sku":"SKU-%06d","name":"Product %d","price":%d.99,"stock":%d},`, i, i*7, i, i%500, i%37)
	}
	return append(b, `{}]}`...)
}

// BenchmarkCompress: CPU per response and the size kept (ratio), by encoding and level.
func BenchmarkCompress(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		body := benchJSON(size)
		for _, tc := range []struct {
			name, accept string
			cfg          Config
		}{
			{"gzip-1", "gzip", Config{GzipLevel: 1, BrotliLevel: 4, ZstdLevel: 1}},
			{"gzip-5", "gzip", Config{GzipLevel: 5, BrotliLevel: 4, ZstdLevel: 1}},
			{"br-4", "br", Config{GzipLevel: 5, BrotliLevel: 4, ZstdLevel: 1}},
			{"br-1", "br", Config{GzipLevel: 5, BrotliLevel: 1, ZstdLevel: 1}},
			{"zstd-1", "zstd", Config{GzipLevel: 5, BrotliLevel: 4, ZstdLevel: 1}},
		} {
			b.Run(fmt.Sprintf("%dB/%s", len(body), tc.name), func(b *testing.B) {
				f, err := New(tc.cfg, filters.Env{})
				if err != nil {
					b.Fatal(err)
				}
				h := f.Wrap(jsonBody{body})
				var ctx fasthttp.RequestCtx
				var out int
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				for i := 0; i < b.N; i++ {
					ctx.Request.Header.Set("Accept-Encoding", tc.accept)
					x := filters.AcquireExchange(&ctx)
					h.Serve(x)
					out = len(ctx.Response.Body())
					filters.ReleaseExchange(x)
					ctx.Response.Reset()
				}
				b.ReportMetric(float64(out)/float64(len(body)), "ratio")
			})
		}
	}
}
