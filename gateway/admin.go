package gateway

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"strings"

	"net/http/pprof"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"github.com/valyala/fasthttp/pprofhandler"
)

// Admin serves the operators' endpoints on admin.listen:
//
//	GET  /healthz  200 while the process runs
//	GET  /readyz   200 once a config is loaded and the public listener accepts; 503 before and
//	               during shutdown
//	GET  /config   the active config's hash and load time, and the last reload attempt
//	POST /reload   re-read the config file now; 200 applied or unchanged, 422 rejected or unreadable
//	POST /cache/purge  drop cached responses: {"route": NAME} and/or {"prefix": KEY_PREFIX}
//	GET  /metrics  Prometheus metrics
//	GET  /debug/pprof/...  Go profiles
type Admin struct {
	srv      *Server
	reloader *Reloader
	metrics  fasthttp.RequestHandler
	m        *Metrics
	fast     *fasthttp.Server
}

// NewAdmin prepares the admin listener for srv, reloader and metrics.
func NewAdmin(srv *Server, reloader *Reloader, metrics *Metrics) *Admin {
	a := &Admin{srv: srv, reloader: reloader, metrics: metrics.Handler(), m: metrics}
	a.fast = &fasthttp.Server{
		Handler:               a.handle,
		NoDefaultServerHeader: true,
		ReadTimeout:           a.srv.started.Server.ReadTimeout,
		WriteTimeout:          a.srv.started.Server.WriteTimeout,
		IdleTimeout:           a.srv.started.Server.IdleTimeout,
		CloseOnShutdown:       true,
		Logger:                fasthttpLogger{srv.log},
	}
	return a
}

func (a *Admin) handle(ctx *fasthttp.RequestCtx) {
	path, get, post := string(ctx.Path()), ctx.IsGet() || ctx.IsHead(), ctx.IsPost()
	if !a.authorized(ctx, path) {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="weir admin"`)
		writeJSON(ctx, fasthttp.StatusUnauthorized, map[string]string{"error": "admin token required"})
		return
	}
	switch {
	case path == "/healthz" && get:
		writeJSON(ctx, fasthttp.StatusOK, map[string]string{"status": "ok"})
	case path == "/readyz" && get:
		if a.srv.ready.Load() {
			writeJSON(ctx, fasthttp.StatusOK, map[string]string{"status": "ready"})
		} else {
			writeJSON(ctx, fasthttp.StatusServiceUnavailable, map[string]string{"status": "not ready"})
		}
	case path == "/config" && get:
		writeJSON(ctx, fasthttp.StatusOK, a.reloader.Status())
	case path == "/metrics" && get:
		a.metrics(ctx)
	case path == "/debug/pprof/" && get:
		// fasthttp's pprofhandler refuses paths ending in /, the index among them.
		pprofIndex(ctx)
	case strings.HasPrefix(path, "/debug/pprof/") && get:
		// Profiles only here, never on the public listener.
		pprofhandler.PprofHandler(ctx)
	case path == "/cache/purge" && post:
		a.purge(ctx)
	case path == "/reload" && post:
		attempt := a.reloader.Reload("admin")
		status := fasthttp.StatusOK
		if attempt.Result == Rejected || attempt.Result == Unreadable {
			status = fasthttp.StatusUnprocessableEntity
		}
		writeJSON(ctx, status, attempt)
	case path == "/healthz" || path == "/readyz" || path == "/config" || path == "/reload" || path == "/metrics" ||
		path == "/cache/purge" || strings.HasPrefix(path, "/debug/pprof/"):
		allow := "GET, HEAD"
		if path == "/reload" || path == "/cache/purge" {
			allow = "POST"
		}
		ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
		writeJSON(ctx, fasthttp.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
	default:
		writeJSON(ctx, fasthttp.StatusNotFound, map[string]string{"error": "no such admin endpoint"})
	}
}

// authorized: with admin.token_file set, every endpoint but the probes (and /metrics with
// metrics_public) needs the token as a bearer credential. The serving snapshot's token counts, so a
// reload that changes the file changes it.
func (a *Admin) authorized(ctx *fasthttp.RequestCtx, path string) bool {
	snap := a.srv.Snapshot()
	if snap.adminToken == nil || path == "/healthz" || path == "/readyz" || (path == "/metrics" && snap.Admin.MetricsPublic) {
		return true
	}
	auth := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	const prefix = "Bearer "
	if len(auth) <= len(prefix) || !bytes.EqualFold(auth[:len(prefix)], []byte(prefix)) {
		return false
	}
	// Digests of equal length, compared in constant time: neither the token nor its length leaks.
	sum := sha256.Sum256(bytes.TrimSpace(auth[len(prefix):]))
	return subtle.ConstantTimeCompare(sum[:], snap.adminToken) == 1
}

var pprofIndex = fasthttpadaptor.NewFastHTTPHandlerFunc(pprof.Index)

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = fasthttp.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(body, '\n'))
}
