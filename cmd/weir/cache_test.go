package main

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/redisconn/redistest"
)

// Two weir processes with a cache in the same Redis answer from each other's entries; with Redis
// gone they serve misses from the backend, and no request fails.
func TestCache_TwoReplicasShareARedisStore(t *testing.T) {
	redis := redistest.Start(t, "")
	var hits atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		hits.Add(1)
		ctx.Response.Header.Set("Cache-Control", "max-age=60")
		ctx.WriteString("catalogue")
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	rs := startReplicas(t, 2, `server: {listen: "PUBLIC"}
admin: {listen: "ADMIN"}
log: {access: false}
redis: {addrs: ["`+redis.Addr+`"], timeout: 100ms, retry_interval: 100ms}
upstreams:
  u: {targets: [{url: "http://`+ln.Addr().String()+`"}]}
routes:
  - {name: c, match: {path: "/{rest:*}"}, upstream: u, filters: [{cache: {store: redis, key: [path, query]}}]}
`)
	for _, r := range rs {
		for deadline := time.Now().Add(5 * time.Second); metric(t, r.admin, "weir_redis_up") != 1; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("redis did not come up")
			}
		}
	}
	fetch := func(r replica, path string) (int, string, string) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://" + r.public + path)
		if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode(), string(resp.Header.Peek("X-Cache")), string(resp.Body())
	}
	for i, step := range []struct {
		r      replica
		xcache string
	}{{rs[0], "MISS"}, {rs[1], "HIT"}, {rs[0], "HIT"}, {rs[1], "HIT"}} {
		if code, xc, body := fetch(step.r, "/items?page=1"); code != 200 || xc != step.xcache || body != "catalogue" {
			t.Errorf("request %d: %d X-Cache %q %q; want 200 %s", i, code, xc, body, step.xcache)
		}
	}
	if hits.Load() != 1 {
		t.Errorf("the backend saw %d requests from two replicas; want 1", hits.Load())
	}
	redis.Stop()
	for i := range 6 {
		if code, xc, _ := fetch(rs[i%2], "/items?page=1"); code != 200 || xc != "MISS" {
			t.Errorf("redis gone, request %d: %d X-Cache %q; want a 200 MISS", i, code, xc)
		}
	}
}
