package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

func TestProxy_GETReachesBackendAndReturnsItsAnswer(t *testing.T) {
	backend := startBackend(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.WriteString("hello from " + string(ctx.Path()))
	})
	gw, _ := startGateway(t, oneRouteConfig("", backend))
	resp := get(t, gw, "/a/b?x=1")
	if resp.StatusCode() != 200 || string(resp.Body()) != "hello from /a/b" {
		t.Fatalf("got %d %q", resp.StatusCode(), resp.Body())
	}
}
