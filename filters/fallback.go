package filters

import (
	"errors"
	"fmt"
	"os"
	"strconv"
)

// Reasons of the gateway's own refusals that a fallback can name as causes.
const (
	ReasonRateLimited = "rate limit exceeded"
	ReasonCircuitOpen = "circuit breaker open"
	// ReasonLimiterUnavailable: a global rate_limit with on_redis_error: deny could not reach Redis.
	ReasonLimiterUnavailable = "rate limiter unavailable"
	ReasonNoTarget           = "no healthy upstream target"
)

// FallbackConfig is the `fallback` filter: a fixed answer in place of a failure (the "degrade" of
// rate limit → breaker → degrade).
type FallbackConfig struct {
	// On lists the causes answered: 5xx statuses (the upstream's own, or weir's for an upstream that
	// failed: unreachable, timed out, answered malformed), circuit_open, no_target, rate_limited.
	On []string `yaml:"on"`
	// Status, ContentType and Body (or BodyFile, relative to the config file) are the answer.
	Status      int    `yaml:"status" default:"200"`
	ContentType string `yaml:"content_type" default:"application/json"`
	Body        string `yaml:"body"`
	BodyFile    string `yaml:"body_file"`
}

// SourceFiles implements FileSettings.
func (c FallbackConfig) SourceFiles() []string { return []string{c.BodyFile} }

// maxFallbackBody bounds a fallback's body: it is held in memory and sent as is.
const maxFallbackBody = 1 << 20

// Fallback is a compiled fallback filter.
type Fallback struct {
	statuses [600]bool
	named    map[string]bool
	status   int
	ctype    []byte
	body     []byte
	counted  map[string]Counter
}

var fallbackCauses = []string{"circuit_open", "no_target", "rate_limited"}

// NewFallback validates cfg and builds the filter.
func NewFallback(cfg FallbackConfig, env Env) (*Fallback, error) {
	var errs []error
	f := &Fallback{named: map[string]bool{}, status: cfg.Status, ctype: []byte(cfg.ContentType), counted: map[string]Counter{}}
	if len(cfg.On) == 0 {
		errs = append(errs, fieldErr("on", "list the causes to answer: 5xx statuses, circuit_open, no_target, rate_limited"))
	}
	for i, c := range cfg.On {
		n, err := strconv.Atoi(c)
		switch {
		case err == nil && n >= 500 && n <= 599:
			f.statuses[n] = true
		case err != nil && (c == "circuit_open" || c == "no_target" || c == "rate_limited"):
			f.named[c] = true
		default:
			errs = append(errs, fieldErr(fmt.Sprintf("on[%d]", i), "unknown cause %q; use a 5xx status, circuit_open, no_target or rate_limited", c))
			continue
		}
		f.counted[c] = env.Counters.fallback(c)
	}
	if cfg.Status < 200 || cfg.Status > 599 {
		errs = append(errs, fieldErr("status", "must be a status from 200 to 599"))
	}
	switch {
	case cfg.Body != "" && cfg.BodyFile != "":
		errs = append(errs, fieldErr("body_file", "give body or body_file, not both"))
	case cfg.BodyFile != "":
		data, err := os.ReadFile(env.Resolve(cfg.BodyFile))
		switch {
		case err != nil:
			errs = append(errs, fieldErr("body_file", "cannot read it: %v", err))
		case len(data) > maxFallbackBody:
			errs = append(errs, fieldErr("body_file", "is %d bytes; a fallback body may have at most %d", len(data), maxFallbackBody))
		}
		f.body = data
	default:
		f.body = []byte(cfg.Body)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f, nil
}

// Wrap implements Filter.
func (f *Fallback) Wrap(next Handler) Handler { return &fallbackStep{Fallback: f, next: next} }

type fallbackStep struct {
	*Fallback
	next Handler
}

func (s *fallbackStep) Serve(x *Exchange) {
	s.next.Serve(x)
	cause, status := "", 0
	switch {
	case x.Status != 0:
		switch x.Reason {
		case ReasonCircuitOpen:
			cause = "circuit_open"
		case ReasonNoTarget:
			cause = "no_target"
		case ReasonRateLimited:
			cause = "rate_limited"
		default:
			status = x.Status
		}
	case x.Tunnel == nil:
		status = x.Ctx.Response.StatusCode()
	}
	if cause != "" {
		if !s.named[cause] {
			return
		}
	} else if status < 500 || status > 599 || !s.statuses[status] {
		return
	} else {
		cause = statusText[status-500]
	}
	resp := &x.Ctx.Response
	resp.Reset() // the failure's headers (Retry-After...) and any streamed body go with it
	resp.SetStatusCode(s.status)
	resp.Header.SetContentTypeBytes(s.ctype)
	resp.SetBodyRaw(s.body)
	x.Status, x.Reason, x.Fallback = 0, "", cause
	s.counted[cause].Inc()
}

// statusText holds "500".."599", so naming a status as a cause allocates nothing.
var statusText = func() (t [100]string) {
	for i := range t {
		t[i] = strconv.Itoa(500 + i)
	}
	return t
}()
