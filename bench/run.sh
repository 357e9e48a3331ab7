#!/usr/bin/env bash
# Load benchmark of weir against nginx, HAProxy and the smallest fasthttp proxy (bench/floor): one
# command, results in bench/results.md.
#
#   bench/run.sh                      # full run: ROUNDS=3, DURATION=5 (about 14 minutes)
#   ROUNDS=1 DURATION=2 bench/run.sh  # smoke run
#   TLS=1 bench/run.sh                # HTTPS: weir, nginx and HAProxy terminating TLS with one ECDSA
#                                     # P-256 certificate; report in bench/results-tls.md
#
# Settings (environment): ROUNDS (3), DURATION of each measured wrk run in seconds (5), WARMUP wrk run
# before each measured one in seconds (1), CONNS wrk connection counts ("64 256"), IDLE_CONNS idle
# keep-alive connections of the memory test (10000), PROXIES to run (a subset of "weir weir+chain
# nginx HAProxy floor", or floor+pipeline: floor relaying through fasthttp's PipelineClient; the
# report's ratios need weir, weir+chain, nginx and HAProxy), SCENARIO_MATCH
# (an extended regex: only scenarios whose name matches run, e.g. "13 B|POST").
#
# Layout: the proxy under test runs alone on core 0, single-threaded (weir GOMAXPROCS=1, nginx one
# worker, HAProxy nbthread 1); wrk, the fasthttp backend (bench/backend) and the idle-connection client
# (bench/idleconns) share core 1. All proxies keep upstream connections alive and log no access.
# Rounds are interleaved: each round runs every scenario against every proxy once (the proxy order
# rotates from round to round), so drift on the machine spreads over all of them.
#
# Per run it records wrk's req/s and p50/p99 latency; core 0's busy time (user+nice+system+irq+
# softirq+steal jiffies from /proc/stat over the measured run) divided by the completed requests; the
# same for the proxy process alone (utime+stime from /proc/PID/stat, a cross-check that excludes
# anything else scheduled on core 0); and the proxy's peak RSS (VmHWM, reset before each run through
# /proc/PID/clear_refs). Tables give the median and min–max over the rounds. For nginx the measured
# process is the worker. The idle-connection test then restarts each proxy fresh and reports
# (VmRSS with IDLE_CONNS idle connections - VmRSS before) / IDLE_CONNS.
#
# TLS=1 measures HTTPS instead: keep-alive GETs (the handshake amortized away: the cost of TLS records),
# and a handshake scenario where every request says "Connection: close", so that each one pays a new
# TCP connection and a full handshake. wrk resumes sessions when a server allows it, so the TLS configs
# turn resumption off; the report checks with openssl s_client that none resumes. The idle test's
# connections speak TLS too. ROUNDS=0 runs the idle test alone.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=bench/.build
LOGS=$BUILD/logs
TLS=${TLS:-0}
if ((TLS)); then
	RESULTS=${RESULTS:-bench/results-tls.md}
else
	RESULTS=${RESULTS:-bench/results.md} # where the report goes
fi
RUNS=$BUILD/runs.tsv
IDLE=$BUILD/idle.tsv

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-"64 256"}
IDLE_CONNS=${IDLE_CONNS:-10000}

PROXY_CORE=0
LOAD_CORE=1
BACKEND_ADDR=127.0.0.1:18080

# Proxies: name, listening port (fixed in bench/configs). floor is bench/floor, the smallest fasthttp
# proxy: what any proxy on fasthttp's server and client costs on this machine, to calibrate weir by.
SCHEME=http
TLS_SUFFIX="" # of the proxies' config files
IDLE_FLAGS=""
if ((TLS)); then
	SCHEME=https TLS_SUFFIX=-tls IDLE_FLAGS=-tls
	read -r -a PROXIES <<<"${PROXIES:-weir nginx HAProxy}"
	declare -A PORT=([weir]=18443 [nginx]=18453 [HAProxy]=18463)
