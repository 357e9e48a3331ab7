#!/usr/bin/env bash
# Streaming benchmark of weir against nginx and HAProxy: Server-Sent Events latency, a 1 GiB download,
# WebSocket echo, and the memory that slow downloads and idle streams hold. One command, results in
# bench/results-streams.md.
#
#   bench/streams.sh                 # ROUNDS=3 (about 8 minutes)
#   ROUNDS=1 bench/streams.sh        # smoke run
#
# Settings (environment): ROUNDS (3), PROXIES (a subset of "weir nginx HAProxy"), SLOW_CONNS (100),
# SLOW_BYTES (100000000) and SLOW_RATE (4000000 bytes/s) of the slow-download test, IDLE_STREAMS (1000)
# of the idle tests, WS_SECONDS (5) of each WebSocket run.
#
# Layout as in bench/run.sh: the proxy under test runs alone on core 0, single-threaded (weir
# GOMAXPROCS=1, nginx one worker, HAProxy nbthread 1); the backend and the clients (both bench/streams)
# share core 1. Rounds are interleaved and the proxy order rotates from round to round.
#
# Scenarios, each checked by its client (every event, byte and echo must arrive):
#   SSE 1 stream       one stream of 500 events 2 ms apart
#   SSE 1000 streams   1,000 concurrent streams of 31 events 200 ms apart (5,000 events/s for 6 s;
#                      the CPU figure includes setting up the 1,000 streams, spread over 30,000 events)
#   download 1 GiB     one 1 GiB response with Content-Length, read as fast as the client can
#   WebSocket echo     64 WebSockets, each sending a 128-byte text message and waiting for its echo,
#                      for WS_SECONDS
# Latency of an event: the client's clock when it has parsed the event minus the time the backend
# wrote into it just before writing it (one machine, one clock). Each stream's first event is left
# out: it shares its moment with the connection's setup (1,000 of them at once), which is not what
# the figure is about. "direct" is the client talking to the
# backend itself: the latency floor of this machine.
#
# Per run: core 0's busy time from /proc/stat over the run (which includes the kernel's loopback TCP
# work), the proxy process's own utime+stime, and its peak RSS (VmHWM, reset before the run). The
# memory tests then start each proxy fresh for each of: SLOW_CONNS concurrent downloads of SLOW_BYTES
# whose clients read at SLOW_RATE (peak RSS), IDLE_STREAMS idle keep-alive connections (bench/idleconns),
# idle SSE streams and idle WebSockets ((VmRSS with them open - VmRSS before) / IDLE_STREAMS).
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=bench/.build-streams
LOGS=$BUILD/logs
RESULTS=${RESULTS:-bench/results-streams.md}
RUNS=$BUILD/runs.tsv
MEM=$BUILD/memory.tsv

ROUNDS=${ROUNDS:-3}
SLOW_CONNS=${SLOW_CONNS:-100}
SLOW_BYTES=${SLOW_BYTES:-100000000}
SLOW_RATE=${SLOW_RATE:-4000000}
IDLE_STREAMS=${IDLE_STREAMS:-1000}
WS_SECONDS=${WS_SECONDS:-5}

PROXY_CORE=0
LOAD_CORE=1
BACKEND_PORT=18180
read -r -a PROXIES <<<"${PROXIES:-weir nginx HAProxy}"
declare -A PORT=([weir]=18181 [nginx]=18183 [HAProxy]=18184 [direct]=$BACKEND_PORT)
for proxy in "${PROXIES[@]}"; do
	[[ -n ${PORT[$proxy]:-} && $proxy != direct ]] || { echo "unknown proxy '$proxy' in PROXIES" >&2; exit 2; }
done
ADMIN_PORT=18191

source bench/lib.sh
declare -A MEASURE=() # proxy name -> PID whose CPU and memory are measured (nginx: its worker)

