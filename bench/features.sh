#!/usr/bin/env bash
# What weir's features cost on the everyday request: a plain GET /13 through weir without filters,
# against the same request over a TLS keep-alive connection, with a jwt filter seeing a repeated token,
# routed by header, query and cookie conditions, and with server.reduce_memory_usage on (issue 18's
# "within 10 % of the plain request" and "CPU price of reduce_memory_usage" checks). Then the memory of
# an idle keep-alive connection by Go's own count, with and without reduce_memory_usage. Report in
# bench/results-features.md.
#
#   bench/features.sh                      # ROUNDS=5, DURATION=4 (about 8 minutes)
#   ROUNDS=1 DURATION=2 bench/features.sh  # smoke run
#
# Settings (environment): ROUNDS (5), DURATION of each measured wrk run in seconds (4), WARMUP (1),
# CONNS ("64 256"), IDLE_CONNS for the memory test (5000; 0 skips it).
#
# Layout as in bench/run.sh: each weir runs alone on core 0 with GOMAXPROCS=1, wrk and the backend
# share core 1, rounds interleave the scenarios (rotating their order). The plain and the TLS scenario
# are the same weir process (bench/configs/weir-features.yaml listens on both); the others are one
# process each, whose config differs from it only by the feature. Each scenario's CPU per request is
# set against the plain scenario's of the same round; the table gives the median of those per-round
# ratios, which drift on the machine affects less than a ratio of medians.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=bench/.build
LOGS=$BUILD/logs
RESULTS=${RESULTS:-bench/results-features.md}
RUNS=$BUILD/features.tsv
IDLE=$BUILD/features-idle.tsv

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-"64 256"}
IDLE_CONNS=${IDLE_CONNS:-5000}

PROXY_CORE=0
LOAD_CORE=1
BACKEND_ADDR=127.0.0.1:18080

# weir processes: name -> config, listening port, admin port.
declare -A CONFIG=([weir]=weir-features.yaml [weir+jwt]=weir-jwt.yaml [weir+conditions]=weir-conditions.yaml [weir+reduce]=weir-reduce.yaml)
declare -A PORT=([weir]=18081 [weir+jwt]=18082 [weir+conditions]=18083 [weir+reduce]=18084)
declare -A ADMIN=([weir]=18091 [weir+jwt]=18092 [weir+conditions]=18093 [weir+reduce]=18094)
PROCESSES=(weir weir+jwt weir+conditions weir+reduce)
TLS_PORT=18443

source bench/lib.sh

# Scenarios: name|process|URL|request headers, ";"-separated. TOKEN is filled in after jwtkit ran.
scenarios() {
	SCENARIOS=(
		"plain|weir|http://127.0.0.1:${PORT[weir]}/13|"
		"TLS keep-alive|weir|https://127.0.0.1:$TLS_PORT/13|"
		"plain, with the jwt request's Authorization|weir|http://127.0.0.1:${PORT[weir]}/13|Authorization: Bearer $TOKEN"
		"jwt, repeated token|weir+jwt|http://127.0.0.1:${PORT[weir+jwt]}/13|Authorization: Bearer $TOKEN"
		"plain, with the conditions request's query and headers|weir|http://127.0.0.1:${PORT[weir]}/13?v=2|X-Canary: on;Cookie: beta=1"
		"header, query and cookie conditions|weir+conditions|http://127.0.0.1:${PORT[weir+conditions]}/13?v=2|X-Canary: on;Cookie: beta=1"
		"reduce_memory_usage|weir+reduce|http://127.0.0.1:${PORT[weir+reduce]}/13|"
	)
}

# header_args HEADERS: wrk's or curl's -H arguments for a ";"-separated header list, one per line.
header_args() {
	local list=$1 h hs
	IFS=';' read -r -a hs <<<"$list"
	for h in "${hs[@]}"; do
		[[ -n $h ]] && printf -- '-H\n%s\n' "$h"
	done
	return 0
}

# check_scenario SCENARIO: the URL answers 200 with the 13-byte body.
check_scenario() {
	local name process url headers args got
	IFS='|' read -r name process url headers <<<"$1"
	mapfile -t args < <(header_args "$headers")
	got=$(curl -sS -k --max-time 5 "${args[@]}" -o /dev/null -w '%{http_code} %{size_download}' "$url") ||
		die "$name: $url does not answer"
	[[ $got == "200 13" ]] || die "$name: $url answered '$got', want '200 13'"
}

