package upstream

import (
	"strconv"
	"testing"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		desc string
		in   string
		addr string
		tls  bool
	}{
		{"http with port", "http://10.0.0.5:8080", "10.0.0.5:8080", false},
		{"http implies port 80", "http://example.com", "example.com:80", false},
		{"https implies port 443", "https://example.com", "example.com:443", true},
		{"https with port", "https://example.com:8443", "example.com:8443", true},
		{"trailing slash is allowed", "http://127.0.0.1:9001/", "127.0.0.1:9001", false},
		{"scheme is case-insensitive", "HTTPS://example.com", "example.com:443", true},
		{"IPv6 with port", "http://[::1]:9000", "[::1]:9000", false},
		{"IPv6 implied port", "https://[2001:db8::1]", "[2001:db8::1]:443", true},
		{"lowest port", "http://localhost:1", "localhost:1", false},
		{"highest port", "http://localhost:65535", "localhost:65535", false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := ParseTarget(tc.in)
			if err != nil {
				t.Fatalf("ParseTarget(%q): %v", tc.in, err)
			}
			want := TargetSpec{URL: tc.in, Addr: tc.addr, TLS: tc.tls, Weight: 1}
			if got != want {
				t.Errorf("ParseTarget(%q) = %+v, want %+v", tc.in, got, want)
			}
		})
	}
}

func TestParseTarget_Rejects(t *testing.T) {
	for _, tc := range []struct {
		desc string
		in   string
		want string
	}{
		{"empty", "", `invalid target URL ""; write it like "http://10.0.0.5:8080"`},
		{"no scheme, IP and port", "10.0.0.5:8080", `invalid target URL "10.0.0.5:8080"; write it like "http://10.0.0.5:8080"`},
		{"no scheme, name and port", "localhost:8080", `invalid target URL "localhost:8080"; write it like "http://10.0.0.5:8080"`},
		{"bare name", "localhost", `invalid target URL "localhost"; write it like "http://10.0.0.5:8080"`},
		{"opaque form", "http:127.0.0.1", `invalid target URL "http:127.0.0.1"; write it like "http://10.0.0.5:8080"`},
		{"space in host", "http:// x", `invalid target URL "http:// x"; write it like "http://10.0.0.5:8080"`},
		{"non-numeric port", "http://x:port", `invalid target URL "http://x:port"; write it like "http://10.0.0.5:8080"`},
		{"ftp", "ftp://x:21", `target URL "ftp://x:21" has scheme "ftp"; use http or https`},
		{"ws", "ws://x", `target URL "ws://x" has scheme "ws"; use http or https`},
		{"path", "http://x/api", `target URL "http://x/api" must be scheme://host:port only; rewrite paths with a route filter`},
		{"query", "http://x?a=1", `target URL "http://x?a=1" must be scheme://host:port only; rewrite paths with a route filter`},
		{"fragment", "http://x#f", `target URL "http://x#f" must be scheme://host:port only; rewrite paths with a route filter`},
		{"user info", "http://u:p@x", `target URL "http://u:p@x" must be scheme://host:port only; rewrite paths with a route filter`},
		{"port 0", "http://x:0", `target URL "http://x:0" has invalid port "0"`},
		{"port too high", "http://x:65536", `target URL "http://x:65536" has invalid port "65536"`},
		{"no host", "http://:8080", `invalid target URL "http://:8080"; write it like "http://10.0.0.5:8080"`},
		{"empty port", "http://x:", `invalid target URL "http://x:"; write it like "http://10.0.0.5:8080"`},
		{"empty query", "http://x?", `target URL "http://x?" must be scheme://host:port only; rewrite paths with a route filter`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := ParseTarget(tc.in)
			if err == nil {
				t.Fatalf("ParseTarget(%q) = %+v, want error %q", tc.in, got, tc.want)
			}
			if err.Error() != tc.want || got != (TargetSpec{}) {
				t.Errorf("ParseTarget(%q) = %+v, %q; want zero spec, %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseBalancer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want BalancerKind
	}{
		{"round_robin", RoundRobin},
		{"weighted", Weighted},
		{"least_request", LeastRequest},
		{"hash", Hash},
		{"random", Random},
	} {
		got, err := ParseBalancer(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseBalancer(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("%v.String() = %q, want %q", tc.want, got.String(), tc.in)
		}
	}
	for _, in := range []string{"", "Round_Robin", "roundrobin", "rr", "least-request", " hash", "HASH"} {
		got, err := ParseBalancer(in)
		want := `unknown balancer ` + strconv.Quote(in) + `; use one of round_robin, weighted, least_request, hash, random`
		if err == nil || err.Error() != want {
			t.Errorf("ParseBalancer(%q) = %v, %v; want error %q", in, got, err, want)
		}
	}
}

func TestParseHashKey(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want HashKey
	}{
		{"client_ip", HashKey{Source: HashClientIP}},
		{"path", HashKey{Source: HashPath}},
		{"header:X-User", HashKey{Source: HashHeader, Name: "X-User"}},
		{"cookie:session", HashKey{Source: HashCookie, Name: "session"}},
		{"header:x_a!#$%&'*+-.^_`|~9", HashKey{Source: HashHeader, Name: "x_a!#$%&'*+-.^_`|~9"}},
	} {
		got, err := ParseHashKey(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseHashKey(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", "ip", "Client_IP", "PATH", "header", "header:", "cookie:", "header :X", "header:a b",
		"header:a:b", "cookie:a;b", "cookie:a=b", "header:é", "header:a\tb", "query:x",
	} {
		got, err := ParseHashKey(in)
		want := `invalid hash key ` + strconv.Quote(in) + `; use client_ip, path, header:NAME or cookie:NAME`
		if err == nil || err.Error() != want || got != (HashKey{}) {
			t.Errorf("ParseHashKey(%q) = %+v, %v; want error %q", in, got, err, want)
		}
	}
}
