package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"

	"github.com/valyala/fasthttp"
	"gopkg.in/yaml.v3"

	"github.com/weir-gateway/weir/filters"
	"github.com/weir-gateway/weir/filters/basicauth"
	"github.com/weir-gateway/weir/filters/cache"
	"github.com/weir-gateway/weir/filters/compress"
	"github.com/weir-gateway/weir/filters/jwt"
	"github.com/weir-gateway/weir/filters/mirror"
)

// filterKind builds one kind of filter from its settings node (build reports problems itself and
// returns nil when the filter cannot be built); settings is the type the node decodes into, for the
// config's JSON Schema.
type filterKind struct {
	build    func(c *compiler, settings *yaml.Node, path string, env filters.Env) filters.Filter
	settings reflect.Type
}

// filterKinds maps the names used in config files to their constructors. Each constructor's settings
// struct is decoded strictly from the filter's mapping, so its yaml and default tags are the config
// contract.
var filterKinds = map[string]filterKind{
	"rate_limit":      kindOf(filters.NewRateLimit, false),
	"circuit_breaker": kindOf(filters.NewCircuitBreaker, true),
	"rewrite":         kindOf(filters.NewRewrite, false),
	"json":            kindOf(filters.NewJSON, false),
	"api_key":         kindOf(filters.NewAPIKey, false),
	"basic_auth":      kindOf(basicauth.New, false),
	"cors":            kindOf(filters.NewCORS, false),
	"access":          kindOf(filters.NewAccess, false),
	"jwt":             kindOf(jwt.New, false),
	"fallback":        kindOf(filters.NewFallback, false),
	"mirror":          kindOf(mirror.New, false),
	"compress":        kindOf(compress.New, false),
	"cache":           kindOf(cache.New, false),
}

// authenticating are the filters that identify the caller. A preflight request carries no
// credentials, so cors must come before them (see checkFilterOrder).
var authenticating = map[string]bool{"api_key": true, "basic_auth": true, "jwt": true}

// kindOf adapts a constructor taking a settings struct C: the settings node is decoded strictly into C
// (with C's `default` tags), then the constructor validates; each ConfigError it returns is placed on
// the line of the setting it names.
//
// A filter whose route, kind and decoded settings are the same as in the previous snapshot is taken over
// from it, state and all, instead of being built again.
//
// judgesUpstream marks filters whose state is about the route's upstream targets (a breaker): their
// identity includes the targets' addresses, so a reload that moves the route elsewhere starts them
// fresh. Other filters keep their state through upstream changes.
func kindOf[C any, F filters.Filter](build func(C, filters.Env) (F, error), judgesUpstream bool) filterKind {
	return filterKind{settings: reflect.TypeFor[C](), build: func(c *compiler, settings *yaml.Node, path string, env filters.Env) filters.Filter {
		var cfg C
		before := len(c.sink.list)
		d := newNodeDecoder(c.sink)
		if settings.Kind == 0 || isNull(settings) {
			settings = &yaml.Node{Kind: yaml.MappingNode} // "- json:" with no settings: all defaults
		}
		d.value(settings, path, reflect.ValueOf(&cfg).Elem())
		if len(c.sink.list) > before {
			return nil
		}
		// The settings as decoded (defaults applied, map keys sorted) are the filter's fingerprint, with
		// the route's pattern (a rewrite template reads its parameters) and the content of the files
		// the settings name (a keys file edited in place changes nothing else).
		var key string
		var f filters.Filter
		files, readable := fileDigests(cfg, env)
		if fingerprint, err := json.Marshal(cfg); err == nil && readable {
			targets := ""
			if judgesUpstream {
				targets = c.routeTargets
			}
			// A global limit or a redis cache is valid only with a redis block: one that lost it must be
			// built (and refused).
			shared := ""
			if g, ok := any(cfg).(interface{ Global() bool }); ok && g.Global() && env.SharedLimits == nil {
				shared = "no-redis"
			}
			key, f = c.reuseFilter(fmt.Sprintf("%s|%s|%s|%T|%s|%s|%s%s", env.Route, env.Pattern.Text, targets, cfg, fingerprint, files,
				c.upstreamSettings(cfg), shared))
		}
		if f == nil {
			built, err := build(cfg, env)
			if err != nil {
				for _, ce := range filters.ConfigErrors(err) {
					c.problem(joinPath(path, ce.Field), "%s", ce.Msg)
				}
				return nil
			}
			f = built
		}
		if key != "" {
			c.snap.filters[key] = f
		}
		return f
	}}
}