# measure ROUND SCENARIO CONNS: a warmup run and a measured run; appends a row to RUNS.
measure() {
	local round=$1 conns=$3 name process url headers args pid out
	IFS='|' read -r name process url headers <<<"$2"
	mapfile -t args < <(header_args "$headers")
	pid=${PID[$process]}
	out="$LOGS/features-r$round-${name//[ ,]/_}-c$conns.txt"
	taskset -c "$LOAD_CORE" wrk -t1 -c"$conns" -d"${WARMUP}s" "${args[@]}" -s bench/wrk.lua "$url" >/dev/null 2>&1 ||
		die "wrk warmup failed: $name"
	local core0 proc0 core1 proc1
	core0=$(core_jiffies)
	proc0=$(proc_jiffies "$pid")
	taskset -c "$LOAD_CORE" wrk -t1 -c"$conns" -d"${DURATION}s" --latency "${args[@]}" -s bench/wrk.lua "$url" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "wrk failed: $name, $conns conns"; }
	core1=$(core_jiffies)
	proc1=$(proc_jiffies "$pid")
	local result requests dur_us errors non2xx p50 p99
	result=$(grep '^RESULT ' "$out") || { cat "$out" >&2; die "no RESULT line from wrk"; }
	read -r requests dur_us errors non2xx p50 p99 <<<"$(sed 's/^RESULT //; s/[a-z0-9_]*=//g' <<<"$result")"
	((requests > 0)) || die "no request completed: $name, $conns conns"
	((errors + non2xx == 0)) || { cat "$out" >&2; die "$name, $conns conns: $errors socket errors, $non2xx non-2xx answers"; }
	awk -v OFS='\t' -v hz="$(getconf CLK_TCK)" -v round="$round" -v name="$name" -v conns="$conns" \
		-v n="$requests" -v dur="$dur_us" -v c0="$core0" -v c1="$core1" -v p0="$proc0" -v p1="$proc1" \
		'BEGIN {
			split(c0, a, " "); split(c1, b, " ")
			busy = (b[1] - a[1]) * 1e6 / hz; total = (b[2] - a[2]) * 1e6 / hz
			print round, name, conns, n / (dur / 1e6), busy / n, (p1 - p0) * 1e6 / hz / n,
				(total > 0 ? 100 * busy / total : 0)
		}' >>"$RUNS"
	log "round $round  $name  c=$conns: $(tail -1 "$RUNS" | cut -f4,5 | awk '{ printf "%.0f req/s, %.2f us/req on core 0", $1, $2 }')"
}

# go_mem NAME: "heap stack" bytes in use by weir NAME after a forced garbage collection.
go_mem() {
	curl -sS --max-time 30 -o /dev/null "http://127.0.0.1:${ADMIN[$1]}/debug/pprof/heap?gc=1" ||
		die "$1: cannot force a GC through /debug/pprof/heap"
	scrape "$1" "$BUILD/metrics-$1.txt"
	echo "$(metric "$BUILD/metrics-$1.txt" go_memstats_heap_inuse_bytes) $(metric "$BUILD/metrics-$1.txt" go_memstats_stack_inuse_bytes)"
}

# idle_test NAME: fresh weir NAME, IDLE_CONNS idle keep-alive connections; Go heap and stack in use
# before and while they idle, and the RSS delta, per connection.
idle_test() {
	local name=$1 before during line idler i
	start_weir "$name"
	before=$(go_mem "$name")
	taskset -c "$LOAD_CORE" "$BUILD/idleconns" -addr "127.0.0.1:${PORT[$name]}" -pid "${PID[$name]}" \
		-n "$IDLE_CONNS" -path /13 -body-bytes 13 -settle 10s >"$LOGS/idle-$name.txt" 2>&1 &
	idler=$!
	# idleconns opens the connections, then holds them idle for 10 s: read in the middle of that.
	for ((i = 0; i < 300; i++)); do
		(($(ss -Htn state established "( sport = :${PORT[$name]} )" | wc -l) >= IDLE_CONNS)) && break
		sleep 0.1
	done
	((i < 300)) || die "idleconns did not open $IDLE_CONNS connections to $name within 30 s"
	sleep 4
	during=$(go_mem "$name")
	wait "$idler" || { cat "$LOGS/idle-$name.txt" >&2; die "idle-connection test failed against $name"; }
	line=$(cat "$LOGS/idle-$name.txt")
	log "idle $name: $line; heap, stack before: $before; while idle: $during"
	printf '%s\t%s\t%s\t%s\n' "$name" "$before" "$during" "$line" >>"$IDLE"
	stop_weir "$name"
}

