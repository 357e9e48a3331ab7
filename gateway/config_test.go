package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// problemCase is one config file and every problem Compile must report for it, rendered as
// "FILE:LINE: path: message" lines in file order. An empty want means the config must compile.
type problemCase struct {
	desc string
	yaml string
	want []string
}

// compileProblems compiles yaml as test.yaml and returns each problem rendered, or nil if it compiles.
func compileProblems(t *testing.T, yaml string) []string {
	t.Helper()
	snap, err := Compile("test.yaml", []byte(yaml))
	if err == nil {
		snap.Close()
		return nil
	}
	ps, ok := err.(Problems)
	if !ok {
		t.Fatalf("Compile error is %T, want Problems: %v", err, err)
	}
	got := make([]string, len(ps))
	for i, p := range ps {
		got[i] = p.String()
	}
	if err.Error() != strings.Join(got, "\n") {
		t.Errorf("Problems.Error() = %q, want the problems joined by newlines", err.Error())
	}
	return got
}

func runProblemCases(t *testing.T, cases []problemCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			got := compileProblems(t, tc.yaml)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems differ\n--- got:\n%s\n--- want:\n%s\n--- config:\n%s",
					strings.Join(got, "\n"), strings.Join(tc.want, "\n"), tc.yaml)
			}
		})
	}
}

