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

	"github.com/weir-gateway/weir/filters"
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

// demoAPIKey is the key config.yaml's api_key filter accepts (it holds the key's SHA-256 only); the
// demo's curl line for such a route carries it.
const demoAPIKey = "weir-demo-key"

// apiKeyArgs returns the curl arguments that give route r the demo key, and the path suffix for a
// key in the query; both empty when r has no api_key filter accepting it.
func apiKeyArgs(r *gateway.Route) (header, query string) {
	for _, f := range r.Filters {
		if a, ok := f.(*filters.APIKey); ok {
			if from, ok := a.Accepts(demoAPIKey); ok {
				if name, isHeader := strings.CutPrefix(from, "header:"); isHeader {
					return "-H '" + name + ": " + demoAPIKey + "' ", ""
				}
				return "", "?" + strings.TrimPrefix(from, "query:") + "=" + demoAPIKey
			}
		}
	}
	return "", ""
}

// printDemoHelp prints a curl line per route, with sample values for path parameters, and one over
// HTTPS when weir serves it.
func printDemoHelp(w io.Writer, snap *gateway.Snapshot, l gateway.Listeners) {
	base := func(scheme string, a net.Addr) string {
		_, port, _ := net.SplitHostPort(a.String())
		return scheme + "://127.0.0.1:" + port
	}
	fmt.Fprintln(w, "\nweir demo is serving. Try:")
	routes := append([]*gateway.Route(nil), snap.Routes...)
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].Name < routes[j].Name })
	var first string
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
		if first == "" && method == "" {
			first = host + "%s" + path + "    # route " + r.Name
		}
		keyHeader, keyQuery := apiKeyArgs(r)
		if l.HTTP != nil {
			fmt.Fprintf(w, "  curl -i %s%s%s%s%s%s    # route %s\n", method, host, keyHeader, base("http", l.HTTP), path, keyQuery, r.Name)
		}
	}
	if l.HTTPS != nil && first != "" {
		how := "-k: the demo's certificate is self-signed"
		if snap.Server.TLS != nil {
			how = "-k unless a CA your curl trusts signed server.tls's certificate"
		}
		fmt.Fprintf(w, "  curl -k -i "+first+", over HTTPS (%s)\n", base("https", l.HTTPS), how)
	}
	if l.Admin != nil {
		fmt.Fprintf(w, "  curl -s http://%s/config    # admin: the active config and the last reload\n", l.Admin)
	}
	fmt.Fprintln(w, "Edit config.yaml and save: weir reloads it. Stop with Ctrl-C.")
}
