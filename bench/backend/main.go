// Command backend is the upstream of weir's load benchmarks (bench/run.sh): a fasthttp server with
// fixed bodies, so every proxy under test relays exactly the same bytes.
//
//	GET  /13       13-byte text body "Hello, World!"
//	GET  /1k.json  1024-byte JSON object
//	GET  /64k      65536-byte body
//	POST /echo     the request body, echoed
//	GET  /api-1k.json, /api-64k.json  API-like JSON (a list of products) of about 1 KB and 64 KiB,
//	               for the compression benchmark (bench/compress.sh): compressible as real answers
//	               are, unlike the padded /1k.json
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
	api1k    = apiJSON(1 << 10)
	api64k   = apiJSON(64 << 10)
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

// apiJSON is a list of products of a little over n bytes, each with an id, SKU, name, price and stock.
func apiJSON(n int) []byte {
	b := []byte(`{"items":[`)
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, `{"id":%d,"sku":"SKU-%06d","name":"Product %d","price":%d.99,"stock":%d},`, i, i*7919%1000000, i, i%500, i%37)
	}
	return append(b, `{}]}`...)
}

func handle(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/13":
		ctx.Response.Header.SetContentTypeBytes(typeText)
		ctx.SetBody(body13)
	case "/1k.json":
		ctx.Response.Header.SetContentTypeBytes(typeJSON)
		ctx.SetBody(body1k)
	case "/api-1k.json":
		ctx.Response.Header.SetContentTypeBytes(typeJSON)
		ctx.SetBody(api1k)
	case "/api-64k.json":
		ctx.Response.Header.SetContentTypeBytes(typeJSON)
		ctx.SetBody(api64k)
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