else
	read -r -a PROXIES <<<"${PROXIES:-weir weir+chain nginx HAProxy floor}"
	declare -A PORT=([weir]=18081 [weir+chain]=18082 [nginx]=18083 [HAProxy]=18084 [floor]=18085 [floor+pipeline]=18086)
fi
((${#PROXIES[@]} > 0)) || { echo "PROXIES names no proxy" >&2; exit 2; }
declare -A listed=()
for proxy in "${PROXIES[@]}"; do
	[[ -n ${PORT[$proxy]:-} ]] || { echo "unknown proxy '$proxy' in PROXIES" >&2; exit 2; }
	[[ -z ${listed[$proxy]:-} ]] || { echo "proxy '$proxy' is listed twice in PROXIES" >&2; exit 2; }
	listed[$proxy]=1
done
ADMIN_PORTS=(18091 18092)

# Scenarios: name|path|expected response body bytes|POST body bytes (empty for GET)|"close" for a new
# connection per request.
SCENARIOS=(
	"GET 13 B|/13|13||"
	"GET 1 KB JSON|/1k.json|1024||"
	"GET 64 KiB|/64k|65536||"
	"POST 4 KiB|/echo|4096|4096|"
)
((TLS)) && SCENARIOS=(
	"HTTPS GET 13 B|/13|13||"
	"HTTPS GET 64 KiB|/64k|65536||"
	"HTTPS handshake + GET 13 B|/13|13||close"
)
SCENARIO_MATCH=${SCENARIO_MATCH:-}
if [[ -n $SCENARIO_MATCH ]]; then
	selected=()
	for scenario in "${SCENARIOS[@]}"; do
		[[ ${scenario%%|*} =~ $SCENARIO_MATCH ]] && selected+=("$scenario")
	done
	((${#selected[@]} > 0)) || { echo "SCENARIO_MATCH '$SCENARIO_MATCH' selects no scenario" >&2; exit 2; }
	SCENARIOS=("${selected[@]}")
fi

source bench/lib.sh
declare -A MEASURE=() # proxy name -> PID whose CPU and memory are measured (nginx: its worker)

start_proxy() {
	local name=$1 logfile="$LOGS/$1.log"
	case $name in
	weir) start "$name" "$PROXY_CORE" "$logfile" env GOMAXPROCS=1 "$BUILD/weir" -config "bench/configs/weir$TLS_SUFFIX.yaml" ;;
	weir+chain) start "$name" "$PROXY_CORE" "$logfile" env GOMAXPROCS=1 "$BUILD/weir" -config bench/configs/weir-chain.yaml ;;
	nginx)
		mkdir -p "$BUILD/nginx"
		start "$name" "$PROXY_CORE" "$logfile" nginx -p "$BUILD/nginx" -e error.log \
			-c "$PWD/bench/configs/nginx$TLS_SUFFIX.conf" -g 'daemon off;'
		;;
	HAProxy) start "$name" "$PROXY_CORE" "$logfile" haproxy -db -f "bench/configs/haproxy$TLS_SUFFIX.cfg" ;;
	floor) start "$name" "$PROXY_CORE" "$logfile" env GOMAXPROCS=1 "$BUILD/floor" -listen "127.0.0.1:${PORT[floor]}" \
		-upstream "$BACKEND_ADDR" ;;
	floor+pipeline) start "$name" "$PROXY_CORE" "$logfile" env GOMAXPROCS=1 "$BUILD/floor" -pipeline \
		-listen "127.0.0.1:${PORT[floor+pipeline]}" -upstream "$BACKEND_ADDR" ;;
	esac
	wait_port "$name" "${PORT[$name]}" "$logfile"
	MEASURE[$name]=${PID[$name]}
	if [[ $name == nginx ]]; then
		MEASURE[$name]=$(nginx_worker "${PID[$name]}")
	fi
}

stop_proxy() {
	stop_pid "${PID[$1]}"
	wait_closed "${PORT[$1]}"
}

