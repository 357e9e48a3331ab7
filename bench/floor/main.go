// Command floor is the calibration peer of bench/run.sh: the smallest fasthttp reverse proxy that
// relays a request to one keep-alive upstream and its answer back, with nothing else (no routing,
// header hygiene, forwarding headers, metrics or error bodies). Its cost per request is the floor
// of any proxy built on fasthttp's server and HostClient, weir included, on the machine at hand;
// weir's figure minus this one is what weir's own code costs.
//
// With -pipeline it relays through fasthttp's PipelineClient instead: HTTP/1.1 pipelining over one
// upstream connection, which batches the requests that queue up under load into one write and
// their answers into few reads. It is issue 18's experiment: what pipelining to the upstream could
// save a fasthttp proxy at best, before weir pays for building it correctly.
//
// Usage: floor -listen 127.0.0.1:18085 -upstream 127.0.0.1:18080 [-pipeline]
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18085", "address to serve on")
	upstream := flag.String("upstream", "127.0.0.1:18080", "address of the one upstream")
	pipeline := flag.Bool("pipeline", false, "relay through fasthttp's PipelineClient")
	flag.Parse()

	var do func(*fasthttp.Request, *fasthttp.Response) error
	if *pipeline {
		do = (&fasthttp.PipelineClient{
			Addr:                     *upstream,
			MaxConns:                 1,
			MaxPendingRequests:       4096,
			NoDefaultUserAgentHeader: true,
		}).Do
	} else {
		do = (&fasthttp.HostClient{Addr: *upstream, NoDefaultUserAgentHeader: true}).Do
	}
	server := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if err := do(&ctx.Request, &ctx.Response); err != nil {
				ctx.Error("bad gateway", fasthttp.StatusBadGateway)
			}
		},
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
	}
	log.Fatal(server.ListenAndServe(*listen))
}
