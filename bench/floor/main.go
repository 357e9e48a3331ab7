// Command floor is the calibration peer of bench/run.sh: the smallest fasthttp reverse proxy that
// relays a request to one keep-alive upstream and its answer back, with nothing else (no routing,
// header hygiene, forwarding headers, metrics or error bodies). Its cost per request is the floor
// of any proxy built on fasthttp's server and HostClient, weir included, on the machine at hand;
// weir's figure minus this one is what weir's own code costs.
//
// Usage: floor -listen 127.0.0.1:18085 -upstream 127.0.0.1:18080
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18085", "address to serve on")
	upstream := flag.String("upstream", "127.0.0.1:18080", "address of the one upstream")
	flag.Parse()

	client := &fasthttp.HostClient{Addr: *upstream, NoDefaultUserAgentHeader: true}
	server := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if err := client.Do(&ctx.Request, &ctx.Response); err != nil {
				ctx.Error("bad gateway", fasthttp.StatusBadGateway)
			}
		},
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
	}
	log.Fatal(server.ListenAndServe(*listen))
}