start_weir() {
	start "$1" "$PROXY_CORE" "$LOGS/$1.log" env GOMAXPROCS=1 "$BUILD/weir" -config "bench/configs/${CONFIG[$1]}"
	wait_port "$1" "${PORT[$1]}" "$LOGS/$1.log"
}
stop_weir() {
	stop_pid "${PID[$1]}"
	wait_closed "${PORT[$1]}"
}

# ---- setup ----

for tool in wrk taskset curl go openssl ss; do
	command -v "$tool" >/dev/null || die "$tool is required (wrk: apt-get install -y wrk)"
done
(($(nproc) >= 2)) || die "needs 2 cores (weir on core $PROXY_CORE, load on core $LOAD_CORE)"
raise_nofile $((IDLE_CONNS + 1000))
for port in "${PORT[@]}" "${ADMIN[@]}" "$TLS_PORT" "${BACKEND_ADDR##*:}"; do
	! port_is_open "$port" || die "port $port is already in use"
done

rm -rf "$BUILD"
mkdir -p "$LOGS" "$BUILD/tls" "$BUILD/jwt"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
	-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$BUILD/tls/key.pem" -out "$BUILD/tls/cert.pem" 2>/dev/null
log "building weir, the backend, the idle-connection client and the token maker"
go build -o "$BUILD/weir" ./cmd/weir
go build -o "$BUILD/backend" ./bench/backend
go build -o "$BUILD/idleconns" ./bench/idleconns
go build -o "$BUILD/jwtkit" ./bench/jwtkit
TOKEN=$("$BUILD/jwtkit" -jwks "$BUILD/jwt/jwks.json")
scenarios

start backend "$LOAD_CORE" "$LOGS/backend.log" env GOMAXPROCS=1 "$BUILD/backend" -listen "$BACKEND_ADDR"
wait_port backend "${BACKEND_ADDR##*:}" "$LOGS/backend.log"
for process in "${PROCESSES[@]}"; do
	start_weir "$process"
done
for scenario in "${SCENARIOS[@]}"; do
	check_scenario "$scenario"
done
# The conditions scenario only measures its route if its requests take it: the catch-all would
# answer them too.
scrape weir+conditions "$BUILD/metrics-conditions.txt"
(($(metric "$BUILD/metrics-conditions.txt" weir_requests_total 'route="canary"') == 1)) ||
	die "the conditions scenario's request did not take the canary route"

# ---- load rounds ----

