#!/usr/bin/env bash
# Global rate limit benchmark: weir's rate_limit with scope: global (the bucket in Redis, tokens taken
# in leases and spent locally) against scope: local (one in-process bucket), on GET /13. Results in
# bench/results-globallimit.md.
#
#   bench/globallimit.sh                      # ROUNDS=3, DURATION=5 (about 3 minutes)
#   ROUNDS=1 DURATION=2 bench/globallimit.sh  # smoke run
#
# Scenarios (bench/configs/weir-limit-NAME.yaml, one route "limited", key: route):
#   local              scope local, 100000/s burst 100000: never refuses at what one core serves
#   global             the same limit, scope global, Redis up
#   global-over        scope global, 5000/s burst 5000: wrk offers far more, so most answers are 429
#   global-redis-down  scope global, 100000/s, Redis address 127.0.0.1:18399 where nothing listens:
#                      every request decided locally (on_redis_error: local)
#
# Layout and method as in bench/run.sh: each weir alone on core 0, GOMAXPROCS=1; wrk, the backend and
# redis-server (started here, no persistence) on core 1; a warm-up wrk run before each measured one;
# rounds interleaved (the scenario order rotates each round); medians (min–max). CPU per request is
# core 0's busy time over the measured run divided by requests. Redis round trips per request and
# requests decided without Redis come from weir's /metrics, scraped just before and after each
# measured run (weir_rate_limit_redis_leases_total, weir_rate_limit_redis_unavailable_total). The
# global-over runs use bench/wrk-status.lua, which tallies 2xx and 429 answers; the others use
# bench/wrk.lua and must see no non-2xx answer. Any 5xx answer (wrk's tally or weir's
# weir_requests_total{code="5xx"}) stops the script.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=bench/.build-globallimit
LOGS=$BUILD/logs
RESULTS=${RESULTS:-bench/results-globallimit.md}
RUNS=$BUILD/runs.tsv
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-64}
PROXY_CORE=0
LOAD_CORE=1
BACKEND_PORT=18080
REDIS_PORT=18379
DEAD_REDIS_PORT=18399 # global-redis-down's Redis address: nothing may listen there
URL_PATH=/13
SCENARIOS=(local global global-over global-redis-down)
declare -A PORT=([local]=18481 [global]=18482 [global-over]=18483 [global-redis-down]=18484)
declare -A ADMIN=([local]=18491 [global]=18492 [global-over]=18493 [global-redis-down]=18494)
# weir_redis_up expected while each runs (local has no redis block: 0).
declare -A REDIS_UP=([local]=0 [global]=1 [global-over]=1 [global-redis-down]=0)

source bench/lib.sh

start_weir() {
	local name=$1 logfile="$LOGS/weir-$1.log"
	start "$name" "$PROXY_CORE" "$logfile" env GOMAXPROCS=1 "$BUILD/weir" -config "bench/configs/weir-limit-$name.yaml"
	wait_port "$name" "${PORT[$name]}" "$logfile"
}

# check_weir NAME: one GET answers 200 with the backend's 13 bytes, and weir_redis_up is as expected
# (Redis is connected to, or found unreachable, asynchronously: up to 5 s).
check_weir() {
	local name=$1 got i up
	got=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:${PORT[$name]}$URL_PATH")
	[[ $got == "200 13" ]] || die "$name: GET $URL_PATH answered '$got', want '200 13'"
	for ((i = 0; i < 50; i++)); do
		scrape "$name" "$BUILD/metrics"
		up=$(metric "$BUILD/metrics" weir_redis_up)
		[[ $up == "${REDIS_UP[$name]}" ]] && break
		sleep 0.1
	done
	[[ $up == "${REDIS_UP[$name]}" ]] || die "$name: weir_redis_up is $up, want ${REDIS_UP[$name]}"
	log "$name answers 200; weir_redis_up $up"
}

