package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"sort"
	"strings"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/gateway"
)

// startDemoUpstreams starts an echo server on every loopback target of the config, so that
// `weir demo` has something real to proxy to. Each echo answers with a JSON description of the request
// it received, which shows what the gateway changed on the way.
func startDemoUpstreams(snap *gateway.Snapshot, log zerolog.Logger) (stop func(), err error) {
	var servers []*fasthttp.Server
	stop = func() {
		for _, s := range servers {
			_ = s.Shutdown()
		}
	}
	seen := map[string]bool{}
	for _, pool := range snap.Pools() {
		for _, t := range pool.Targets {
			host, _, _ := net.SplitHostPort(t.Addr)
			if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" || seen[t.Addr] {
				continue
			}
			seen[t.Addr] = true
			ln, err := net.Listen("tcp", t.Addr)
			if err != nil {
				stop()
				return nil, fmt.Errorf("starting the echo upstream for %s: %w", t.URL, err)
			}
			s := &fasthttp.Server{Handler: echoHandler(t.Addr), NoDefaultServerHeader: true}
			servers = append(servers, s)
			go func() { _ = s.Serve(ln) }()
			log.Info().Str("addr", t.Addr).Str("upstream", pool.Name).Msg("demo echo upstream started")
		}
	}
	return stop, nil
}

func echoHandler(name string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		headers := map[string]string{}
		for k, v := range ctx.Request.Header.All() {
			headers[string(k)] = string(v)
		}
		body, _ := json.MarshalIndent(map[string]any{
			"upstream": name,
			"method":   string(ctx.Method()),
			"uri":      string(ctx.RequestURI()),
			"host":     string(ctx.Host()),
			"headers":  headers,
			"body":     string(ctx.PostBody()),
		}, "", "  ")
		ctx.SetContentType("application/json")
		ctx.SetBody(append(body, '\n'))
	}
}

var paramPattern = regexp.MustCompile(`\{[^}]*\}`)

// printDemoHelp prints a curl line per route, with sample values for path parameters.
func printDemoHelp(w io.Writer, snap *gateway.Snapshot, addr, admin net.Addr) {
	_, port, _ := net.SplitHostPort(addr.String())
	fmt.Fprintf(w, "\nweir demo is serving on 127.0.0.1:%s. Try:\n", port)
	routes := append([]*gateway.Route(nil), snap.Routes...)
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].Name < routes[j].Name })
	for _, r := range routes {
		path := paramPattern.ReplaceAllStringFunc(r.Match.Path, func(p string) string {
			switch {
			case strings.HasSuffix(p, "?}"):
				return ""
			case strings.HasSuffix(p, ":*}"):
				return "some/rest"
			}
			return "42"
		})
		method := ""
		if len(r.Match.Methods) > 0 && r.Match.Methods[0] != fasthttp.MethodGet {
			method = "-X " + r.Match.Methods[0] + " "
		}
		host := ""
		if len(r.Match.Hosts) > 0 {
			host = "-H 'Host: " + strings.Replace(r.Match.Hosts[0], "*", "demo", 1) + "' "
		}
		fmt.Fprintf(w, "  curl -i %s%shttp://127.0.0.1:%s%s    # route %s\n", method, host, port, path, r.Name)
	}
	if admin != nil {
		fmt.Fprintf(w, "  curl -s http://%s/config    # admin: the active config and the last reload\n", admin)
	}
	fmt.Fprintln(w, "Edit config.yaml and save: weir reloads it. Stop with Ctrl-C.")
}