: >"$RUNS"
started_at=$(date +%s)
for ((round = 1; round <= ROUNDS; round++)); do
	offset=$(((round - 1) % ${#SCENARIOS[@]}))
	order=("${SCENARIOS[@]:offset}" "${SCENARIOS[@]:0:offset}")
	for conns in $CONNS; do
		for scenario in "${order[@]}"; do
			measure "$round" "$scenario" "$conns"
		done
	done
done
scrape weir+conditions "$BUILD/metrics-conditions.txt"
canary=$(metric "$BUILD/metrics-conditions.txt" weir_requests_total 'route="canary"')
other=$(metric "$BUILD/metrics-conditions.txt" weir_requests_total 'route="all"')
((other == 0)) || die "$other requests of the conditions scenario took the catch-all route"
for process in "${PROCESSES[@]}"; do
	stop_weir "$process"
done

: >"$IDLE"
if ((IDLE_CONNS > 0)); then
	idle_test weir
	idle_test weir+reduce
fi
log "measurements took $(($(date +%s) - started_at)) s"

# ---- report ----

weir_version="$("$BUILD/weir" version) at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
{
	echo "# weir feature costs on the everyday request"
	echo
	echo "Generated by \`bench/features.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'): ROUNDS=$ROUNDS, DURATION=${DURATION}s (after a ${WARMUP}s warmup), connections $CONNS, IDLE_CONNS=$IDLE_CONNS; $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr), $weir_version, $(go version | awk '{ print $3 }'), wrk $(wrk -v 2>&1 | head -1 | awk '{ print $2 }')."
	echo
	echo "Every scenario is GET /13 (a 13-byte answer) through weir on core 0 (\`GOMAXPROCS=1\`), wrk and the"
	echo "backend on core 1, keep-alive on both sides. **plain**: no filters (bench/configs/weir-features.yaml)."
	echo "**TLS keep-alive**: the same process's HTTPS listener (TLS 1.3, ECDSA P-256), handshakes amortized"
	echo "away. **jwt, repeated token**: a jwt filter checking issuer, audience, expiry and a scope and"
	echo "forwarding the subject (weir-jwt.yaml), every request with the same ES256 token, so all but the first"
	echo "are answered from the filter's cache of verified tokens. **conditions**: a route needing a header, a"
	echo "query parameter and a cookie, beside a catch-all (weir-conditions.yaml; every measured request took"
	echo "it: $canary on the canary route, $other on the catch-all). **reduce_memory_usage**: plain with"
	echo "\`server.reduce_memory_usage: true\` (weir-reduce.yaml). The two **plain, with ...** rows send the jwt"
	echo "and the conditions scenarios' requests (the same token, query and headers) to plain weir: the"
	echo "difference between such a row and its feature's is the feature's own work, the rest is the bigger request."
	echo
	echo "**CPU/req** is core 0's busy time per completed request (/proc/stat, which includes the kernel's"
	echo "loopback TCP work), median and (min–max) over the rounds; **process** is weir's own utime+stime per"
	echo "request. **÷ plain** is the median over the rounds of the scenario's core-0 CPU/req divided by plain's"
	echo "in the same round; **+ µs** the difference of the medians."
	echo
	echo "| scenario | conns | req/s | core-0 CPU/req µs | process CPU/req µs | core-0 busy % | ÷ plain | + µs |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' -v order="$(printf '%s\n' "${SCENARIOS[@]}" | cut -d'|' -f1 | paste -sd'|')" -v conns_list="$CONNS" \
		-f bench/stats.awk -f - "$RUNS" <<'AWK'
		{ key = $2 SUBSEP $3; seen[key] = 1
		  for (c = 4; c <= 7; c++) vals[key, c] = vals[key, c] " " $c
		  inround[key, $1, 5] = $5; rounds[$1] = 1 }
		END {
			n = split(order, names, "|"); m = split(conns_list, cl, " ")
			for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) {
				key = names[i] SUBSEP cl[j]
				if (!(key in seen)) continue
				printf "| %s | %s | %s | %s | %s | %.0f | %s | %+.1f |\n", names[i], cl[j],
					stat(key, 4, "%.0f", 1), stat(key, 5, "%.1f", 1), stat(key, 6, "%.1f", 1), med(key, 7),
					rratio(key, "plain" SUBSEP cl[j], 5), med(key, 5) - med("plain" SUBSEP cl[j], 5)
			}
		}
AWK
	if [[ -s $IDLE ]]; then
		echo
		echo "## Idle keep-alive connection"
		echo
		echo "Each weir freshly started; $IDLE_CONNS connections (bench/idleconns) each serve one GET /13 and stay open."
		echo "Go's own count (\`go_memstats_heap_inuse_bytes\`, \`go_memstats_stack_inuse_bytes\` from /metrics,"
		echo "each read after a forced GC) while they idle, minus the same before they opened, per connection;"
		echo "and the resident set's growth per connection. Every connection still served a request afterwards."
		echo
		echo "| weir | heap per connection | stack per connection | heap + stack | RSS per connection |"
		echo "|---|---:|---:|---:|---:|"
		awk -F'\t' -v n="$IDLE_CONNS" '{
			split($2, b, " "); split($3, d, " "); match($4, /bytes_per_conn=[0-9]+/)
			rss = substr($4, RSTART + 15, RLENGTH - 15)
			name = ($1 == "weir" ? "default" : "reduce_memory_usage")
			printf "| %s | %.0f B | %.0f B | %.0f B (%.1f KiB) | %s B |\n", name, (d[1] - b[1]) / n,
				(d[2] - b[2]) / n, (d[1] - b[1] + d[2] - b[2]) / n, (d[1] - b[1] + d[2] - b[2]) / n / 1024, rss
		}' "$IDLE"
	fi
} >"$RESULTS"
log "report written to $RESULTS"
