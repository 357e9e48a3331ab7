package upstream

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkStripHopResponse strips a typical upstream response head: nothing to drop, and the common
// case of a server that says Connection: keep-alive (nginx does, to HTTP/1.1 clients).
func BenchmarkStripHopResponse(b *testing.B) {
	const head = "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 21 Nov 2026 08:00:00 GMT\r\n" +
		"Content-Type: application/json\r\nContent-Length: 0\r\nCache-Control: private, max-age=60\r\n" +
		"ETag: \"5f3a\"\r\nVary: Accept-Encoding\r\nSet-Cookie: a=1; Path=/\r\nX-Trace: abc\r\n"
	for _, bc := range []struct{ name, extra string }{
		{"nothing-to-drop", ""},
		{"connection-keep-alive", "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var tmpl, resp fasthttp.ResponseHeader
			if err := tmpl.Read(bufio.NewReader(strings.NewReader(head + bc.extra + "\r\n"))); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				tmpl.CopyTo(&resp)
				StripHopResponse(&resp)
			}
		})
	}
}
