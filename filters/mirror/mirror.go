// Package mirror is the `mirror` filter: a copy of a share of a route's requests goes to another
// pool (a shadow deployment), fire and forget.
package mirror

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/valyala/fasthttp"

	"github.com/weir-gateway/weir/filters"
)

// Config is what the YAML says.
type Config struct {
	// Upstream is the pool the copies go to.
	Upstream string `yaml:"upstream"`
	// Percent of the route's forwarded requests that are copied.
	Percent float64 `yaml:"percent" default:"100"`
	// MaxInFlight bounds the copies pending at once; past it, new copies are dropped (and counted).
	MaxInFlight int `yaml:"max_in_flight" default:"100"`
}

// UpstreamNames implements filters.UpstreamSettings: the filter is rebuilt when its pool changes.
func (c Config) UpstreamNames() []string { return []string{c.Upstream} }

// Header marks a copy, so that the shadow can tell it from real traffic.
const Header = "X-Weir-Mirror"

// Filter is a compiled mirror filter.
type Filter struct {
	send                           filters.Sender
	every                          uint64 // a copy when the scrambled request count falls below every (of 1<<32)
	max                            int64
	inFlight                       atomic.Int64
	counter                        atomic.Uint64
	sent, dropped, skipped, failed filters.Counter
}

// New validates cfg and builds the filter; env.Mirror resolves the upstream.
func New(cfg Config, env filters.Env) (*Filter, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &filters.ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	f := &Filter{max: int64(cfg.MaxInFlight)}
	if cfg.Upstream == "" {
		bad("upstream", "name the pool the copies go to")
	} else if env.Mirror == nil {
		bad("upstream", "mirroring is not available here")
	} else if send, err := env.Mirror(cfg.Upstream); err != nil {
		bad("upstream", "%v", err)
	} else {
		f.send = send
	}
	if cfg.Percent <= 0 || cfg.Percent > 100 {
		bad("percent", "must be more than 0 and at most 100")
	}
	if cfg.MaxInFlight < 1 {
		bad("max_in_flight", "must be 1 or more")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	f.every = uint64(cfg.Percent / 100 * (1 << 32))
	f.sent, f.dropped = env.Counters.Mirrored("sent"), env.Counters.Mirrored("dropped")
	f.skipped, f.failed = env.Counters.Mirrored("skipped"), env.Counters.Mirrored("failed")
	return f, nil
}

// Wrap implements filters.Filter.
func (f *Filter) Wrap(next filters.Handler) filters.Handler { return &step{Filter: f, next: next} }

type step struct {
	*Filter
	next filters.Handler
}

// Serve copies the request once it has gone upstream: by then a buffered body is in it, and the
// copy is of what the upstream got (rewrites applied). The client's answer is not waited on, only
// the memory copy is made on its path.
func (s *step) Serve(x *filters.Exchange) {
	s.next.Serve(x)
	if x.Attempts == 0 || x.WebSocket || (s.counter.Add(1)*0x9E3779B97F4A7C15)>>32 >= s.every {
		return // not forwarded (refused, answered by weir), an upgrade, or not in the share
	}
	req := &x.Ctx.Request
	if x.StreamedUpload {
		s.skipped.Inc() // its body went by and is gone
		return
	}
	if s.inFlight.Add(1) > s.max {
		s.inFlight.Add(-1)
		s.dropped.Inc()
		return
	}
	copyReq := fasthttp.AcquireRequest()
	req.CopyTo(copyReq) // the body too: a buffered one is in req (the exchange's buffer, copied here)
	copyReq.Header.Set(Header, "1")
	clientIP := append([]byte(nil), x.ClientIP...)
	go s.mirror(copyReq, clientIP)
}

func (s *step) mirror(req *fasthttp.Request, clientIP []byte) {
	resp := fasthttp.AcquireResponse()
	err := s.send(req, resp, clientIP)
	fasthttp.ReleaseRequest(req)
	fasthttp.ReleaseResponse(resp)
	s.inFlight.Add(-1)
	if err != nil {
		s.failed.Inc()
		return
	}
	s.sent.Inc()
}
