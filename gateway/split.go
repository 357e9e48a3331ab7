package gateway

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/weir-gateway/weir/filters"
	"github.com/weir-gateway/weir/upstream"
)

// SplitEntry is one pool of a route's weighted split (a canary).
type SplitEntry struct {
	Upstream string `yaml:"upstream"`
	Weight   int    `yaml:"weight"`
}

// splitter picks a pool of a route's split for each request, by weight. Without a key, requests are
// spread by a counter scrambled with a multiplicative hash (so consecutive requests do not go to
// the same pool in runs). With a key, the key's FNV-1a hash, as a fraction of 1, falls into one
// pool's share of the weights laid end to end in config order: a key keeps its pool while the
// weights are unchanged, and moving weight between two neighbouring pools moves only the keys in the
// share that changed hands. The hash is fixed, so every replica sends a key to the same pool.
type splitter struct {
	cum   []uint64 // cumulative weights
	total uint64
	names []string
	pools []*upstream.Pool
	// key: 0 none, 'i' client address, 'h' header, 'c' cookie
	key     byte
	keyName string
	counter atomic.Uint64
	chosen  []filters.Counter // requests sent to each pool (weir_split_requests_total)
}

func (s *splitter) pick(x *filters.Exchange) int {
	var k []byte
	switch s.key {
	case 'i':
		k = x.ClientIP
	case 'h':
		k = x.Ctx.Request.Header.Peek(s.keyName)
	case 'c':
		k = x.Ctx.Request.Header.Cookie(s.keyName)
	}
	var h uint64
	if len(k) > 0 {
		h = 14695981039346656037 // FNV-1a 64
		for _, b := range k {
			h ^= uint64(b)
			h *= 1099511628211
		}
		// FNV's high bits mix poorly on short keys: one multiplicative round spreads them.
		h *= 0x9E3779B97F4A7C15
	} else {
		h = s.counter.Add(1) * 0x9E3779B97F4A7C15
	}
	// h's top 32 bits as a fraction of 1, scaled to the total weight.
	point := (h >> 32) * s.total >> 32
	for i, c := range s.cum {
		if point < c {
			return i
		}
	}
	return len(s.cum) - 1
}

// splitStep runs first in a split route's chain: it notes the chosen pool on the exchange, so that
// filters with per-pool state (circuit_breaker) and the upstream step use the same one.
type splitStep struct {
	s    *splitter
	next filters.Handler
}

func (st splitStep) Serve(x *filters.Exchange) {
	i := st.s.pick(x)
	x.Split, x.Pool = i, st.s.names[i]
	st.s.chosen[i].Inc()
	st.next.Serve(x)
}

// split compiles a route's split: the pools it names, their weights and the key.
func (c *compiler) split(path, route string, entries []SplitEntry, key string) *splitter {
	s := &splitter{}
	seen := map[string]bool{}
	for i, e := range entries {
		p := fmt.Sprintf("%s.split[%d]", path, i)
		switch _, ok := c.cfg.Upstreams[e.Upstream]; {
		case e.Upstream == "":
			c.problem(p+".upstream", "name the upstream this share goes to")
		case !ok:
			c.problem(p+".upstream", "unknown upstream %q%s", e.Upstream, suggest(e.Upstream, sortedKeys(c.cfg.Upstreams), "upstreams"))
		case seen[e.Upstream]:
			c.problem(p+".upstream", "upstream %q is listed twice in the split; give it one share", e.Upstream)
		}
		seen[e.Upstream] = true
		if e.Weight < 0 || e.Weight > 1000000 {
			c.problem(p+".weight", "must be between 0 and 1000000")
		}
		s.total += uint64(max(e.Weight, 0))
		s.cum = append(s.cum, s.total)
		s.names = append(s.names, e.Upstream)
		s.pools = append(s.pools, c.snap.pools[e.Upstream])
	}
	switch {
	case len(entries) < 2:
		c.problem(path+".split", "a split needs two upstreams or more (or use upstream: for one)")
	case len(entries) > 16:
		c.problem(path+".split", "a split may have at most 16 upstreams")
	case s.total == 0:
		c.problem(path+".split", "every weight is 0: give at least one upstream a share")
	}
	for _, name := range s.names {
		var ct filters.Counter = filters.NopCounter{}
		if m := c.opts.Metrics; m != nil {
			ct = m.splitRequests.WithLabelValues(route, name)
		}
		s.chosen = append(s.chosen, ct)
	}
	switch kind, name, _ := strings.Cut(key, ":"); {
	case key == "":
	case key == "client_ip":
		s.key = 'i'
	case kind == "header" && filters.IsToken(name):
		s.key, s.keyName = 'h', name
	case kind == "cookie" && name != "":
		s.key, s.keyName = 'c', name
	default:
		c.problem(path+".split_key", "unknown key %q; use client_ip, header:NAME or cookie:NAME", key)
	}
	return s
}
