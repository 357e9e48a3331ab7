package gateway

import (
	"encoding/json"
	"sort"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters/cache"
)

// purgeRequest is the body of POST /cache/purge: the route whose caches to purge (all routes when
// empty) and the key prefix of the entries to drop (all of them when empty); at least one is given.
type purgeRequest struct {
	Route  string `json:"route"`
	Prefix string `json:"prefix"`
}

// purgeResult is the answer: how many entries went, by route.
type purgeResult struct {
	Purged int            `json:"purged"`
	Routes map[string]int `json:"routes"`
}

// purge drops cached entries from the serving snapshot's cache filters. A cache kept in Redis is
// purged there, for every replica.
func (a *Admin) purge(ctx *fasthttp.RequestCtx) {
	var req purgeRequest
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		writeJSON(ctx, fasthttp.StatusBadRequest, map[string]string{"error": `the body must be JSON like {"route": "catalog"} or {"prefix": "api.example.com/products/"}: ` + err.Error()})
		return
	}
	if req.Route == "" && req.Prefix == "" {
		writeJSON(ctx, fasthttp.StatusBadRequest, map[string]string{"error": `name a route, a key prefix or both, like {"route": "catalog", "prefix": "api.example.com/products/"}`})
		return
	}
	snap := a.srv.Snapshot()
	res := purgeResult{Routes: map[string]int{}}
	var caches []*cache.Filter
	for _, f := range snap.filters {
		if c, ok := f.(*cache.Filter); ok && (req.Route == "" || c.Route() == req.Route) {
			caches = append(caches, c)
		}
	}
	if len(caches) == 0 {
		msg := "no route has a cache filter"
		if req.Route != "" {
			msg = "route " + req.Route + " has no cache filter"
			if _, ok := snap.routeByName[req.Route]; !ok {
				msg = "no route is named " + req.Route
			}
		}
		writeJSON(ctx, fasthttp.StatusNotFound, map[string]string{"error": msg})
		return
	}
	sort.Slice(caches, func(i, j int) bool { return caches[i].Route() < caches[j].Route() })
	for _, c := range caches {
		n := c.Purge(req.Prefix)
		res.Purged += n
		res.Routes[c.Route()] += n
		if a.m != nil {
			a.m.cachePurged.WithLabelValues(c.Route()).Add(float64(n))
		}
	}
	a.srv.log.Info().Str("route", req.Route).Str("prefix", req.Prefix).Int("purged", res.Purged).Msg("cache purged")
	writeJSON(ctx, fasthttp.StatusOK, res)
}