# measure ROUND NAME: a warm-up run, then a measured one; appends a row to RUNS.
measure() {
	local round=$1 name=$2 script=bench/wrk.lua
	local url="http://127.0.0.1:${PORT[$name]}$URL_PATH" out="$LOGS/wrk-r$round-$name.txt"
	[[ $name == global-over ]] && script=bench/wrk-status.lua
	taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d"${WARMUP}s" -s "$script" "$url" >/dev/null ||
		die "wrk warm-up failed against $name"
	local m0="$BUILD/m0" m1="$BUILD/m1" core0 core1 proc0 proc1
	scrape "$name" "$m0"
	core0=$(core_jiffies)
	proc0=$(proc_jiffies "${PID[$name]}")
	taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$script" "$url" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "wrk failed against $name"; }
	core1=$(core_jiffies)
	proc1=$(proc_jiffies "${PID[$name]}")
	scrape "$name" "$m1"
	local result requests dur_us errors non2xx p50 p99 s2xx s429 sother
	result=$(grep '^RESULT ' "$out") || { cat "$out" >&2; die "no RESULT line from wrk against $name"; }
	read -r requests dur_us errors non2xx p50 p99 s2xx s429 sother <<<"$(sed 's/^RESULT //; s/[a-z0-9_]*=//g' <<<"$result")"
	((requests > 0)) || die "$name: no request completed"
	((errors == 0)) || die "$name: $errors socket errors (see $out)"
	if [[ $name == global-over ]]; then
		((sother == 0)) || die "$name: $sother answers neither 2xx nor 429 (see $out)"
	else
		((non2xx == 0)) || die "$name: $non2xx non-2xx answers (see $out)"
		s2xx=$requests s429=0
	fi
	local d5xx leases unavail up
	d5xx=$(($(metric "$m1" weir_requests_total 'route="limited"' 'code="5xx"') - $(metric "$m0" weir_requests_total 'route="limited"' 'code="5xx"')))
	((d5xx == 0)) || die "$name: weir counted $d5xx 5xx answers during the run"
	leases=$(($(metric "$m1" weir_rate_limit_redis_leases_total 'route="limited"') - $(metric "$m0" weir_rate_limit_redis_leases_total 'route="limited"')))
	unavail=$(($(metric "$m1" weir_rate_limit_redis_unavailable_total 'route="limited"') - $(metric "$m0" weir_rate_limit_redis_unavailable_total 'route="limited"')))
	up=$(metric "$m1" weir_redis_up)
	[[ $up == "${REDIS_UP[$name]}" ]] || die "$name: weir_redis_up is $up after the run, want ${REDIS_UP[$name]}"
	# round name req/s cpu_us p50_us p99_us leases/req unavailable/req 2xx/s 429_share busy_% requests leases unavailable
	# process_cpu_us
	awk -v OFS='\t' -v hz="$(getconf CLK_TCK)" -v r="$round" -v p="$name" -v n="$requests" -v d="$dur_us" \
		-v p50="$p50" -v p99="$p99" -v leases="$leases" -v unavail="$unavail" -v s2xx="$s2xx" -v s429="$s429" \
		-v c0="$core0" -v c1="$core1" -v p0="$proc0" -v p1="$proc1" 'BEGIN { split(c0, a, " "); split(c1, b, " ")
			busy = (b[1] - a[1]) * 1e6 / hz; total = (b[2] - a[2]) * 1e6 / hz; secs = d / 1e6
			print r, p, n / secs, busy / n, p50, p99, leases / n, unavail / n, s2xx / secs, 100 * s429 / n,
				(total > 0 ? 100 * busy / total : 0), n, leases, unavail, (p1 - p0) * 1e6 / hz / n }' >>"$RUNS"
	log "round $round $name: $(tail -1 "$RUNS" | awk -F'\t' '{ printf "%.0f req/s, %.2f us/req (weir %.2f), p50 %.2f ms, p99 %.2f ms, %.5f Redis round trips/req, %.3f without Redis, %.0f 2xx/s", $3, $4, $15, $5 / 1000, $6 / 1000, $7, $8, $9 }')"
}

# ---- setup ----

command -v wrk >/dev/null && command -v redis-server >/dev/null || { apt-get update && apt-get install -y wrk redis-server; }
for tool in taskset curl go; do
	command -v "$tool" >/dev/null || die "$tool is required"
done
(($(nproc) >= 2)) || die "needs 2 cores (weir on core $PROXY_CORE, load on core $LOAD_CORE)"
for port in "${PORT[@]}" "${ADMIN[@]}" "$BACKEND_PORT" "$REDIS_PORT" "$DEAD_REDIS_PORT"; do
	! port_is_open "$port" || die "port $port is already in use"
done
rm -rf "$BUILD"
mkdir -p "$LOGS"
log "building weir and the backend"
go build -o "$BUILD/weir" ./cmd/weir
go build -o "$BUILD/backend" ./bench/backend
start backend "$LOAD_CORE" "$LOGS/backend.log" env GOMAXPROCS=1 "$BUILD/backend" -listen "127.0.0.1:$BACKEND_PORT"
wait_port backend "$BACKEND_PORT" "$LOGS/backend.log"
start redis "$LOAD_CORE" "$LOGS/redis.log" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
	--appendonly no --daemonize no --dir "$BUILD"
wait_port redis "$REDIS_PORT" "$LOGS/redis.log"
for name in "${SCENARIOS[@]}"; do
	start_weir "$name"
	check_weir "$name"
done

# ---- load rounds ----

