package gateway

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
)

// ValueMatch is one condition of a route's match block on a header, query parameter or cookie:
// exactly one of Value (equal), Regex (matches somewhere in the value; anchor it with ^ and $) or
// Present (a header or cookie with a non-empty value, a query parameter at all).
type ValueMatch struct {
	Name    string `yaml:"name"`
	Value   string `yaml:"value"`
	Regex   string `yaml:"regex"`
	Present bool   `yaml:"present"`
}

// condition is a compiled ValueMatch.
type condition struct {
	kind  byte // 'h' header, 'q' query parameter, 'c' cookie
	name  string
	value []byte
	re    *regexp.Regexp // nil: value, or presence when present
	any   bool           // present: any value, even empty
}

func (c *condition) holds(ctx *fasthttp.RequestCtx) bool {
	var v []byte
	switch c.kind {
	case 'h':
		v = ctx.Request.Header.Peek(c.name)
	case 'q':
		if c.any {
			return ctx.QueryArgs().Has(c.name)
		}
		v = ctx.QueryArgs().Peek(c.name)
	case 'c':
		v = ctx.Request.Header.Cookie(c.name)
	}
	switch {
	case c.any:
		return len(v) > 0
	case c.re != nil:
		return c.re.Match(v)
	}
	return bytes.Equal(v, c.value)
}

// key is the condition in a canonical form, to find two routes with the same conditions.
func (c *condition) key() string {
	switch {
	case c.any:
		return fmt.Sprintf("%c %s present", c.kind, c.name)
	case c.re != nil:
		return fmt.Sprintf("%c %s ~ %s", c.kind, c.name, c.re.String())
	}
	return fmt.Sprintf("%c %s = %q", c.kind, c.name, c.value)
}

// conditions compiles a route's header, query and cookie conditions; problems are reported at path.
func (c *compiler) conditions(path string, m MatchConfig) []condition {
	var out []condition
	add := func(kind byte, field string, list []ValueMatch) {
		for i, vm := range list {
			p := fmt.Sprintf("%s.%s[%d]", path, field, i)
			set := 0
			if vm.Value != "" {
				set++
			}
			if vm.Regex != "" {
				set++
			}
			if vm.Present {
				set++
			}
			switch {
			case vm.Name == "" || (kind == 'h' && !filters.IsToken(vm.Name)):
				c.problem(p+".name", "a %s condition needs a name (a valid %s name)", strings.TrimSuffix(field, "s"), strings.TrimSuffix(field, "s"))
				continue
			case set != 1:
				c.problem(p, "give exactly one of value, regex or present: true")
				continue
			}
			cond := condition{kind: kind, name: vm.Name, value: []byte(vm.Value), any: vm.Present}
			if vm.Regex != "" {
				re, err := regexp.Compile(vm.Regex)
				if err != nil {
					c.problem(p+".regex", "invalid regular expression: %v", err)
					continue
				}
				cond.re = re
			}
			out = append(out, cond)
		}
	}
	add('h', "headers", m.Headers)
	add('q', "query", m.Query)
	add('c', "cookies", m.Cookies)
	return out
}

// conditionsKey is the canonical form of a route's conditions.
func conditionsKey(cs []condition) string {
	keys := make([]string, len(cs))
	for i := range cs {
		keys[i] = cs[i].key()
	}
	sort.Strings(keys)
	return strings.Join(keys, "\n")
}

// routeGroup is what the router holds for one path pattern and method (or any method) in one host
// table: the routes sharing them, those with more conditions first, then in file order. The first
// whose conditions hold serves the request.
type routeGroup struct {
	routes []*Route
	wild   bool // registered for any method
}

// registered is the handler the router holds for every pattern: the router only checks patterns
// against each other, routeTable.find looks requests up.
func registered(*fasthttp.RequestCtx) {}

// pick returns the first route whose conditions hold, or nil.
func (g *routeGroup) pick(ctx *fasthttp.RequestCtx) *Route {
	for _, r := range g.routes {
		if r.conditionsHold(ctx) {
			return r
		}
	}
	return nil
}

// add places r by its number of conditions; a route with the same conditions already there is
// returned instead (a conflict).
func (g *routeGroup) add(r *Route) *Route {
	key := conditionsKey(r.conds)
	for _, o := range g.routes {
		if conditionsKey(o.conds) == key {
			return o
		}
	}
	i := sort.Search(len(g.routes), func(i int) bool { return len(g.routes[i].conds) < len(r.conds) })
	g.routes = append(g.routes, nil)
	copy(g.routes[i+1:], g.routes[i:])
	g.routes[i] = r
	return nil
}

func (r *Route) conditionsHold(ctx *fasthttp.RequestCtx) bool {
	for i := range r.conds {
		if !r.conds[i].holds(ctx) {
			return false
		}
	}
	return true
}
