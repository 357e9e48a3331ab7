// Command backend is the upstream of weir's load benchmarks (bench/run.sh): a fasthttp server with
// fixed bodies, so every proxy under test relays exactly the same bytes.
//
//	GET  /13       13-byte text body "Hello, World!"
//	GET  /1k.json  1024-byte JSON object
//	GET  /64k      65536-byte body
//	POST /echo     the request body, echoed
//
// Usage: backend -listen 127.0.0.1:18080
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/valyala/fasthttp"
)

var (
	body13   = []byte("Hello, World!")
	body1k   = jsonOfSize(1024)
	body64k  = bytes.Repeat([]byte("x"), 64*1024)
	typeText = []byte("text/plain")
	typeJSON = []byte("application/json")
	typeBin  = []byte("application/octet-stream")
)

// jsonOfSize returns a JSON object of exactly n bytes: a few typical fields and a padding string.
func jsonOfSize(n int) []byte {
	head := `{"id":42,"name":"Ada Lovelace","email":"ada@example.com","active":true,"roles":["admin","dev"],"pad":"`
	tail := `"}`
	pad := n - len(head) - len(tail)
	if pad < 0 {
		panic("jsonOfSize: n too small")
	}
	return []byte(head + string(bytes.Repeat([]byte("a"), pad)) + tail)
}

func handle(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/13":
		ctx.Response.Header.SetContentTypeBytes(typeText)
		ctx.SetBody(body13)
	case "/1k.json":
		ctx.Response.Header.SetContentTypeBytes(typeJSON)
		ctx.SetBody(body1k)
	case "/64k":
		ctx.Response.Header.SetContentTypeBytes(typeBin)
		ctx.SetBody(body64k)
	case "/echo":
		if !ctx.IsPost() {
			ctx.Error("method not allowed", fasthttp.StatusMethodNotAllowed)
			return
		}
		ctx.Response.Header.SetContentTypeBytes(typeBin)
		ctx.SetBody(ctx.PostBody())
	default:
		ctx.Error("not found", fasthttp.StatusNotFound)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18080", "TCP address to serve on")
	flag.Parse()
	srv := &fasthttp.Server{
		Handler:               handle,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
	}
	fmt.Fprintf(os.Stderr, "backend listening on %s\n", *listen)
	log.Fatal(srv.ListenAndServe(*listen))
}