: >"$RUNS"
started_at=$(date +%s)
for ((round = 1; round <= ROUNDS; round++)); do
	offset=$(((round - 1) % ${#SCENARIOS[@]}))
	for name in "${SCENARIOS[@]:offset}" "${SCENARIOS[@]:0:offset}"; do
		measure "$round" "$name"
	done
done
log "measurements took $(($(date +%s) - started_at)) s"
for name in "${SCENARIOS[@]}" redis backend; do
	stop_pid "${PID[$name]}"
done
for port in "${PORT[@]}" "$REDIS_PORT" "$BACKEND_PORT"; do
	wait_closed "$port"
done

# ---- report ----

weir_version="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench' 2>/dev/null || echo ' (with uncommitted changes outside bench/)')"
{
	echo "# weir global rate limit benchmark"
	echo
	echo "Generated by \`bench/globallimit.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'): ROUNDS=$ROUNDS, DURATION=${DURATION}s (after a ${WARMUP}s warm-up), $CONNS connections, weir $weir_version, $(redis-server --version | awk '{ print $1, $3 }' | sed 's/ v=/ /'), wrk $(wrk -v 2>&1 | head -1 | awk '{ print $2 }'), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)."
	echo
	echo "GET $URL_PATH (13 bytes) through one route with \`rate_limit: {key: route, ...}\` (configs: bench/configs/weir-limit-*.yaml)."
	echo "weir alone on core 0 with GOMAXPROCS=1; \`wrk -t1 -c$CONNS\`, the backend and redis-server (no persistence) on core 1."
	echo "Medians (min–max) over the rounds. **core-0 CPU/req**: core 0's busy jiffies over the measured run ÷ requests;"
	echo "**weir process CPU/req**: the weir process's utime+stime ÷ requests (a cross-check that leaves out the rest of core 0)."
	echo "**Redis round trips/req**: Δ weir_rate_limit_redis_leases_total ÷ requests. **decided without Redis**:"
	echo "Δ weir_rate_limit_redis_unavailable_total ÷ requests (the metrics also count the up to $CONNS requests wrk leaves in"
	echo "flight when it stops, so this share can exceed 1 slightly). Latencies are wrk's. No run had a socket error or a 5xx answer."
	awk -F'\t' -f bench/stats.awk -f <(cat <<'AWK'
{ key = $2; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
  for (c = 3; c <= 15; c++) vals[key, c] = vals[key, c] " " $c
  requests[key] += $12; leases[key] += $13; unavail[key] += $14 }
function row(label, key, col, fmt, scale) { printf "| %s | %s |\n", label, stat(key, col, fmt, scale) }
END {
	desc["local"] = "scope local, rate 100000/s, burst 100000"
	desc["global"] = "scope global, rate 100000/s, burst 100000, Redis up"
	desc["global-over"] = "scope global, rate 5000/s, burst 5000, Redis up: most answers are 429 (tallied by bench/wrk-status.lua)"
	desc["global-redis-down"] = "scope global, rate 100000/s, Redis address with nothing listening (on_redis_error: local)"
	for (i = 1; i <= n; i++) {
		k = order[i]
		printf "\n## %s\n\n%s.\n\n| | median (min–max) |\n|---|---:|\n", k, desc[k]
		row("req/s (all answers)", k, 3, "%.0f", 1)
		if (k == "global-over") {
			row("2xx/s (admitted)", k, 9, "%.0f", 1)
			row("429 share of answers %", k, 10, "%.1f", 1)
		}
		row("core-0 CPU/req µs", k, 4, "%.2f", 1)
		row("weir process CPU/req µs", k, 15, "%.2f", 1)
		row("core-0 busy %", k, 11, "%.0f", 1)
		row("p50 ms", k, 5, "%.2f", 1000)
		row("p99 ms", k, 6, "%.2f", 1000)
		if (k != "local") {
			row("Redis round trips/req", k, 7, "%.5f", 1)
			row("decided without Redis (share of requests)", k, 8, "%.4f", 1)
		}
		printf "| requests, leases, decided without Redis (all rounds) | %d, %d, %d |\n", requests[k], leases[k], unavail[k]
	}
	print ""
	print "## Ratios (medians)"
	print ""
	printf "- core-0 CPU/req global ÷ local: %s\n", ratio("global", "local", 4)
	printf "- p50 global ÷ local: %s\n", ratio("global", "local", 5)
	printf "- p99 global ÷ local: %s\n", ratio("global", "local", 6)
	printf "- weir process CPU/req global ÷ local: %s\n", ratio("global", "local", 15)
	printf "- core-0 CPU/req global-redis-down ÷ local: %s; p50: %s; p99: %s\n", ratio("global-redis-down", "local", 4),
		ratio("global-redis-down", "local", 5), ratio("global-redis-down", "local", 6)
}
AWK
) "$RUNS"
} >"$RESULTS"
log "wrote $RESULTS"