func TestCompile_DecodeProblems(t *testing.T) {
	runProblemCases(t, []problemCase{
		{
			desc: "misspelled top-level key suggests the right one",
			yaml: `servr:
  listen: ":8080"
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{`test.yaml:1: servr: unknown key "servr"; did you mean "server"?`},
		},
		{
			desc: "misspelled nested keys suggest the right ones",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
    timout: 5s
routes:
  - name: r
    match:
      path: /
      methds: [GET]
    upstream: api
`,
			want: []string{
				`test.yaml:5: upstreams.api.timout: unknown key "timout"; did you mean "timeout"?`,
				`test.yaml:10: routes[0].match.methds: unknown key "methds"; did you mean "methods"?`,
			},
		},
		{
			desc: "unknown key unlike any known one lists them all",
			yaml: `log:
  zzzzzz: 1
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{`test.yaml:2: log.zzzzzz: unknown key "zzzzzz"; known keys: access, access_sample, level`},
		},
		{
			desc: "key given twice in a section",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
    name: s
`,
			want: []string{`test.yaml:10: routes[0].name: key "name" appears twice in this mapping`},
		},
		{
			desc: "upstream name given twice",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
  api:
    targets:
      - url: http://127.0.0.1:9002
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{`test.yaml:5: upstreams.api: key "api" appears twice in this mapping`},
		},
		{
			desc: "second YAML document",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
---
log:
  level: debug
`,
			want: []string{`test.yaml:10: a second YAML document (after ---) is not allowed; put everything in one document`},
		},
		{
			desc: "empty file",
			yaml: ``,
			want: []string{`test.yaml: the file is empty; it needs at least one route`},
		},
		{
			desc: "file with only a comment",
			yaml: `# nothing here yet
`,
			want: []string{`test.yaml: the file is empty; it needs at least one route`},
		},
		{
			desc: "invalid YAML: unclosed flow sequence",
			yaml: `upstreams:
  api:
    targets: [
routes:
`,
			want: []string{`test.yaml:4: invalid YAML: did not find expected node content`},
		},
		{
			desc: "invalid YAML: bad indentation",
			yaml: `server:
  listen: ":8080"
 log: x
`,
			want: []string{`test.yaml:2: invalid YAML: did not find expected key`},
		},
		{
			desc: "top level is not a mapping",
			yaml: `hello
`,
			want: []string{`test.yaml:1: the top level must be a mapping of keys (server, upstreams, routes...), got "hello"`},
		},
		{
			desc: "wrong kinds of value for sections",
			yaml: `server: 8080
upstreams:
  - api
routes:
  name: r
`,
			want: []string{
				`test.yaml:1: server: expected a mapping of keys, got "8080"`,
				`test.yaml:2: upstreams: expected a mapping, got a list`,
				`test.yaml:4: routes: expected a list, got a mapping`,
			},
		},
		{
			desc: "wrong kinds of value for fields",
			yaml: `upstreams:
  api:
    targets: http://127.0.0.1:9001
    max_conns_per_target: many
routes:
  - name: [r]
    match: /x
    upstream: api
`,
			want: []string{
				`test.yaml:3: upstreams.api.targets: expected a list, got "http://127.0.0.1:9001"`,
				`test.yaml:4: upstreams.api.max_conns_per_target: expected a whole number, got "many"`,
				`test.yaml:6: routes[0].name: expected a string, got a list`,
				`test.yaml:7: routes[0].match: expected a mapping of keys, got "/x"`,
			},
		},
		{
			desc: "duration without unit",
			yaml: `server:
  read_timeout: 5
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
    timeout: 5
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{
				`test.yaml:2: server.read_timeout: duration "5" has no unit; durations need one, like "250ms" or "5s"`,
				`test.yaml:7: upstreams.api.timeout: duration "5" has no unit; durations need one, like "250ms" or "5s"`,
			},
		},
		{
			desc: "invalid durations",
			yaml: `server:
  read_timeout: 5 seconds
  write_timeout: [1]
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{
				`test.yaml:2: server.read_timeout: invalid duration "5 seconds"; write it like "250ms", "5s" or "1m30s"`,
				`test.yaml:3: server.write_timeout: expected a duration such as "250ms" or "5s", got a list`,
			},
		},
		{
			desc: "invalid sizes",
			yaml: `server:
  max_header_bytes: 16 KiBs
  max_body_bytes: -1
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
    max_response_bytes: 1.5MiB
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{
				`test.yaml:2: server.max_header_bytes: invalid size "16 KiBs"; write a whole number of bytes or use KiB, MiB or GiB, like "16KiB"`,
				`test.yaml:3: server.max_body_bytes: invalid size "-1"; write a whole number of bytes or use KiB, MiB or GiB, like "16KiB"`,
				`test.yaml:8: upstreams.api.max_response_bytes: invalid size "1.5MiB"; write a whole number of bytes or use KiB, MiB or GiB, like "16KiB"`,
			},
		},
		{
			desc: "log.access not a boolean",
			yaml: `log:
  access: maybe
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{`test.yaml:2: log.access: expected true or false, got "maybe"`},
		},
	})
}

func TestCompile_ServerAndLogProblems(t *testing.T) {
	runProblemCases(t, []problemCase{
		{
			desc: "sizes too small",
			yaml: `server:
  max_header_bytes: 100
  max_body_bytes: 0
  write_buffer_bytes: 512
  buffer_requests: 100MiB
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
    buffer_responses: 128MiB
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{
				`test.yaml:2: server.max_header_bytes: must be at least 1KiB to hold a request line and headers, got 100 bytes`,
				`test.yaml:3: server.max_body_bytes: must be more than 0 bytes`,
				`test.yaml:4: server.write_buffer_bytes: must be between 1KiB and 1MiB, got 512 bytes`,
				`test.yaml:5: server.buffer_requests: must be between 0 (stream every body) and 64MiB, got 104857600 bytes`,
				`test.yaml:10: upstreams.api.buffer_responses: must be between 0 (stream every body) and 64MiB, got 134217728 bytes`,
			},
		},
		{
			desc: "zero and negative timeouts",
			yaml: `server:
  read_timeout: 0s
  idle_timeout: -1s
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
    timeout: 0s
    connect_timeout: -5ms
    conn_wait_timeout: -1ms
    max_conns_per_target: 0
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{
				`test.yaml:2: server.read_timeout: must be more than zero`,
				`test.yaml:3: server.idle_timeout: must be more than zero`,
				`test.yaml:8: upstreams.api.timeout: must be more than zero`,
				`test.yaml:9: upstreams.api.connect_timeout: must be more than zero`,
				`test.yaml:10: upstreams.api.conn_wait_timeout: must be zero (fail at once) or more`,
				`test.yaml:11: upstreams.api.max_conns_per_target: must be 1 or more, got 0`,
			},
		},
		{
			desc: "conn_wait_timeout zero is allowed",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
    conn_wait_timeout: 0s
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
		},
		{
			desc: "bad listen address",
			yaml: `server:
  listen: "8080"
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{`test.yaml:2: server.listen: invalid listen address "8080"; write it like ":8080" or "127.0.0.1:8080", or "" to serve only TLS`},
		},
		{
			desc: "bad trusted_proxies entries",
			yaml: `server:
  trusted_proxies:
    - 10.0.0.0/8
    - 10.0.0.0/33
    - not-an-ip
    - 192.0.2.7
    - ""
    - 2001:db8::/32
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{
				`test.yaml:4: server.trusted_proxies[1]: invalid address or CIDR "10.0.0.0/33"; write it like "10.0.0.0/8" or "192.0.2.7"`,
				`test.yaml:5: server.trusted_proxies[2]: invalid address or CIDR "not-an-ip"; write it like "10.0.0.0/8" or "192.0.2.7"`,
				`test.yaml:7: server.trusted_proxies[4]: invalid address or CIDR ""; write it like "10.0.0.0/8" or "192.0.2.7"`,
			},
		},
		{
			desc: "unknown log level",
			yaml: `log:
  level: verbose
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{`test.yaml:2: log.level: unknown level "verbose"; use debug, info, warn or error`},
		},
		{
			desc: "empty log level",
			yaml: `log:
  level: ""
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{`test.yaml:2: log.level: unknown level ""; use debug, info, warn or error`},
		},
	})
}

func TestCompile_UpstreamProblems(t *testing.T) {
	runProblemCases(t, []problemCase{
		{
			desc: "bad target URLs",
			yaml: `upstreams:
  api:
    targets:
      - url: 127.0.0.1:9001
      - url: ftp://127.0.0.1:21
      - url: http://127.0.0.1:9001/api
      - url: http://127.0.0.1:99999
      - url: http://127.0.0.1:port
      - url: localhost
      - weight: 2
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{
				`test.yaml:4: upstreams.api.targets[0].url: invalid target URL "127.0.0.1:9001"; write it like "http://10.0.0.5:8080"`,
				`test.yaml:5: upstreams.api.targets[1].url: target URL "ftp://127.0.0.1:21" has scheme "ftp"; use http or https`,
				`test.yaml:6: upstreams.api.targets[2].url: target URL "http://127.0.0.1:9001/api" must be scheme://host:port only; rewrite paths with a route filter`,
				`test.yaml:7: upstreams.api.targets[3].url: target URL "http://127.0.0.1:99999" has invalid port "99999"`,
				`test.yaml:8: upstreams.api.targets[4].url: invalid target URL "http://127.0.0.1:port"; write it like "http://10.0.0.5:8080"`,
				`test.yaml:9: upstreams.api.targets[5].url: invalid target URL "localhost"; write it like "http://10.0.0.5:8080"`,
				`test.yaml:10: upstreams.api.targets[6].url: invalid target URL ""; write it like "http://10.0.0.5:8080"`,
			},
		},
		{
			desc: "target URL without a host",
			yaml: `upstreams:
  api:
    targets:
      - url: "http://:8080"
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{`test.yaml:4: upstreams.api.targets[0].url: invalid target URL "http://:8080"; write it like "http://10.0.0.5:8080"`},
		},
		{
			desc: "duplicate targets, also with implied ports",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:80
      - url: http://127.0.0.1
      - url: https://example.com
      - url: https://example.com:443/
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{
				`test.yaml:5: upstreams.api.targets[1].url: target 127.0.0.1:80 is already listed as targets[0]; raise its weight instead`,
				`test.yaml:7: upstreams.api.targets[3].url: target example.com:443 is already listed as targets[2]; raise its weight instead`,
			},
		},
		{
			desc: "weight zero, negative, not a number",
			yaml: `upstreams:
  api:
    balancer: weighted
    targets:
      - url: http://127.0.0.1:9001
        weight: 0
      - url: http://127.0.0.1:9002
        weight: -3
      - url: http://127.0.0.1:9003
        weight: two
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{
				`test.yaml:6: upstreams.api.targets[0].weight: weight must be 1 to 256, got 0`,
				`test.yaml:8: upstreams.api.targets[1].weight: weight must be 1 to 256, got -3`,
				`test.yaml:10: upstreams.api.targets[2].weight: expected a whole number, got "two"`,
			},
		},
		{
			desc: "pools without targets or settings",
			yaml: `upstreams:
  api:
    targets: []
  web:
    balancer: random
  nothing:
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{
				`test.yaml:3: upstreams.api.targets: the pool has no targets; list at least one, like - url: http://127.0.0.1:9001`,
				`test.yaml:4: upstreams.web.targets: the pool has no targets; list at least one, like - url: http://127.0.0.1:9001`,
				`test.yaml:6: upstreams.nothing: upstream "nothing" has no settings; it needs at least targets`,
			},
		},
		{
			desc: "hash balancer without hash_key",
			yaml: `upstreams:
  api:
    balancer: hash
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{`test.yaml:2: upstreams.api.hash_key: balancer hash needs a hash_key: client_ip, path, header:NAME or cookie:NAME`},
		},
		{
			desc: "hash_key with a non-hash balancer, explicit or default",
			yaml: `upstreams:
  api:
    balancer: least_request
    hash_key: client_ip
    targets:
      - url: http://127.0.0.1:9001
  web:
    hash_key: path
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{
				`test.yaml:4: upstreams.api.hash_key: hash_key is only used by the hash balancer, but balancer is least_request`,
				`test.yaml:8: upstreams.web.hash_key: hash_key is only used by the hash balancer, but balancer is round_robin`,
			},
		},
		{
			desc: "invalid hash_key",
			yaml: `upstreams:
  api:
    balancer: hash
    hash_key: "header:"
    targets:
      - url: http://127.0.0.1:9001
  web:
    balancer: hash
    hash_key: ip
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{
				`test.yaml:4: upstreams.api.hash_key: invalid hash key "header:"; use client_ip, path, header:NAME or cookie:NAME`,
				`test.yaml:9: upstreams.web.hash_key: invalid hash key "ip"; use client_ip, path, header:NAME or cookie:NAME`,
			},
		},
		{
			desc: "unknown balancer",
			yaml: `upstreams:
  api:
    balancer: roundrobin
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{`test.yaml:3: upstreams.api.balancer: unknown balancer "roundrobin"; use one of round_robin, weighted, least_request, hash, random`},
		},
		{
			desc: "misspelled hash balancer with a hash_key",
			yaml: `upstreams:
  api:
    balancer: hsh
    hash_key: path
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{`test.yaml:3: upstreams.api.balancer: unknown balancer "hsh"; use one of round_robin, weighted, least_request, hash, random`},
		},
		{
			desc: "weight with a balancer that ignores it",
			yaml: `upstreams:
  api:
    balancer: least_request
    targets:
      - url: http://127.0.0.1:9001
        weight: 3
      - url: http://127.0.0.1:9002
        weight: 1
  web:
    targets:
      - url: http://127.0.0.1:9001
        weight: 2
  bad:
    balancer: wieghted
    targets:
      - url: http://127.0.0.1:9001
        weight: 2
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{
				`test.yaml:6: upstreams.api.targets[0].weight: weight is only used by the weighted and hash balancers, but balancer is least_request`,
				`test.yaml:12: upstreams.web.targets[0].weight: weight is only used by the weighted and hash balancers, but balancer is round_robin`,
				`test.yaml:14: upstreams.bad.balancer: unknown balancer "wieghted"; use one of round_robin, weighted, least_request, hash, random`,
			},
		},
	})
}