start_proxy() {
	local name=$1 logfile="$LOGS/$1.log"
	case $name in
	weir) start "$name" "$PROXY_CORE" "$logfile" env GOMAXPROCS=1 "$BUILD/weir" -config bench/configs/weir-streams.yaml ;;
	nginx)
		mkdir -p "$BUILD/nginx"
		start "$name" "$PROXY_CORE" "$logfile" nginx -p "$BUILD/nginx" -e error.log \
			-c "$PWD/bench/configs/nginx-streams.conf" -g 'daemon off;'
		;;
	HAProxy) start "$name" "$PROXY_CORE" "$logfile" haproxy -db -f bench/configs/haproxy-streams.cfg ;;
	esac
	wait_port "$name" "${PORT[$name]}" "$logfile"
	MEASURE[$name]=${PID[$name]}
	[[ $name != nginx ]] || MEASURE[$name]=$(nginx_worker "${PID[$name]}")
}

stop_proxy() {
	stop_pid "${PID[$1]}"
	wait_closed "${PORT[$1]}"
}

# client ARGS...: runs bench/streams on the load core and prints its RESULT line without "RESULT ".
client() {
	local out
	out=$(taskset -c "$LOAD_CORE" "$BUILD/streams" "$@" 2>&1) || { echo "$out" >&2; return 1; }
	grep '^RESULT ' <<<"$out" | sed 's/^RESULT //'
}

# Scenarios: name|client arguments after the URL's path (the URL is added per proxy).
SCENARIOS=(
	"SSE 1 stream|/sse|sse -streams 1 -events 500 -interval 2ms"
	"SSE 1000 streams|/sse|sse -streams 1000 -events 31 -interval 200ms"
	"download 1 GiB|/bytes|download -size 1073741824"
	"WebSocket echo|/ws|ws -conns 64 -size 128 -duration ${WS_SECONDS}s"
)