# check_proxy NAME: every scenario's URL must answer 200 with the expected body size.
check_proxy() {
	local name=$1 scenario sname path bytes post got
	for scenario in "${SCENARIOS[@]}"; do
		IFS='|' read -r sname path bytes post _ <<<"$scenario"
		local url="$SCHEME://127.0.0.1:${PORT[$name]}$path"
		if [[ -n $post ]]; then
			got=$(head -c "$post" /dev/zero | curl -sS --cacert "$BUILD/tls/cert.pem" --max-time 5 -o /dev/null \
				-w '%{http_code} %{size_download}' -H 'Content-Type: application/octet-stream' --data-binary @- "$url")
		else
			got=$(curl -sS --cacert "$BUILD/tls/cert.pem" --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' "$url")
		fi
		[[ $got == "200 $bytes" ]] || die "$name $sname ($url): got '$got', want '200 $bytes'"
	done
	log "$name answers every scenario with 200 and the expected body size"
}

# ---- measurements ----

# run_wrk PROXY SCENARIO CONNS SECONDS OUTFILE
run_wrk() {
	local proxy=$1 scenario=$2 conns=$3 seconds=$4 out=$5 sname path bytes post close
	IFS='|' read -r sname path bytes post close <<<"$scenario"
	WRK_POST_BYTES=$post WRK_CLOSE=$close taskset -c "$LOAD_CORE" wrk -t1 -c"$conns" -d"${seconds}s" --latency \
		-s bench/wrk.lua "$SCHEME://127.0.0.1:${PORT[$proxy]}$path" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "wrk failed against $proxy ($sname, $conns conns)"; }
}

# measure ROUND PROXY SCENARIO CONNS: one warmup run, one measured run; appends a row to RUNS.
measure() {
	local round=$1 proxy=$2 scenario=$3 conns=$4 pid=${MEASURE[$2]} sname
	sname=${scenario%%|*}
	local out="$LOGS/wrk-r$round-$proxy-${sname// /_}-c$conns.txt"
	run_wrk "$proxy" "$scenario" "$conns" "$WARMUP" /dev/null
	echo 5 >"/proc/$pid/clear_refs" # resets VmHWM to the current RSS
	local core0 proc0 core1 proc1
	core0=$(core_jiffies)
	proc0=$(proc_jiffies "$pid")
	run_wrk "$proxy" "$scenario" "$conns" "$DURATION" "$out"
	core1=$(core_jiffies)
	proc1=$(proc_jiffies "$pid")
	local hwm result
	hwm=$(status_kb "$pid" VmHWM)
	result=$(grep '^RESULT ' "$out") || { cat "$out" >&2; die "no RESULT line from wrk"; }
	# RESULT requests=N duration_us=D errors=E non2xx=S p50_us=P p99_us=Q -> values in that order.
	local requests dur_us errors non2xx p50 p99
	read -r requests dur_us errors non2xx p50 p99 <<<"$(sed 's/^RESULT //; s/[a-z0-9_]*=//g' <<<"$result")"
	((requests > 0)) || die "no request completed against $proxy ($sname, $conns conns)"
	awk -v OFS='\t' -v hz="$(getconf CLK_TCK)" -v round="$round" -v proxy="$proxy" -v sname="$sname" \
		-v conns="$conns" -v n="$requests" -v dur="$dur_us" -v errors="$errors" -v non2xx="$non2xx" \
		-v p50="$p50" -v p99="$p99" -v hwm="$hwm" -v c0="$core0" -v c1="$core1" -v p0="$proc0" -v p1="$proc1" \
		'BEGIN {
			split(c0, a, " "); split(c1, b, " ")
			busy = (b[1] - a[1]) * 1e6 / hz; total = (b[2] - a[2]) * 1e6 / hz
			print round, proxy, sname, conns, n / (dur / 1e6), p50, p99, busy / n,
				(p1 - p0) * 1e6 / hz / n, (total > 0 ? 100 * busy / total : 0), hwm, errors + non2xx
		}' >>"$RUNS"
	log "round $round  $proxy  $sname  c=$conns: $(tail -1 "$RUNS" | cut -f5,8 | awk '{ printf "%.0f req/s, %.2f us/req on core 0", $1, $2 }')"
}