// upstreamSettings is the config of the upstreams cfg names (filters.UpstreamSettings), for the
// filter's identity: a mirror holds its pool, so a reload that changes the pool rebuilds it.
func (c *compiler) upstreamSettings(cfg any) string {
	us, ok := cfg.(filters.UpstreamSettings)
	if !ok {
		return ""
	}
	var b []byte
	for _, name := range us.UpstreamNames() {
		j, _ := json.Marshal(c.cfg.Upstreams[name])
		b = append(append(b, name...), j...)
	}
	return string(b)
}

// fileDigests digests the files cfg names (filters.FileSettings); readable is false when one cannot be
// read, and the constructor then reports it.
func fileDigests(cfg any, env filters.Env) (digests string, readable bool) {
	fs, ok := cfg.(filters.FileSettings)
	if !ok {
		return "", true
	}
	for _, name := range fs.SourceFiles() {
		if name == "" {
			continue
		}
		data, err := os.ReadFile(env.Resolve(name))
		if err != nil {
			return "", false
		}
		sum := sha256.Sum256(data)
		digests += hex.EncodeToString(sum[:]) + " "
	}
	return digests, true
}

// checkFilterOrder reports a cors filter placed after an authenticating one (the preflight would be
// refused for lack of credentials it never carries), and a cors filter on a route whose methods leave
// out OPTIONS (the preflight would get 405 before reaching it). paths and names are the route's
// filters in chain order.
func (c *compiler) checkFilterOrder(paths, names []string, methods []string) {
	auth := ""
	for i, name := range names {
		switch {
		case authenticating[name] && auth == "":
			auth = name
		case name == "cors" && auth != "":
			c.problem(paths[i], "cors must come before %s in the route's filters: browsers send preflight requests without credentials", auth)
		case name == "cors" && len(methods) > 0 && !slices.Contains(methods, fasthttp.MethodOptions):
			c.problem(paths[i], "the route's match.methods leave out OPTIONS, so preflight requests would get 405 before cors answers them; add OPTIONS")
		}
	}
}

func filterKindNames() []string {
	names := make([]string, 0, len(filterKinds))
	for n := range filterKinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// buildFilters builds a list of filter specs for one route. ok is false if any could not be built.
// paths and names, in the specs' order, are each spec's config path and filter name.
func (c *compiler) buildFilters(path string, specs []FilterSpec, env filters.Env) (fs []filters.Filter, paths, names []string, ok bool) {
	ok = true
	for i := range specs {
		n := &specs[i]
		fpath := fmt.Sprintf("%s[%d]", path, i)
		if n.Kind == yaml.MappingNode && len(n.Content) == 2 {
			paths, names = append(paths, joinPath(fpath, n.Content[0].Value)), append(names, n.Content[0].Value)
		}
		if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
			c.problem(fpath, "a filter is a mapping with one key naming it, like - rate_limit: {rate: 100, per: 1s}")
			ok = false
			continue
		}
		name := n.Content[0].Value
		kind, known := filterKinds[name]
		if !known {
			c.problem(fpath, "unknown filter %q%s", name, suggest(name, filterKindNames(), "filters"))
			ok = false
			continue
		}
		f := kind.build(c, n.Content[1], joinPath(fpath, name), env)
		if f == nil {
			ok = false
			continue
		}
		fs = append(fs, f)
	}
	return fs, paths, names, ok
}