# measure ROUND PROXY SCENARIO: one run; appends "round proxy scenario result core_us proc_us hwm_kb"
# to RUNS (result: the client's key=value pairs, joined by commas).
measure() {
	local round=$1 proxy=$2 scenario=$3 sname path args scheme=http
	IFS='|' read -r sname path args <<<"$scenario"
	[[ $path == /ws ]] && scheme=ws
	local pid=${MEASURE[$proxy]:-} core0 core1 proc0=0 proc1=0 hwm=0 result
	[[ -z $pid ]] || echo 5 >"/proc/$pid/clear_refs"
	core0=$(core_jiffies)
	[[ -z $pid ]] || proc0=$(proc_jiffies "$pid")
	# shellcheck disable=SC2086 # args is a word list
	result=$(client ${args%% *} -url "$scheme://127.0.0.1:${PORT[$proxy]}$path" ${args#* }) ||
		die "$sname failed through $proxy"
	core1=$(core_jiffies)
	if [[ -n $pid ]]; then
		proc1=$(proc_jiffies "$pid")
		hwm=$(status_kb "$pid" VmHWM)
	fi
	awk -v OFS='\t' -v hz="$(getconf CLK_TCK)" -v round="$round" -v proxy="$proxy" -v sname="$sname" \
		-v result="${result// /,}" -v c0="$core0" -v c1="$core1" -v p0="$proc0" -v p1="$proc1" -v hwm="$hwm" \
		'BEGIN { split(c0, a, " "); split(c1, b, " ")
			print round, proxy, sname, result, (b[1] - a[1]) * 1e6 / hz, (p1 - p0) * 1e6 / hz, hwm }' >>"$RUNS"
	log "round $round  $proxy  $sname: $result"
}

# memory PROXY: the slow-download and idle tests, each against a freshly started proxy.
memory() {
	local proxy=$1 url="http://127.0.0.1:${PORT[$1]}" line before
	start_proxy "$proxy"
	before=$(status_kb "${MEASURE[$proxy]}" VmRSS)
	line=$(client download -url "$url/bytes" -size "$SLOW_BYTES" -conns "$SLOW_CONNS" -rate "$SLOW_RATE") ||
		die "slow downloads failed through $proxy"
	printf '%s\tslow\t%s,rss_before_kb=%s,hwm_kb=%s\n' "$proxy" "${line// /,}" "$before" \
		"$(status_kb "${MEASURE[$proxy]}" VmHWM)" >>"$MEM"
	log "memory $proxy slow downloads: $(tail -1 "$MEM" | cut -f3)"
	stop_proxy "$proxy"

	start_proxy "$proxy"
	line=$(taskset -c "$LOAD_CORE" "$BUILD/idleconns" -addr "127.0.0.1:${PORT[$proxy]}" -pid "${MEASURE[$proxy]}" \
		-n "$IDLE_STREAMS" -path '/bytes?size=13' -body-bytes 13) || die "idle keep-alive test failed through $proxy"
	# idleconns prints conns=N ... bytes_per_conn=C: named like the streams client's fields.
	line=${line/bytes_per_conn/bytes_per_stream}
	printf '%s\tkeepalive\t%s\n' "$proxy" "${line// /,}" >>"$MEM"
	stop_proxy "$proxy"

	local kind path
	for kind in sse ws; do
		path=/sse
		[[ $kind == ws ]] && url="ws://127.0.0.1:${PORT[$proxy]}" path=/ws
		start_proxy "$proxy"
		line=$(client idle -url "$url$path" -kind "$kind" -n "$IDLE_STREAMS" -pid "${MEASURE[$proxy]}") ||
			die "idle $kind test failed through $proxy"
		printf '%s\t%s\t%s\n' "$proxy" "$kind" "${line// /,}" >>"$MEM"
		log "memory $proxy idle $kind: $line"
		stop_proxy "$proxy"
	done
}

# ---- setup ----

for tool in nginx haproxy; do
	if ! command -v "$tool" >/dev/null; then
		log "installing nginx and haproxy"
		apt-get update && apt-get install -y nginx haproxy
		break
	fi
done
for tool in taskset go; do
	command -v "$tool" >/dev/null || die "$tool is required"
done
(($(nproc) >= 2)) || die "needs 2 cores (proxy on core $PROXY_CORE, load on core $LOAD_CORE)"
# The 1,000-stream scenarios hold a client and an upstream descriptor per stream on each side.
raise_nofile $((4 * IDLE_STREAMS + 1000))
for port in "${PORT[@]}" "$ADMIN_PORT"; do
	! port_is_open "$port" || die "port $port is already in use"
done

rm -rf "$BUILD"
mkdir -p "$LOGS"
log "building weir, the streams backend and clients, and the idle-connection client"
go build -o "$BUILD/weir" ./cmd/weir
go build -o "$BUILD/streams" ./bench/streams
go build -o "$BUILD/idleconns" ./bench/idleconns

start backend "$LOAD_CORE" "$LOGS/backend.log" env GOMAXPROCS=1 "$BUILD/streams" backend -listen "127.0.0.1:$BACKEND_PORT"
wait_port backend "$BACKEND_PORT" "$LOGS/backend.log"
for proxy in "${PROXIES[@]}"; do
	start_proxy "$proxy"
	# A short run of each kind: every proxy relays every kind of stream before anything is measured.
	client sse -url "http://127.0.0.1:${PORT[$proxy]}/sse" -streams 2 -events 5 -interval 1ms >/dev/null ||
		die "$proxy does not relay an event stream"
	client download -url "http://127.0.0.1:${PORT[$proxy]}/bytes" -size 10000000 >/dev/null ||
		die "$proxy does not relay a download"
	client ws -url "ws://127.0.0.1:${PORT[$proxy]}/ws" -conns 2 -duration 200ms >/dev/null ||
		die "$proxy does not relay a WebSocket"
	log "$proxy relays SSE, a download and a WebSocket"
done

# ---- rounds ----

: >"$RUNS"
started_at=$(date +%s)
for ((round = 1; round <= ROUNDS; round++)); do
	offset=$(((round - 1) % ${#PROXIES[@]}))
	order=("${PROXIES[@]:offset}" "${PROXIES[@]:0:offset}")
	for scenario in "${SCENARIOS[@]}"; do
		[[ $scenario != SSE* ]] || measure "$round" direct "$scenario"
		for proxy in "${order[@]}"; do
			measure "$round" "$proxy" "$scenario"
		done
	done
done
for proxy in "${PROXIES[@]}"; do
	stop_proxy "$proxy"
done

# ---- memory ----

: >"$MEM"
for proxy in "${PROXIES[@]}"; do
	memory "$proxy"
done
log "measurements took $(($(date +%s) - started_at)) s"

# ---- report ----

weir_version="$("$BUILD/weir" version) at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
{
	echo "# weir streaming benchmark"
	echo
	echo "Generated by \`bench/streams.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'): ROUNDS=$ROUNDS, WS_SECONDS=$WS_SECONDS, SLOW_CONNS=$SLOW_CONNS, SLOW_BYTES=$SLOW_BYTES, SLOW_RATE=$SLOW_RATE, IDLE_STREAMS=$IDLE_STREAMS."
	echo
	echo "| | |"
	echo "|---|---|"
	echo "| cores (nproc) | $(nproc) |"
	echo "| CPU | $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) |"
	echo "| kernel | $(uname -sr) |"
	echo "| weir | $weir_version |"
	echo "| nginx | $(nginx -v 2>&1 | sed 's/^nginx version: //') |"
	echo "| HAProxy | $(haproxy -v | head -1 | awk '{ print $3 }') |"
	echo "| Go | $(go version | awk '{ print $3 }') |"
	echo
	echo "Method: see the header of bench/streams.sh; configs in bench/configs/*-streams.*. Each proxy runs on"
	echo "core 0, single-threaded; the backend and clients share core 1. Cells give the median over the rounds"
	echo "and (min–max). CPU figures are core 0's busy time (kernel loopback work included) per unit; the"
	echo "process column is the proxy's own utime+stime, a cross-check."
	echo
	awk -F'\t' -f bench/stats.awk -f - "$RUNS" <<'AWK'
# Columns: round proxy scenario result core_us proc_us hwm_kb; result is key=value pairs joined by commas.
{
	key = $3 SUBSEP $2
	if (!(key in seen)) { seen[key] = 1; keys[++nkeys] = key }
	n = split($4, kv, ",")
	delete r
	for (i = 1; i <= n; i++) { split(kv[i], p, "="); r[p[1]] = p[2] }
	if ($3 ~ /^SSE/) { units = r["events"]; a = r["p50_us"]; b = r["p99_us"]; c = r["max_us"] }
	else if ($3 ~ /^download/) { units = r["bytes"] / 2^30; a = r["gbytes_per_s"]; b = 0; c = 0 }
	else { units = r["echoes"]; a = r["echoes_per_s"]; b = 0; c = 0 }
	# 5: figure a, 6: b, 7: c, 8: core-0 µs per unit, 9: process µs per unit, 10: peak RSS KiB
	vals[key, 5] = vals[key, 5] " " a; vals[key, 6] = vals[key, 6] " " b; vals[key, 7] = vals[key, 7] " " c
	vals[key, 8] = vals[key, 8] " " $5 / units; vals[key, 9] = vals[key, 9] " " $6 / units
	vals[key, 10] = vals[key, 10] " " $7
}
function cpu(key, col, fmt, scale) { split(key, k, SUBSEP); return k[2] == "direct" ? "–" : stat(key, col, fmt, scale) }
function rss(key) { split(key, k, SUBSEP); return k[2] == "direct" ? "–" : stat(key, 10, "%.1f", 1024) }
function ratios(sc, col, label) {
	printf "| %s | %s | %s | %s |\n", sc, label, ratio(sc SUBSEP "weir", sc SUBSEP "nginx", col), ratio(sc SUBSEP "weir", sc SUBSEP "HAProxy", col)
}
END {
	print "## Server-Sent Events: latency from the upstream's write to the client"
	print ""
	print "| scenario | proxy | p50 ms | p99 ms | max ms | core-0 CPU/event µs | process CPU/event µs | peak RSS MiB |"
	print "|---|---|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= nkeys; i++) {
		split(keys[i], k, SUBSEP)
		if (k[1] !~ /^SSE/) continue
		printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", k[1], k[2], stat(keys[i], 5, "%.2f", 1000),
			stat(keys[i], 6, "%.2f", 1000), stat(keys[i], 7, "%.2f", 1000), cpu(keys[i], 8, "%.1f", 1),
			cpu(keys[i], 9, "%.1f", 1), rss(keys[i])
	}
	print ""
	print "## Download of 1 GiB (Content-Length), one client reading as fast as it can"
	print ""
	print "| proxy | GB/s | core-0 CPU s/GiB | process CPU s/GiB | peak RSS MiB |"
	print "|---|---:|---:|---:|---:|"
	for (i = 1; i <= nkeys; i++) {
		split(keys[i], k, SUBSEP)
		if (k[1] !~ /^download/) continue
		printf "| %s | %s | %s | %s | %s |\n", k[2], stat(keys[i], 5, "%.2f", 1), stat(keys[i], 8, "%.3f", 1e6),
			stat(keys[i], 9, "%.3f", 1e6), rss(keys[i])
	}
	print ""
	print "## WebSocket echo: 64 connections, 128-byte messages"
	print ""
	print "An echo is one message each way. Echoes per core-second = 10⁶ ÷ core-0 CPU per echo: what one core of"
	print "the proxy would relay if it were the only limit."
	print ""
	print "| proxy | echoes/s | core-0 CPU/echo µs | echoes per core-second | process CPU/echo µs | peak RSS MiB |"
	print "|---|---:|---:|---:|---:|---:|"
	for (i = 1; i <= nkeys; i++) {
		split(keys[i], k, SUBSEP)
		if (k[1] !~ /^WebSocket/) continue
		printf "| %s | %s | %s | %.0f | %s | %s |\n", k[2], stat(keys[i], 5, "%.0f", 1), stat(keys[i], 8, "%.2f", 1),
			1e6 / med(keys[i], 8), stat(keys[i], 9, "%.2f", 1), rss(keys[i])
	}
	print ""
	print "## Ratios (medians; below 1 favours weir)"
	print ""
	print "| scenario | figure | weir ÷ nginx | weir ÷ HAProxy |"
	print "|---|---|---:|---:|"
	ratios("SSE 1 stream", 6, "p99 latency")
	ratios("SSE 1000 streams", 6, "p99 latency")
	ratios("SSE 1000 streams", 8, "core-0 CPU per event")
	ratios("download 1 GiB", 8, "core-0 CPU per GiB")
	ratios("WebSocket echo", 8, "core-0 CPU per echo")
}
AWK
	echo
	echo "## Memory: slow downloads and idle streams"
	echo
	echo "Each line a freshly started proxy (nginx: its worker). Slow downloads: $SLOW_CONNS concurrent downloads of"
	echo "$SLOW_BYTES bytes whose clients read at $SLOW_RATE bytes/s, peak RSS (VmHWM) over the test. Idle: $IDLE_STREAMS"
	echo "keep-alive connections that served one GET (bench/idleconns), SSE streams that received their first"
	echo "event, or WebSockets that echoed once, all then silent for 2 s: (VmRSS with them open − VmRSS before) ÷"
	echo "$IDLE_STREAMS. Every stream is checked to still be open (WebSockets: to echo) afterwards."
	echo
	echo "| proxy | slow downloads: peak RSS MiB | idle keep-alive B/conn | idle SSE B/stream | idle WebSocket B/stream | SSE ÷ keep-alive | WebSocket ÷ keep-alive |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' '{
		n = split($3, kv, ",")
		for (i = 1; i <= n; i++) { split(kv[i], f, "="); v[$1, $2, f[1]] = f[2] }
		if (!($1 in seen)) { seen[$1] = 1; order[++np] = $1 }
	}
	END {
		for (i = 1; i <= np; i++) {
			p = order[i]; ka = v[p, "keepalive", "bytes_per_stream"]
			printf "| %s | %.1f | %d | %d | %d | %.2f | %.2f |\n", p, v[p, "slow", "hwm_kb"] / 1024, ka,
				v[p, "sse", "bytes_per_stream"], v[p, "ws", "bytes_per_stream"],
				(ka > 0 ? v[p, "sse", "bytes_per_stream"] / ka : 0), (ka > 0 ? v[p, "ws", "bytes_per_stream"] / ka : 0)
		}
	}' "$MEM"
} >"$RESULTS"
log "wrote $RESULTS"