# tls_params PORT: the protocol and cipher a client (OpenSSL) negotiates with the proxy on PORT, and
# whether a second connection offering the first one's session resumes it.
tls_params() {
	local sess="$BUILD/tls/session-$1" first second
	# The pause lets TLS 1.3 session tickets, sent after the handshake, arrive before s_client quits.
	first=$(sleep 0.3 | openssl s_client -connect "127.0.0.1:$1" -alpn http/1.1 -sess_out "$sess" 2>/dev/null |
		awk '/^New, / { sub(/^New, /, ""); print }')
	second=$(sleep 0.3 | openssl s_client -connect "127.0.0.1:$1" -alpn http/1.1 -sess_in "$sess" 2>/dev/null |
		grep -c '^Reused' || true)
	echo "$first; a second connection offering the first one's session resumes it: $( ((second > 0)) && echo yes || echo no)"
}

# idle_test PROXY: fresh proxy, IDLE_CONNS idle keep-alive connections, RSS delta per connection.
idle_test() {
	local proxy=$1 line
	start_proxy "$proxy"
	line=$(taskset -c "$LOAD_CORE" "$BUILD/idleconns" -addr "127.0.0.1:${PORT[$proxy]}" \
		-pid "${MEASURE[$proxy]}" -n "$IDLE_CONNS" -path /13 -body-bytes 13 $IDLE_FLAGS) ||
		die "idle-connection test failed against $proxy"
	log "idle $proxy: $line"
	printf '%s\t%s\n' "$proxy" "$line" >>"$IDLE"
	stop_proxy "$proxy"
}

# ---- setup ----

for tool in wrk nginx haproxy; do
	if ! command -v "$tool" >/dev/null; then
		log "installing wrk, nginx and haproxy"
		apt-get update && apt-get install -y wrk nginx haproxy
		break
	fi
done
for tool in taskset curl go; do
	command -v "$tool" >/dev/null || die "$tool is required"
done
(($(nproc) >= 2)) || die "needs 2 cores (proxy on core $PROXY_CORE, load on core $LOAD_CORE)"

# Each side of the idle test holds IDLE_CONNS descriptors.
raise_nofile $((IDLE_CONNS + 1000))

for port in "${PORT[@]}" "${ADMIN_PORTS[@]}" "${BACKEND_ADDR##*:}"; do
	! port_is_open "$port" || die "port $port is already in use"
done

rm -rf "$BUILD"
mkdir -p "$LOGS"
mkdir -p "$BUILD/tls"
# One ECDSA P-256 certificate for every proxy; curl's checks trust it as its own CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
	-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$BUILD/tls/key.pem" -out "$BUILD/tls/cert.pem" 2>/dev/null
cat "$BUILD/tls/cert.pem" "$BUILD/tls/key.pem" >"$BUILD/tls/combined.pem" # HAProxy's crt form
log "building weir, the backend, the idle-connection client and the floor proxy"
go build -o "$BUILD/weir" ./cmd/weir
go build -o "$BUILD/backend" ./bench/backend
go build -o "$BUILD/idleconns" ./bench/idleconns
go build -o "$BUILD/floor" ./bench/floor

start backend "$LOAD_CORE" "$LOGS/backend.log" env GOMAXPROCS=1 "$BUILD/backend" -listen "$BACKEND_ADDR"
wait_port backend "${BACKEND_ADDR##*:}" "$LOGS/backend.log"
declare -A NEGOTIATED=()
for proxy in "${PROXIES[@]}"; do
	start_proxy "$proxy"
	check_proxy "$proxy"
	((TLS)) && NEGOTIATED[$proxy]=$(tls_params "${PORT[$proxy]}")
done

# ---- load rounds ----