func TestCompile_RouteProblems(t *testing.T) {
	runProblemCases(t, []problemCase{
		{
			desc: "unknown upstream, with and without a suggestion",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: apx
  - name: s
    match:
      path: /s
    upstream: totally-else
`,
			want: []string{
				`test.yaml:9: routes[0].upstream: unknown upstream "apx"; did you mean "api"?`,
				`test.yaml:13: routes[1].upstream: unknown upstream "totally-else"; known upstreams: api`,
			},
		},
		{
			desc: "unknown upstream when none are defined",
			yaml: `routes:
  - name: r
    match:
      path: /
    upstream: api
`,
			want: []string{`test.yaml:5: routes[0].upstream: unknown upstream "api"; no upstreams are defined`},
		},
		{
			desc: "route without upstream",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
`,
			want: []string{`test.yaml:6: routes[0].upstream: every route needs an upstream (or a split)`},
		},
		{
			desc: "no routes",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
`,
			want: []string{`test.yaml: routes: no routes are defined; add at least one under routes`},
		},
		{
			desc: "duplicate route names",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /a
    upstream: api
  - name: r
    match:
      path: /b
    upstream: api
`,
			want: []string{`test.yaml:10: routes[1].name: route name "r" is already used by routes[0]`},
		},
		{
			desc: "route without name",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - match:
      path: /a
    upstream: api
`,
			want: []string{`test.yaml:6: routes[0].name: every route needs a name (it appears in logs and metrics)`},
		},
		{
			desc: "empty route entry",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  -
`,
			want: []string{
				`test.yaml:6: routes[0].name: every route needs a name (it appears in logs and metrics)`,
				`test.yaml:6: routes[0].upstream: every route needs an upstream (or a split)`,
				`test.yaml:6: routes[0].match.path: every route needs a path pattern, like /api/users/{id} or /{rest:*}`,
			},
		},
		{
			desc: "path pattern not starting with / or missing",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: api/v1
    upstream: api
  - name: s
    upstream: api
`,
			want: []string{
				`test.yaml:8: routes[0].match.path: path pattern "api/v1" must start with /`,
				`test.yaml:10: routes[1].match.path: every route needs a path pattern, like /api/users/{id} or /{rest:*}`,
			},
		},
		{
			desc: "same pattern twice for the same host (host case ignored)",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      hosts: [a.example.com]
      path: /x
    upstream: api
  - name: s
    match:
      hosts: [A.example.com]
      path: /x
    upstream: api
`,
			want: []string{`test.yaml:12: routes[1].match: route "r" already matches the same host, path, method and conditions; give one of them another condition (headers, query, cookies) or remove it`},
		},
		{
			desc: "same pattern twice for any host with an overlapping method",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /x
      methods: [GET]
    upstream: api
  - name: s
    match:
      path: /x
      methods: [GET, POST]
    upstream: api
`,
			want: []string{`test.yaml:12: routes[1].match: route "r" already matches the same host, path, method and conditions; give one of them another condition (headers, query, cookies) or remove it`},
		},
		{
			desc: "wildcard with an empty name",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /a/{}
    upstream: api
`,
			want: []string{`test.yaml:8: routes[0].match.path: path pattern "/a/{}": parameter name "" must be letters, digits and _, not starting with a digit`},
		},
		{
			desc: "catch-all not at the end",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /{rest:*}/x
    upstream: api
`,
			want: []string{`test.yaml:8: routes[0].match.path: path pattern "/{rest:*}/x": catch-all {rest:*} must be a whole last segment`},
		},
		{
			desc: "bad regular expression",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: "/a/{id:[}"
    upstream: api
`,
			want: []string{"test.yaml:8: routes[0].match.path: path pattern \"/a/{id:[}\": parameter {id} has an invalid regular expression: error parsing regexp: missing closing ]: `[`"},
		},
		{
			desc: "unclosed parameter brace",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /a/{id
    upstream: api
`,
			want: []string{`test.yaml:8: routes[0].match.path: path pattern "/a/{id" has a { without a matching }`},
		},
		{
			desc: "optional parameter not in the last segment",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /a/{id?}/b
    upstream: api
`,
			want: []string{`test.yaml:8: routes[0].match.path: path pattern "/a/{id?}/b": optional parameter {id?} must be a whole last segment`},
		},
		{
			desc: "invalid methods",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
      methods:
        - get
        - CONNECT
        - TRACE
        - GE T
        - ""
    upstream: api
`,
			want: []string{
				`test.yaml:10: routes[0].match.methods[0]: invalid method "get"; methods are upper-case, like GET or POST`,
				`test.yaml:11: routes[0].match.methods[1]: CONNECT is never proxied; weir answers it with 501`,
				`test.yaml:12: routes[0].match.methods[2]: TRACE is never proxied; weir answers it with 501`,
				`test.yaml:13: routes[0].match.methods[3]: invalid method "GE T"; methods are upper-case, like GET or POST`,
				`test.yaml:14: routes[0].match.methods[4]: invalid method ""; methods are upper-case, like GET or POST`,
			},
		},
		{
			desc: "invalid hosts",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
      hosts:
        - api.example.com:8080
        - "*"
        - "*.*.example.com"
        - a..b
        - ""
        - example.com.
        - user@example.com
    upstream: api
`,
			want: []string{
				`test.yaml:10: routes[0].match.hosts[0]: invalid host "api.example.com:8080"; write a name like api.example.com or a wildcard like *.example.com (no port)`,
				`test.yaml:11: routes[0].match.hosts[1]: invalid host "*"; write a name like api.example.com or a wildcard like *.example.com (no port)`,
				`test.yaml:12: routes[0].match.hosts[2]: invalid host "*.*.example.com"; write a name like api.example.com or a wildcard like *.example.com (no port)`,
				`test.yaml:13: routes[0].match.hosts[3]: invalid host "a..b"; write a name like api.example.com or a wildcard like *.example.com (no port)`,
				`test.yaml:14: routes[0].match.hosts[4]: invalid host ""; write a name like api.example.com or a wildcard like *.example.com (no port)`,
				`test.yaml:16: routes[0].match.hosts[6]: invalid host "user@example.com"; write a name like api.example.com or a wildcard like *.example.com (no port)`,
			},
		},
		{
			desc: "filter problems: unknown filters and settings, bad values on their own lines",
			yaml: `defaults:
  filters:
    - rate_limit: {rps: 10}
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
    filters:
      - strip_prefix: /api
      - just-a-string
      - {a: 1, b: 2}
      - rate_limit:
          rate: 0
          key: "header:"
      - circuit_breaker:
          failure_ratio: 1.5
          open_timeout: 0s
`,
			want: []string{
				`test.yaml:3: defaults.filters[0].rate_limit.rps: unknown key "rps"; known keys: burst, key, lease_window, max_keys, on_redis_error, per, rate, scope`,
				`test.yaml:14: routes[0].filters[0]: unknown filter "strip_prefix"; known filters: access, api_key, basic_auth, cache, circuit_breaker, compress, cors, fallback, json, jwt, mirror, rate_limit, rewrite`,
				`test.yaml:15: routes[0].filters[1]: a filter is a mapping with one key naming it, like - rate_limit: {rate: 100, per: 1s}`,
				`test.yaml:16: routes[0].filters[2]: a filter is a mapping with one key naming it, like - rate_limit: {rate: 100, per: 1s}`,
				`test.yaml:18: routes[0].filters[3].rate_limit.rate: must be more than 0 requests per 1s`,
				`test.yaml:19: routes[0].filters[3].rate_limit.key: unknown key "header:"; use route, client_ip, header:NAME or consumer`,
				`test.yaml:21: routes[0].filters[4].circuit_breaker.failure_ratio: must be between 0 (off) and 1, got 1.5`,
				`test.yaml:22: routes[0].filters[4].circuit_breaker.open_timeout: must be more than zero`,
			},
		},
	})
}

func TestCompile_ReportsEveryProblemInLineOrder(t *testing.T) {
	runProblemCases(t, []problemCase{{
		desc: "problems from decoding and from validation, interleaved",
		yaml: `server:
  read_timeout: 5
  lisen: ":8080"
log:
  level: loud
upstreams:
  api:
    balancer: hash
    targets:
      - url: ftp://x
      - url: http://127.0.0.1:9001
        weight: 0
routes:
  - name: r
    match:
      path: x
      methods: [CONNECT]
    upstream: apii
  - name: r
    match:
      path: /y
    upstream: api
`,
		want: []string{
			`test.yaml:2: server.read_timeout: duration "5" has no unit; durations need one, like "250ms" or "5s"`,
			`test.yaml:3: server.lisen: unknown key "lisen"; did you mean "listen"?`,
			`test.yaml:5: log.level: unknown level "loud"; use debug, info, warn or error`,
			`test.yaml:7: upstreams.api.hash_key: balancer hash needs a hash_key: client_ip, path, header:NAME or cookie:NAME`,
			`test.yaml:10: upstreams.api.targets[0].url: target URL "ftp://x" has scheme "ftp"; use http or https`,
			`test.yaml:12: upstreams.api.targets[1].weight: weight must be 1 to 256, got 0`,
			`test.yaml:16: routes[0].match.path: path pattern "x" must start with /`,
			`test.yaml:17: routes[0].match.methods[0]: CONNECT is never proxied; weir answers it with 501`,
			`test.yaml:18: routes[0].upstream: unknown upstream "apii"; did you mean "api"?`,
			`test.yaml:19: routes[1].name: route name "r" is already used by routes[0]`,
		},
	}})
}

func TestCompile_AcceptsValidVariants(t *testing.T) {
	runProblemCases(t, []problemCase{
		{
			desc: "same pattern on different hosts and for different methods",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      hosts: [a.example.com]
      path: /x
    upstream: api
  - name: s
    match:
      hosts: [b.example.com, "*.example.com", example.org.]
      path: /x
    upstream: api
  - name: t
    match:
      path: /x
      methods: [GET]
    upstream: api
  - name: u
    match:
      path: /x
      methods: [POST, PURGE, M-SEARCH]
    upstream: api
`,
		},
		{
			desc: "pattern forms",
			yaml: `upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: static
    match: {path: /static}
    upstream: api
  - name: param
    match: {path: "/users/{id}"}
    upstream: api
  - name: optional
    match: {path: "/items/{id?}"}
    upstream: api
  - name: regex
    match: {path: "/orders/{id:[0-9]+}"}
    upstream: api
  - name: rest
    match: {path: "/files/{rest:*}"}
    upstream: api
`,
		},
		{
			desc: "every balancer and hash key, leading document marker",
			yaml: `---
upstreams:
  rr:
    balancer: round_robin
    targets:
      - url: http://127.0.0.1:9001
  w:
    balancer: weighted
    targets:
      - url: http://127.0.0.1:9001
        weight: 3
      - url: https://example.com
  lr:
    balancer: least_request
    targets:
      - url: http://[::1]:9001
  rnd:
    balancer: random
    targets:
      - url: http://localhost:9001/
  h1:
    balancer: hash
    hash_key: client_ip
    targets:
      - url: http://127.0.0.1:9001
  h2:
    balancer: hash
    hash_key: path
    targets:
      - url: http://127.0.0.1:9001
  h3:
    balancer: hash
    hash_key: header:X-User
    targets:
      - url: http://127.0.0.1:9001
  h4:
    balancer: hash
    hash_key: cookie:session
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: rr
`,
		},
		{
			desc: "trusted proxies and durations",
			yaml: `server:
  listen: 127.0.0.1:9090
  read_timeout: 1m30s
  write_timeout: 250ms
  trusted_proxies: [10.0.0.0/8, 192.0.2.7, "2001:db8::/32", "::1"]
log:
  level: debug
  access: false
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
routes:
  - name: r
    match:
      path: /
    upstream: api
`,
		},
	})
}

func TestCompile_AppliesDefaults(t *testing.T) {
	snap, err := Compile("test.yaml", []byte(`upstreams:
  api:
    balancer: weighted
    targets:
      - url: http://127.0.0.1:9001
      - url: https://example.com
        weight: 3
routes:
  - name: r
    match:
      path: /
    upstream: api
`))
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	wantServer := ServerConfig{
		Listen:          ":8080",
		ReadTimeout:     10 * time.Second,
		WriteTimeout:    30 * time.Second,
		IdleTimeout:     90 * time.Second,
		MaxHeaderBytes:  16 << 10,
		MaxBodyBytes:    4 << 20,
		ShutdownTimeout: 15 * time.Second,
	}
	if s := snap.Server; s.Listen != wantServer.Listen || s.ReadTimeout != wantServer.ReadTimeout ||
		s.WriteTimeout != wantServer.WriteTimeout || s.IdleTimeout != wantServer.IdleTimeout ||
		s.MaxHeaderBytes != wantServer.MaxHeaderBytes || s.MaxBodyBytes != wantServer.MaxBodyBytes ||
		s.ShutdownTimeout != wantServer.ShutdownTimeout || len(s.TrustedProxies) != 0 {
		t.Errorf("Server = %+v, want %+v", s, wantServer)
	}
	if snap.Log != (LogConfig{Level: "info", Access: true, AccessSample: 1}) {
		t.Errorf("Log = %+v, want {Level:info Access:true}", snap.Log)
	}
	if snap.LogLevel != zerolog.InfoLevel {
		t.Errorf("LogLevel = %v, want info", snap.LogLevel)
	}
	pool := snap.Pools()["api"]
	if pool == nil || len(pool.Targets) != 2 {
		t.Fatalf("pool api = %+v, want 2 targets", pool)
	}
	for i, want := range []struct {
		addr   string
		weight int
	}{{"127.0.0.1:9001", 1}, {"example.com:443", 3}} {
		if got, w := pool.Targets[i], pool.Weights[i]; got.Addr != want.addr || w != want.weight {
			t.Errorf("target %d = %s weight %d, want %s weight %d", i, got.Addr, w, want.addr, want.weight)
		}
	}
	if len(snap.Routes) != 1 || snap.Routes[0].Name != "r" || snap.Routes[0].Pool != pool {
		t.Errorf("Routes = %+v, want route r on pool api", snap.Routes)
	}
}

// The upstream settings other than targets do not appear on the Snapshot, so their defaults are
// checked on the decoded Config.
func TestDecode_UpstreamDefaultsAndOverrides(t *testing.T) {
	sink := newProblemSink("test.yaml")
	var cfg Config
	decodeConfig([]byte(`upstreams:
  plain:
    targets:
      - url: http://127.0.0.1:9001
  tuned:
    balancer: hash
    hash_key: path
    connect_timeout: 2s
    timeout: 1m
    max_conns_per_target: 8
    conn_wait_timeout: 0s
    idle_conn_timeout: 30s
    max_response_bytes: 1GiB
    targets:
      - url: http://127.0.0.1:9001
        weight: 7
`), &cfg, sink)
	if len(sink.list) != 0 {
		t.Fatalf("unexpected problems: %v", sink.list)
	}
	want := map[string]UpstreamConfig{
		"plain": {Balancer: "round_robin", ConnectTimeout: time.Second, Timeout: 15 * time.Second,
			MaxConnsPerTarget: 512, ConnWaitTimeout: 100 * time.Millisecond, IdleConnTimeout: 4 * time.Second,
			BufferResponses: 1 << 20, StreamIdleTimeout: 5 * time.Minute, MaxResponseBytes: 0,
			Targets: []TargetConfig{{URL: "http://127.0.0.1:9001", Weight: 1}}},
		"tuned": {Balancer: "hash", HashKey: "path", ConnectTimeout: 2 * time.Second, Timeout: time.Minute,
			MaxConnsPerTarget: 8, ConnWaitTimeout: 0, IdleConnTimeout: 30 * time.Second,
			MaxResponseBytes: 1 << 30, Targets: []TargetConfig{{URL: "http://127.0.0.1:9001", Weight: 7}}},
	}
	for name, w := range want {
		got := cfg.Upstreams[name]
		if got == nil {
			t.Errorf("upstream %s missing", name)
			continue
		}
		if got.Balancer != w.Balancer || got.HashKey != w.HashKey || got.ConnectTimeout != w.ConnectTimeout ||
			got.Timeout != w.Timeout || got.MaxConnsPerTarget != w.MaxConnsPerTarget ||
			got.ConnWaitTimeout != w.ConnWaitTimeout || got.IdleConnTimeout != w.IdleConnTimeout ||
			got.MaxResponseBytes != w.MaxResponseBytes ||
			name == "plain" && (got.BufferResponses != w.BufferResponses || got.StreamIdleTimeout != w.StreamIdleTimeout) || len(got.Targets) != 1 || got.Targets[0] != w.Targets[0] {
			t.Errorf("upstream %s = %+v, want %+v", name, *got, w)
		}
	}
}

// A key written with no value ("timeout:") or a section whose keys are all commented out should mean
// "use the defaults", like an absent key.
func TestDecode_NullValuesTakeDefaults(t *testing.T) {
	sink := newProblemSink("test.yaml")
	var cfg Config
	decodeConfig([]byte(`server:
log:
  # level: debug
upstreams:
  api:
    timeout:
    targets:
      - url: http://127.0.0.1:9001
        weight:
`), &cfg, sink)
	if len(sink.list) != 0 {
		t.Fatalf("unexpected problems: %v", sink.list)
	}
	if cfg.Server.Listen != ":8080" || cfg.Server.ReadTimeout != 10*time.Second {
		t.Errorf("Server = %+v, want defaults", cfg.Server)
	}
	if cfg.Log != (LogConfig{Level: "info", Access: true, AccessSample: 1}) {
		t.Errorf("Log = %+v, want {Level:info Access:true}", cfg.Log)
	}
	if u := cfg.Upstreams["api"]; u.Timeout != 15*time.Second || u.Targets[0].Weight != 1 {
		t.Errorf("upstream api = %+v, want timeout 15s and weight 1", *u)
	}
}

func TestCompile_ValidSizes(t *testing.T) {
	snap, err := Compile("test.yaml", []byte(`server:
  max_header_bytes: 16KiB
  max_body_bytes: 4096
upstreams:
  api:
    targets:
      - url: http://127.0.0.1:9001
    max_response_bytes: "4MiB"
routes:
  - name: r
    match:
      path: /
    upstream: api
`))
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if snap.Server.MaxHeaderBytes != 16384 || snap.Server.MaxBodyBytes != 4096 {
		t.Errorf("MaxHeaderBytes = %d, MaxBodyBytes = %d; want 16384, 4096", snap.Server.MaxHeaderBytes, snap.Server.MaxBodyBytes)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		ok   bool
	}{
		{"0", 0, true},
		{"4096", 4096, true},
		{"512B", 512, true},
		{"16KiB", 16 << 10, true},
		{"4MiB", 4 << 20, true},
		{"1GiB", 1 << 30, true},
		{"1KB", 1 << 10, true},
		{"2MB", 2 << 20, true},
		{"3GB", 3 << 30, true},
		{" 16 KiB ", 16 << 10, true},
		{"4611686018427387904", 1 << 62, true},
		{"4294967296GiB", 1 << 62, true},
		{"", 0, false},
		{"KiB", 0, false},
		{"-1", 0, false},
		{"-1KiB", 0, false},
		{"1.5MiB", 0, false},
		{"16kib", 0, false},
		{"16 KiBs", 0, false},
		{"1TiB", 0, false},
		{"0x1000", 0, false},
		{"abc", 0, false},
		{"4611686018427387905", 0, false},
		{"4294967297GiB", 0, false},
		{"99999999999999999999", 0, false},
	} {
		got, err := ParseSize(tc.in)
		switch {
		case tc.ok && (err != nil || got != tc.want):
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		case !tc.ok && err == nil:
			t.Errorf("ParseSize(%q) = %d, want an error", tc.in, got)
		case !tc.ok:
			want := `invalid size "` + tc.in + `"; write a whole number of bytes or use KiB, MiB or GiB, like "16KiB"`
			if err.Error() != want || got != 0 {
				t.Errorf("ParseSize(%q) = %d, %q; want 0, %q", tc.in, got, err, want)
			}
		}
	}
}

func TestDecode_MergeKeysAndExtensionKeys(t *testing.T) {
	sink := newProblemSink("test.yaml")
	var cfg Config
	decodeConfig([]byte("x-common: &c {timeout: 2s, max_conns_per_target: 7}\nupstreams:\n  api:\n    <<: *c\n    timeout: 3s\n"), &cfg, sink)
	if err := sink.err(); err != nil {
		t.Fatal(err)
	}
	if u := cfg.Upstreams["api"]; u.Timeout != 3*time.Second || u.MaxConnsPerTarget != 7 {
		t.Errorf("merged upstream: timeout %v (want the explicit 3s), max_conns_per_target %d (want the merged 7)", u.Timeout, u.MaxConnsPerTarget)
	}
}

func TestCompile_StricterInputs(t *testing.T) {
	const pool = "upstreams:\n  api:\n    targets:\n      - url: http://127.0.0.1:9001\n"
	runProblemCases(t, []problemCase{
		{
			desc: "a merge key that refers to its own mapping",
			yaml: `upstreams:
  api: &u
    <<: *u
    targets: [{url: "http://127.0.0.1:9001"}]
routes:
  - {name: r, match: {path: /}, upstream: api}
`,
			want: []string{`test.yaml:3: upstreams.api: a merge key (<<) refers to a mapping that contains it`},
		},
		{
			desc: "merge keys multiplying into a billion values",
			yaml: `x-0: &a0 {timeout: 1s}
x-1: &a1 {<<: [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]}
x-2: &a2 {<<: [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]}
x-3: &a3 {<<: [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]}
x-4: &a4 {<<: [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]}
x-5: &a5 {<<: [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]}
x-6: &a6 {<<: [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]}
x-7: &a7 {<<: [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]}
x-8: &a8 {<<: [*a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7]}
x-9: &a9 {<<: [*a8, *a8, *a8, *a8, *a8, *a8, *a8, *a8, *a8, *a8]}
upstreams:
  api:
    <<: *a9
    targets: [{url: "http://127.0.0.1:9001"}]
routes:
  - {name: r, match: {path: /}, upstream: api}
`,
			want: []string{`test.yaml:12: upstreams.api: the document expands to more than 500000 values; are aliases (*name) multiplying it?`},
		},
		{
			desc: "non-finite numbers",
			yaml: pool + `routes:
  - name: r
    match: {path: /}
    upstream: api
    filters:
      - rate_limit: {rate: .inf}
      - circuit_breaker: {failure_ratio: .nan}
`,
			want: []string{
				`test.yaml:10: routes[0].filters[0].rate_limit.rate: expected a finite number, got ".inf"`,
				`test.yaml:11: routes[0].filters[1].circuit_breaker.failure_ratio: expected a finite number, got ".nan"`,
			},
		},
		{
			desc: "health checks, passive health and retries",
			yaml: `upstreams:
  api:
    targets: [{url: "http://127.0.0.1:9001"}]
    health_check: {path: healthz, interval: 0s, expected_statuses: [99]}
    passive_health: {consecutive_failures: 3, ejection_time: 1m, max_ejection_time: 10s}
    retries: {attempts: 0, on: [connect_failure, 404, sometimes], budget_ratio: 2}
routes:
  - {name: r, match: {path: /}, upstream: api}
`,
			want: []string{
				`test.yaml:4: upstreams.api.health_check.path: must be a path starting with /, got "healthz"`,
				`test.yaml:4: upstreams.api.health_check.interval: must be more than zero`,
				`test.yaml:4: upstreams.api.health_check.expected_statuses[0]: 99 is not an HTTP status`,
				`test.yaml:5: upstreams.api.passive_health.max_ejection_time: must be at least ejection_time (1m0s)`,
				`test.yaml:6: upstreams.api.retries.attempts: must be 1 (no retries) or more`,
				`test.yaml:6: upstreams.api.retries.budget_ratio: must be between 0 and 1, got 2`,
				`test.yaml:6: upstreams.api.retries.on[1]: unknown retry condition "404"; use connect_failure, timeout or a 5xx status`,
				`test.yaml:6: upstreams.api.retries.on[2]: unknown retry condition "sometimes"; use connect_failure, timeout or a 5xx status`,
			},
		},
		{
			desc: "more than 64 targets",
			yaml: `upstreams:
  api:
    targets: [{url: "http://127.0.0.1:9000"}, {url: "http://127.0.0.1:9001"}, {url: "http://127.0.0.1:9002"}, {url: "http://127.0.0.1:9003"}, {url: "http://127.0.0.1:9004"}, {url: "http://127.0.0.1:9005"}, {url: "http://127.0.0.1:9006"}, {url: "http://127.0.0.1:9007"}, {url: "http://127.0.0.1:9008"}, {url: "http://127.0.0.1:9009"}, {url: "http://127.0.0.1:9010"}, {url: "http://127.0.0.1:9011"}, {url: "http://127.0.0.1:9012"}, {url: "http://127.0.0.1:9013"}, {url: "http://127.0.0.1:9014"}, {url: "http://127.0.0.1:9015"}, {url: "http://127.0.0.1:9016"}, {url: "http://127.0.0.1:9017"}, {url: "http://127.0.0.1:9018"}, {url: "http://127.0.0.1:9019"}, {url: "http://127.0.0.1:9020"}, {url: "http://127.0.0.1:9021"}, {url: "http://127.0.0.1:9022"}, {url: "http://127.0.0.1:9023"}, {url: "http://127.0.0.1:9024"}, {url: "http://127.0.0.1:9025"}, {url: "http://127.0.0.1:9026"}, {url: "http://127.0.0.1:9027"}, {url: "http://127.0.0.1:9028"}, {url: "http://127.0.0.1:9029"}, {url: "http://127.0.0.1:9030"}, {url: "http://127.0.0.1:9031"}, {url: "http://127.0.0.1:9032"}, {url: "http://127.0.0.1:9033"}, {url: "http://127.0.0.1:9034"}, {url: "http://127.0.0.1:9035"}, {url: "http://127.0.0.1:9036"}, {url: "http://127.0.0.1:9037"}, {url: "http://127.0.0.1:9038"}, {url: "http://127.0.0.1:9039"}, {url: "http://127.0.0.1:9040"}, {url: "http://127.0.0.1:9041"}, {url: "http://127.0.0.1:9042"}, {url: "http://127.0.0.1:9043"}, {url: "http://127.0.0.1:9044"}, {url: "http://127.0.0.1:9045"}, {url: "http://127.0.0.1:9046"}, {url: "http://127.0.0.1:9047"}, {url: "http://127.0.0.1:9048"}, {url: "http://127.0.0.1:9049"}, {url: "http://127.0.0.1:9050"}, {url: "http://127.0.0.1:9051"}, {url: "http://127.0.0.1:9052"}, {url: "http://127.0.0.1:9053"}, {url: "http://127.0.0.1:9054"}, {url: "http://127.0.0.1:9055"}, {url: "http://127.0.0.1:9056"}, {url: "http://127.0.0.1:9057"}, {url: "http://127.0.0.1:9058"}, {url: "http://127.0.0.1:9059"}, {url: "http://127.0.0.1:9060"}, {url: "http://127.0.0.1:9061"}, {url: "http://127.0.0.1:9062"}, {url: "http://127.0.0.1:9063"}, {url: "http://127.0.0.1:9064"}]
routes:
  - {name: r, match: {path: /}, upstream: api}
`,
			want: []string{`test.yaml:3: upstreams.api.targets: a pool holds at most 64 targets, got 65; split it into several upstreams`},
		},
		{
			desc: "weights above 256",
			yaml: `upstreams:
  api:
    balancer: hash
    hash_key: path
    targets: [{url: "http://127.0.0.1:9001", weight: 257}]
routes:
  - {name: r, match: {path: /}, upstream: api}
`,
			want: []string{`test.yaml:5: upstreams.api.targets[0].weight: weight must be 1 to 256, got 257`},
		},
		{
			desc: "a trailing --- with nothing after it is not a second document",
			yaml: pool + "routes:\n  - {name: r, match: {path: /}, upstream: api}\n---\n",
		},
		{
			desc: "top-level x- keys hold anchors for merge keys",
			yaml: `x-common: &common
  timeout: 2s
  connect_timeout: 1s
upstreams:
  api:
    <<: *common
    timeout: 3s
    targets: [{url: "http://127.0.0.1:9001"}]
routes:
  - {name: r, match: {path: /}, upstream: api}
`,
		},
		{
			desc: "merge keys inside an upstream",
			yaml: `upstreams:
  base: &base
    connect_timeout: 1s
    targets: [{url: "http://127.0.0.1:9001"}]
  api:
    <<: *base
    timeout: 0s
routes:
  - {name: r, match: {path: /}, upstream: api}
`,
			want: []string{`test.yaml:7: upstreams.api.timeout: must be more than zero`},
		},
		{
			desc: "a method or host listed twice in one route",
			yaml: pool + `routes:
  - name: r
    match:
      path: /x
      methods: [GET, GET]
      hosts: [a.example.com, A.example.com]
    upstream: api
`,
			want: []string{
				`test.yaml:9: routes[0].match.methods[1]: method GET is listed twice`,
				`test.yaml:10: routes[0].match.hosts[1]: host "A.example.com" is listed twice (hosts compare case-insensitively)`,
			},
		},
		{
			desc: "patterns that normalized request paths can never match",
			yaml: pool + `routes:
  - {name: a, match: {path: /a//b}, upstream: api}
  - {name: b, match: {path: /a/../b}, upstream: api}
  - {name: c, match: {path: /a/.}, upstream: api}
`,
			want: []string{
				`test.yaml:6: routes[0].match.path: path pattern "/a//b" has an empty, . or .. segment; requests are matched after normalization, so it could never match`,
				`test.yaml:7: routes[1].match.path: path pattern "/a/../b" has an empty, . or .. segment; requests are matched after normalization, so it could never match`,
				`test.yaml:8: routes[2].match.path: path pattern "/a/." has an empty, . or .. segment; requests are matched after normalization, so it could never match`,
			},
		},
		{
			desc: "pattern parameters: duplicate names, bad names, regex with braces",
			yaml: pool + `routes:
  - {name: a, match: {path: "/a/{id}/{id}"}, upstream: api}
  - {name: b, match: {path: "/b/{1x}"}, upstream: api}
  - {name: c, match: {path: "/c/{n:[0-9]{3}}"}, upstream: api}
  - {name: d, match: {path: "/d/{file}.json"}, upstream: api}
  - {name: e, match: {path: "/e}"}, upstream: api}
`,
			want: []string{
				`test.yaml:6: routes[0].match.path: path pattern "/a/{id}/{id}" uses parameter {id} twice`,
				`test.yaml:7: routes[1].match.path: path pattern "/b/{1x}": parameter name "1x" must be letters, digits and _, not starting with a digit`,
				`test.yaml:10: routes[4].match.path: path pattern "/e}" has a } without a matching {`,
			},
		},
		{
			desc: "log levels outside debug, info, warn, error",
			yaml: "log: {level: trace}\n" + pool + "routes:\n  - {name: r, match: {path: /}, upstream: api}\n",
			want: []string{`test.yaml:1: log.level: unknown level "trace"; use debug, info, warn or error`},
		},
		{
			desc: "one target written two ways is a duplicate",
			yaml: `upstreams:
  api:
    targets:
      - url: http://Example.com:080
      - url: http://example.com
routes:
  - {name: r, match: {path: /}, upstream: api}
`,
			want: []string{`test.yaml:5: upstreams.api.targets[1].url: target example.com:80 is already listed as targets[0]; raise its weight instead`},
		},
		{
			desc: "signed sizes",
			yaml: "server: {max_body_bytes: \"+5\"}\n" + pool + "routes:\n  - {name: r, match: {path: /}, upstream: api}\n",
			want: []string{`test.yaml:1: server.max_body_bytes: invalid size "+5"; write a whole number of bytes or use KiB, MiB or GiB, like "16KiB"`},
		},
	})
}

// FuzzCompile checks that no config, however malformed, makes compiling panic: a reload compiles
// whatever the file holds while the previous config serves. `go test` runs the seeds.
func FuzzCompile(f *testing.F) {
	for _, seed := range []string{
		"routes: [0]\ndefaults: {filters: [{rate_limit: {rate: 1}}]}\n",
		"upstreams: {u: {targets: [{url: http://127.0.0.1:9}]}}\nroutes:\n  - {name: r, match: /api/{rest:*}, upstream: u, filters: [{rewrite: {path: /x}}]}\n",
		"upstreams: {u: {targets: [{url: http://127.0.0.1:9}]}}\ndefaults: {filters: [{json: {allow: [a]}}]}\nroutes:\n  - {name: r, match: {path: [\"/api\"]}, upstream: u}\n",
		"upstreams: {u: {targets: [{url: http://127.0.0.1:9}]}}\nroutes:\n  - {name: r, match: {path: /x}, upstream: v, filters: [{circuit_breaker: {}}]}\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, config string) {
		snap, err := Compile("fuzz.yaml", []byte(config))
		if err == nil {
			snap.Close()
		} else if _, ok := err.(Problems); !ok {
			t.Fatalf("error is %T, want Problems", err)
		}
		if err != nil && strings.Contains(err.Error(), "internal error") {
			t.Fatalf("compiling panicked: %v", err)
		}
	})
}
