// Package upstream holds pools of backend targets: one fasthttp.HostClient (connection pool) per target,
// a balancer over the targets, and the forwarding step that sends the gateway's own request object to the
// chosen target and maps failures to gateway status codes.
package upstream

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Settings is a validated pool description. The gateway builds it from config.yaml with the Parse*
// helpers below, which are where each field's rules live.
type Settings struct {
	Name     string
	Balancer BalancerKind
	HashKey  HashKey
	Targets  []TargetSpec

	ConnectTimeout  time.Duration // dial bound per connection
	Timeout         time.Duration // one attempt, request write to response end
	MaxConns        int           // open connections per target
	ConnWaitTimeout time.Duration // wait for a free connection before failing with ErrNoFreeConns
	IdleConnTimeout time.Duration // idle pooled connections are closed after this
	Streaming       Streaming     // which response bodies are buffered, which relayed as they come
	// MaxResponseHeaderBytes caps the response line plus headers (fasthttp's read buffer).
	MaxResponseHeaderBytes int

	TLS         *ClientTLS   // for https:// targets; nil: system roots, the target's host as SNI
	HealthCheck *HealthCheck // nil: no active checks
	Passive     Passive
	Retry       Retry
	Log         zerolog.Logger // ejections, health changes
	Counters    *PoolCounters  // nil: not counted
}

// TargetSpec is one parsed target URL.
type TargetSpec struct {
	URL    string // as written, for logs
	Addr   string // host:port dialed
	TLS    bool
	Weight int
}

// BalancerKind names a target selection policy.
type BalancerKind uint8

const (
	RoundRobin BalancerKind = iota
	Weighted
	LeastRequest
	Hash
	Random
)

var balancerNames = []string{"round_robin", "weighted", "least_request", "hash", "random"}

func (k BalancerKind) String() string { return balancerNames[k] }

// ParseBalancer reads a balancer name from config.
func ParseBalancer(s string) (BalancerKind, error) {
	for i, n := range balancerNames {
		if s == n {
			return BalancerKind(i), nil
		}
	}
	return 0, fmt.Errorf("unknown balancer %q; use one of %s", s, strings.Join(balancerNames, ", "))
}

// HashKey says which part of a request the hash balancer hashes.
type HashKey struct {
	Source HashSource
	Name   string // header or cookie name
}

// HashSource is the kind of request data a HashKey reads.
type HashSource uint8

const (
	HashNone HashSource = iota
	HashClientIP
	HashHeader
	HashCookie
	HashPath
)

// ParseHashKey reads client_ip, path, header:NAME or cookie:NAME.
func ParseHashKey(s string) (HashKey, error) {
	switch {
	case s == "client_ip":
		return HashKey{Source: HashClientIP}, nil
	case s == "path":
		return HashKey{Source: HashPath}, nil
	case strings.HasPrefix(s, "header:") && validToken(s[len("header:"):]):
		return HashKey{Source: HashHeader, Name: s[len("header:"):]}, nil
	case strings.HasPrefix(s, "cookie:") && validToken(s[len("cookie:"):]):
		return HashKey{Source: HashCookie, Name: s[len("cookie:"):]}, nil
	}
	return HashKey{}, fmt.Errorf("invalid hash key %q; use client_ip, path, header:NAME or cookie:NAME", s)
}

// ParseTarget reads a target URL: http or https, an explicit or implied port, and nothing else.
func ParseTarget(raw string) (TargetSpec, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" || strings.HasSuffix(u.Host, ":") {
		return TargetSpec{}, fmt.Errorf("invalid target URL %q; write it like \"http://10.0.0.5:8080\"", raw)
	}
	var spec TargetSpec
	switch u.Scheme {
	case "http":
	case "https":
		spec.TLS = true
	default:
		return TargetSpec{}, fmt.Errorf("target URL %q has scheme %q; use http or https", raw, u.Scheme)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil {
		return TargetSpec{}, fmt.Errorf("target URL %q must be scheme://host:port only; rewrite paths with a route filter", raw)
	}
	// Lower-cased host and a canonical port, so that one target written two ways is one address.
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = "80"
		if spec.TLS {
			port = "443"
		}
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return TargetSpec{}, fmt.Errorf("target URL %q has invalid port %q", raw, port)
	} else {
		port = strconv.Itoa(p)
	}
	spec.URL = raw
	spec.Addr = net.JoinHostPort(host, port)
	spec.Weight = 1
	return spec, nil
}

// validToken reports whether s is a non-empty RFC 9110 token (a valid header or cookie name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}