: >"$RUNS"
started_at=$(date +%s)
for ((round = 1; round <= ROUNDS; round++)); do
	# Rotate the proxy order by one each round.
	offset=$(((round - 1) % ${#PROXIES[@]}))
	order=("${PROXIES[@]:offset}" "${PROXIES[@]:0:offset}")
	for scenario in "${SCENARIOS[@]}"; do
		for conns in $CONNS; do
			for proxy in "${order[@]}"; do
				measure "$round" "$proxy" "$scenario" "$conns"
			done
		done
	done
done
for proxy in "${PROXIES[@]}"; do
	stop_proxy "$proxy"
done

# ---- idle keep-alive connections (IDLE_CONNS=0 skips them) ----

: >"$IDLE"
if ((IDLE_CONNS > 0)); then
	for proxy in "${PROXIES[@]}"; do
		idle_test "$proxy"
	done
fi
log "measurements took $(($(date +%s) - started_at)) s"

# ---- report ----

weir_version="$("$BUILD/weir" version) at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
{
	if ((TLS)); then echo "# weir TLS benchmark"; else echo "# weir load benchmark"; fi
	echo
	echo "Generated by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'): ROUNDS=$ROUNDS, DURATION=${DURATION}s (after a ${WARMUP}s warmup), connections $CONNS, IDLE_CONNS=$IDLE_CONNS."
	echo
	echo "## Machine"
	echo
	echo "| | |"
	echo "|---|---|"
	echo "| cores (nproc) | $(nproc) |"
	echo "| CPU | $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) |"
	echo "| kernel | $(uname -sr) |"
	echo "| weir | $weir_version |"
	echo "| nginx | $(nginx -v 2>&1 | sed 's/^nginx version: //') |"
	echo "| HAProxy | $(haproxy -v | head -1 | awk '{ print $3 }') |"
	echo "| wrk | $(wrk -v 2>&1 | head -1 | awk '{ print $2 }') |"
	echo "| OpenSSL (wrk, nginx, HAProxy) | $(openssl version | awk '{ print $2 }') |"
	echo "| Go | $(go version | awk '{ print $3 }') |"
	echo
	echo "## Method"
	echo
	echo "The proxy under test runs on core 0, single-threaded (weir \`GOMAXPROCS=1\`, nginx \`worker_processes 1\`,"
	echo "HAProxy \`nbthread 1\`); \`wrk -t1\` and the fasthttp backend share core 1. All keep upstream connections"
	echo "alive and log no access (configs in \`bench/configs/\`). weir+chain adds weir's default filter chain: a"
	echo "rate_limit that never rejects, a circuit_breaker and a request-header rewrite. floor (bench/floor) is the"
	echo "smallest fasthttp proxy, with fasthttp's defaults (4 KiB buffers, no timeouts): the library's own cost."
	echo "Each round runs every scenario against every proxy once, interleaved; cells give the median over the"
	echo "rounds and (min–max)."
	echo "**core-0 CPU/req** is core 0's busy time (user+nice+system+irq+softirq+steal in /proc/stat, which"
	echo "includes the kernel's loopback TCP work) over the measured run divided by completed requests;"
	echo "**process CPU/req** is the proxy process's own utime+stime per request (nginx: the worker), a"
	echo "cross-check that excludes anything else on core 0. **core-0 busy** near 100 % means the proxy was the"
	echo "bottleneck; below that, core 1 (wrk and the backend) limited req/s. **Peak RSS** is VmHWM, reset"
	echo "before each run. **errors** counts socket errors and non-2xx answers over all rounds."
	if ((TLS)); then
		echo
		echo "HTTPS: every proxy terminates TLS with the same self-signed ECDSA P-256 certificate (bench/.build/tls)"
		echo "and proxies plain HTTP to the backend. In the handshake scenario each request carries"
		echo "\`Connection: close\`: wrk opens a new TCP connection and does a full handshake for every request, so"
		echo "CPU/req there is CPU per handshake and req/s is handshakes per second on one core. Session resumption"
		echo "is off in every proxy's config: wrk resumes sessions when allowed (seen in nginx's \$ssl_session_reused),"
		echo "which would make that scenario measure resumptions."
		echo
		for proxy in "${PROXIES[@]}"; do
			echo "- $proxy: ${NEGOTIATED[$proxy]}"
		done
	fi
	echo
	awk -F'\t' -f bench/stats.awk -f - "$RUNS" <<'AWK'
{
	key = $3 SUBSEP $4 SUBSEP $2
	if (!(key in seen)) { seen[key] = 1; keys[++nkeys] = key }
	if (!(($3, $4) in seen_sc)) { seen_sc[$3, $4] = 1; scs[++nscs] = $3 SUBSEP $4 }
	for (c = 5; c <= 11; c++) vals[key, c] = vals[key, c] " " $c
	inround[key, $1, 5] = $5; inround[key, $1, 8] = $8; rounds[$1] = 1
	errors[key] += $12
}
END {
	print "## Throughput, latency, CPU and memory"
	print ""
	print "| scenario | conns | proxy | req/s | p50 ms | p99 ms | core-0 CPU/req µs | process CPU/req µs | core-0 busy % | peak RSS MiB | errors |"
	print "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= nkeys; i++) {
		split(keys[i], k, SUBSEP)
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %s | %d |\n", k[1], k[2], k[3],
			stat(keys[i], 5, "%.0f", 1), stat(keys[i], 6, "%.2f", 1000), stat(keys[i], 7, "%.2f", 1000),
			stat(keys[i], 8, "%.1f", 1), stat(keys[i], 9, "%.1f", 1), med(keys[i], 10),
			stat(keys[i], 11, "%.1f", 1024), errors[keys[i]]
	}
	print ""
	print "## Ratios (medians of per-round ratios; CPU below 1 and req/s above 1 favour weir)"
	print ""
	print "Each cell is the median over the rounds of one proxy's figure divided by the other's in the same round"
	print "(the two ran within a minute of each other), so a slow spell of the machine that lasts a round"
	print "cancels out. floor is bench/floor, the smallest fasthttp proxy: weir ÷ floor is what weir adds to the"
	print "library it is built on."
	print ""
	print "| scenario | conns | CPU/req weir ÷ nginx | CPU/req weir ÷ HAProxy | CPU/req weir+chain ÷ nginx | CPU/req weir+chain ÷ HAProxy | CPU/req weir ÷ floor | CPU/req floor ÷ nginx | req/s weir ÷ nginx | req/s weir ÷ HAProxy | req/s weir+chain ÷ nginx | req/s weir+chain ÷ HAProxy |"
	print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= nscs; i++) {
		split(scs[i], s, SUBSEP)
		w = scs[i] SUBSEP "weir"; c = scs[i] SUBSEP "weir+chain"
		n = scs[i] SUBSEP "nginx"; h = scs[i] SUBSEP "HAProxy"; f = scs[i] SUBSEP "floor"
		printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s[1], s[2],
			rratio(w, n, 8), rratio(w, h, 8), rratio(c, n, 8), rratio(c, h, 8), rratio(w, f, 8), rratio(f, n, 8),
			rratio(w, n, 5), rratio(w, h, 5), rratio(c, n, 5), rratio(c, h, 5)
	}
}
AWK
	echo
	if ((IDLE_CONNS > 0)); then
		echo "## Memory per idle keep-alive connection"
		echo
		echo "Each proxy freshly started; $IDLE_CONNS connections each serve one GET /13 and stay open; after 2 s idle,"
		echo "(VmRSS after − VmRSS before) / $IDLE_CONNS (nginx: the worker). Every connection is checked to still serve"
		echo "a request afterwards."
		echo
		echo "| proxy | RSS before MiB | RSS with idle connections MiB | bytes per idle connection |"
		echo "|---|---:|---:|---:|"
		awk -F'\t' '{
			n = split($2, kv, " ")
			for (i = 1; i <= n; i++) { split(kv[i], p, "="); v[p[1]] = p[2] }
			printf "| %s | %.1f | %.1f | %d |\n", $1, v["rss_before_kb"] / 1024, v["rss_after_kb"] / 1024, v["bytes_per_conn"]
		}' "$IDLE"
	fi
} >"$RESULTS"
log "wrote $RESULTS"
