#!/usr/bin/env bash
# Cache benchmark: a hit in weir's cache filter (memory store) against a hit in nginx's proxy_cache,
# on GET /1k.json (bench/backend's 1024-byte JSON, sent without Cache-Control), with a miss in weir's
# cache and both plain proxies for reference. Results in bench/results-cache.md, section "Cache hit
# against nginx proxy_cache" (the rest of the file is kept).
#
#   bench/cache.sh                      # ROUNDS=3, DURATION=5 (about 2 minutes of load)
#   ROUNDS=1 DURATION=2 bench/cache.sh  # smoke run
#   WEIR_REV=HEAD bench/cache.sh        # weir and the backend built from that commit (git archive),
#                                       # not from the work tree
#
# Scenarios:
#   weir-hit     bench/configs/weir-cache.yaml, route "cached" (cache: {ttl: 10m}): every request a hit
#   nginx-hit    bench/configs/nginx-cache.conf (proxy_cache, 10m): every request a hit
#   weir-miss    the same weir and route, each request a URL never asked before (/1k.json?r=<new>,
#                bench/wrk-cachemiss.lua): a lookup, a call to the backend and a store every time
#   weir-proxy   bench/configs/weir.yaml, no cache (as bench/run.sh measures weir)
#   nginx-proxy  bench/configs/nginx.conf, no cache
#
# Layout and method as in bench/run.sh: the proxy under test alone on core 0, single-threaded (weir
# GOMAXPROCS=1, nginx one worker); wrk -t1 and the backend on core 1. A warm-up wrk run before each
# measured one; rounds interleaved (the scenario order rotates each round); medians (min–max). CPU per
# request is core 0's busy jiffies over the measured run divided by requests; the proxy process's own
# utime+stime and the backend's per request are recorded too (the backend's is ~0 when every request
# is a hit). Before the load, curl checks that each hit scenario answers X-Cache: HIT with the
# backend's body (and again after each hit run). weir's /metrics, scraped around each measured run,
# must show no miss during weir-hit runs and no hit during weir-miss runs; evictions are counted. Any
# wrk socket error or non-2xx answer stops the script.
#
# The machine may be shared (a build or a test started elsewhere, or, on a VM, another guest of the
# host: steal time): each run waits until both cores have been idle for a second (QUIET_WAIT, 600 s at
# most), and a run during which more than 10 % of core 0's busy time was stolen, or core 0 was busy
# more than 25 % beyond the measured process's own CPU time (steal left out), is measured again
# (RETRIES measurements at most; the last one is kept, and the report names the runs kept disturbed).
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=bench/.build-cache
LOGS=$BUILD/logs
RESULTS=${RESULTS:-bench/results-cache.md}
SECTION="## Cache hit against nginx proxy_cache"
RUNS=$BUILD/runs.tsv
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-64}
QUIET_WAIT=${QUIET_WAIT:-600} # seconds to wait for the machine to go idle before a run
RETRIES=${RETRIES:-5}         # measurements of one run, when something else used core 0 during it
PROXY_CORE=0
LOAD_CORE=1
BACKEND_PORT=18080
URL_PATH=/1k.json
SCENARIOS=(weir-hit nginx-hit weir-miss weir-proxy nginx-proxy)
SERVERS=(weir-cache nginx-cache weir nginx)
declare -A SERVER=([weir-hit]=weir-cache [weir-miss]=weir-cache [weir-proxy]=weir [nginx-hit]=nginx-cache [nginx-proxy]=nginx)
declare -A PORT=([weir-cache]=18581 [nginx-cache]=18583 [weir]=18081 [nginx]=18083)
declare -A ADMIN=([weir-cache]=18591 [weir]=18091)

source bench/lib.sh
declare -A MEASURE=() # server -> PID whose CPU is measured (nginx: the worker)

# core_steal: jiffies of core PROXY_CORE that the hypervisor gave to another guest (steal).
core_steal() { awk -v cpu="cpu$PROXY_CORE" '$1 == cpu { print $9 }' /proc/stat; }

start_server() {
	local name=$1 logfile="$LOGS/$1.log"
	case $name in
	weir) start "$name" "$PROXY_CORE" "$logfile" env GOMAXPROCS=1 "$BUILD/weir" -config bench/configs/weir.yaml ;;
	weir-cache) start "$name" "$PROXY_CORE" "$logfile" env GOMAXPROCS=1 "$BUILD/weir" -config bench/configs/weir-cache.yaml ;;
	nginx | nginx-cache)
		local dir=$BUILD/$name
		mkdir -p "$dir"
		start "$name" "$PROXY_CORE" "$logfile" nginx -p "$dir" -e error.log -c "$PWD/bench/configs/$name.conf" -g 'daemon off;'
		;;
	esac
	wait_port "$name" "${PORT[$name]}" "$logfile"
	MEASURE[$name]=${PID[$name]}
	[[ $name != nginx* ]] || MEASURE[$name]=$(nginx_worker "${PID[$name]}")
}

cache_result() { metric "$1" weir_cache_requests_total 'route="cached"' "result=\"$2\""; }
cache_event() { metric "$1" weir_cache_events_total 'route="cached"' "event=\"$2\""; }

# get URL: one GET; sets CODE, HDR_BYTES, BODY_BYTES and XCACHE (empty when absent); the body is in
# $BUILD/body.
get() {
	local got
	got=$(curl -sS --max-time 5 -D "$BUILD/headers" -o "$BUILD/body" -w '%{http_code} %{size_header} %{size_download}' "$1") ||
		die "GET $1 failed"
	read -r CODE HDR_BYTES BODY_BYTES <<<"$got"
	XCACHE=$(awk -F': *' 'tolower($1) == "x-cache" { sub(/\r$/, "", $2); print $2 }' "$BUILD/headers")
}

# check SCENARIO: answers 200 with the backend's body; a hit scenario says X-Cache: HIT (after one
# request that may store it), a proxy scenario says no X-Cache; weir-miss's URLs miss and then hit.
declare -A SIZES=()
check() {
	local name=$1 url="http://127.0.0.1:${PORT[${SERVER[$1]}]}$URL_PATH"
	case $name in
	*-hit)
		get "$url"
		get "$url"
		[[ $XCACHE == HIT ]] || die "$name: the second GET $URL_PATH says X-Cache: '$XCACHE', want HIT (headers: $(tr '\r\n' '  ' <"$BUILD/headers"))"
		;;
	weir-miss)
		get "$url?r=check-$RANDOM$RANDOM"
		[[ $XCACHE == MISS ]] || die "$name: a new query says X-Cache: '$XCACHE', want MISS"
		get "$url?r=check-$RANDOM$RANDOM"
		[[ $XCACHE == MISS ]] || die "$name: a new query says X-Cache: '$XCACHE', want MISS"
		;;
	*)
		get "$url"
		[[ -z $XCACHE ]] || die "$name: X-Cache: '$XCACHE' from a proxy without cache"
		;;
	esac
	[[ $CODE == 200 ]] || die "$name: GET answered $CODE"
	cmp -s "$BUILD/body" "$BUILD/backend-body" || die "$name: the body differs from the backend's"
	SIZES[$name]="$HDR_BYTES $BODY_BYTES"
	log "$name: 200, ${HDR_BYTES} B of headers + ${BODY_BYTES} B of body${XCACHE:+, X-Cache: $XCACHE}"
}

# machine_busy: percent of both cores' time busy over the next second.
machine_busy() {
	local a b
	a=$(awk '$1 == "cpu" { print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat)
	sleep 1
	b=$(awk '$1 == "cpu" { print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); print (y[2] > x[2]) ? int(100 * (y[1] - x[1]) / (y[2] - x[2])) : 0 }'
}

# wait_quiet: waits (up to QUIET_WAIT seconds) until the machine is idle between runs, so that no other
# work (a build, a test) shares the cores with a measured run.
wait_quiet() {
	local i busy
	for ((i = 0; i < QUIET_WAIT; i++)); do
		busy=$(machine_busy)
		((busy >= 5)) || return 0
		((i % 10)) || log "the machine is ${busy}% busy with something else: waiting for it to go quiet"
	done
	die "the machine stayed busy for ${QUIET_WAIT} s; the runs would not be comparable"
}

# measure ROUND SCENARIO: a warm-up run, then a measured one; appends a row to RUNS. When core 0 was
# busy with more than the measured process and its usual share of interrupts (something else ran
# there), it sets REDO instead, up to RETRIES times.
REDO=0
measure() {
	local round=$1 name=$2 server=${SERVER[$2]} script=bench/wrk.lua
	local url="http://127.0.0.1:${PORT[${SERVER[$2]}]}$URL_PATH" out="$LOGS/wrk-r$round-$name.txt"
	[[ $name == weir-miss ]] && script=bench/wrk-cachemiss.lua
	wait_quiet
	WRK_MISS_PREFIX="r$round-a$attempt-warm" taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d"${WARMUP}s" -s "$script" "$url" >/dev/null ||
		die "wrk warm-up failed against $name"
	local m0="$BUILD/m0" m1="$BUILD/m1" core0 core1 steal0 steal1 proc0 proc1 back0 back1
	[[ $server != weir-cache ]] || scrape "$server" "$m0"
	core0=$(core_jiffies)
	steal0=$(core_steal)
	proc0=$(proc_jiffies "${MEASURE[$server]}")
	back0=$(proc_jiffies "${PID[backend]}")
	WRK_MISS_PREFIX="r$round-a$attempt-run" taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$script" "$url" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "wrk failed against $name"; }
	core1=$(core_jiffies)
	steal1=$(core_steal)
	proc1=$(proc_jiffies "${MEASURE[$server]}")
	back1=$(proc_jiffies "${PID[backend]}")
	[[ $server != weir-cache ]] || scrape "$server" "$m1"
	local result requests dur_us errors non2xx p50 p99
	result=$(grep '^RESULT ' "$out") || { cat "$out" >&2; die "no RESULT line from wrk against $name"; }
	read -r requests dur_us errors non2xx p50 p99 <<<"$(sed 's/^RESULT //; s/[a-z0-9_]*=//g' <<<"$result")"
	((requests > 0)) || die "$name: no request completed"
	((errors == 0)) || die "$name: $errors socket errors (see $out)"
	((non2xx == 0)) || die "$name: $non2xx non-2xx answers (see $out)"
	# foreign: core 0's busy time beyond the measured process, stolen time left out, in % of the
	# process's; steal: the share of core 0's busy time the hypervisor took (it ran another guest).
	local foreign steal clean=1
	read -r foreign steal <<<"$(awk -v n="$requests" -v c0="$core0" -v c1="$core1" -v s0="$steal0" -v s1="$steal1" \
		-v p0="$proc0" -v p1="$proc1" 'BEGIN { split(c0, a, " "); split(c1, b, " "); busy = b[1] - a[1]; st = s1 - s0; proc = p1 - p0
			printf "%d %d\n", (proc > 0 ? 100 * (busy - st - proc) / proc : 0), (busy > 0 ? 100 * st / busy : 0) }')"
	[[ $foreign =~ ^-?[0-9]+$ && $steal =~ ^[0-9]+$ ]] || die "$name: cannot tell core 0's share of other work ('$foreign', '$steal')"
	if ((foreign > 25 || steal > 10)); then
		if ((attempt < RETRIES)); then
			log "round $round $name: core 0 busy ${foreign}% beyond the measured process, ${steal}% of it stolen by the hypervisor: measuring again"
			REDO=1
			return 0
		fi
		clean=0
		log "round $round $name: core 0 busy ${foreign}% beyond the measured process, ${steal}% stolen, after $RETRIES measurements: kept"
	fi
	local hits=0 misses=0 evicted=0 other=0
	if [[ $server == weir-cache ]]; then
		hits=$(($(cache_result "$m1" hit) - $(cache_result "$m0" hit)))
		misses=$(($(cache_result "$m1" miss) - $(cache_result "$m0" miss)))
		other=$(($(metric "$m1" weir_cache_requests_total 'route="cached"') - $(metric "$m0" weir_cache_requests_total 'route="cached"') - hits - misses))
		evicted=$(($(cache_event "$m1" evicted) - $(cache_event "$m0" evicted)))
		if [[ $name == weir-hit ]]; then
			((misses == 0 && other == 0)) || die "$name: weir counted $misses misses and $other other results (stale, bypass, ...) besides $hits hits during the run"
		else
			((hits == 0 && other == 0)) || die "$name: weir counted $hits hits and $other other results besides $misses misses during the run"
		fi
	fi
	if [[ $name == *-hit ]]; then
		get "$url"
		[[ $XCACHE == HIT ]] || die "$name: after the run GET $URL_PATH says X-Cache: '$XCACHE', want HIT"
	fi
	# round name req/s core0_us proc_us backend_us p50_us p99_us busy_% requests hits misses evicted steal_% clean
	awk -v OFS='\t' -v hz="$(getconf CLK_TCK)" -v r="$round" -v p="$name" -v n="$requests" -v d="$dur_us" -v steal="$steal" -v clean="$clean" \
		-v p50="$p50" -v p99="$p99" -v c0="$core0" -v c1="$core1" -v p0="$proc0" -v p1="$proc1" -v b0="$back0" -v b1="$back1" \
		-v hits="$hits" -v misses="$misses" -v evicted="$evicted" 'BEGIN { split(c0, a, " "); split(c1, b, " ")
			busy = (b[1] - a[1]) * 1e6 / hz; total = (b[2] - a[2]) * 1e6 / hz
			print r, p, n / (d / 1e6), busy / n, (p1 - p0) * 1e6 / hz / n, (b1 - b0) * 1e6 / hz / n, p50, p99,
				(total > 0 ? 100 * busy / total : 0), n, hits, misses, evicted, steal, clean }' >>"$RUNS"
	log "round $round $name: $(tail -1 "$RUNS" | awk -F'\t' '{ printf "%.0f req/s, %.2f us/req (proxy %.2f, backend %.2f), p50 %.2f ms, p99 %.2f ms", $3, $4, $5, $6, $7 / 1000, $8 / 1000 }')$([[ $server == weir-cache ]] && echo ", $hits hits, $misses misses, $evicted evicted")"
}

# ---- setup ----

command -v nginx >/dev/null && command -v wrk >/dev/null || { apt-get update && apt-get install -y nginx wrk; }
for tool in taskset curl go cmp; do
	command -v "$tool" >/dev/null || die "$tool is required"
done
(($(nproc) >= 2)) || die "needs 2 cores (proxies on core $PROXY_CORE, load on core $LOAD_CORE)"
for port in "${PORT[@]}" "${ADMIN[@]}" "$BACKEND_PORT"; do
	! port_is_open "$port" || die "port $port is already in use"
done
rm -rf "$BUILD"
mkdir -p "$LOGS"
if [[ -n ${WEIR_REV:-} ]]; then
	rev=$(git rev-parse --short "$WEIR_REV^{commit}") || die "WEIR_REV=$WEIR_REV is not a commit"
	log "building weir and the backend from $rev"
	mkdir -p "$BUILD/src"
	git archive "$rev" | tar -x -C "$BUILD/src"
	(cd "$BUILD/src" && go build -o ../weir ./cmd/weir && go build -o ../backend ./bench/backend)
	weir_version=$rev
else
	log "building weir and the backend"
	go build -o "$BUILD/weir" ./cmd/weir
	go build -o "$BUILD/backend" ./bench/backend
	weir_version="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench' 2>/dev/null || echo ' (with uncommitted changes outside bench/)')"
fi
start backend "$LOAD_CORE" "$LOGS/backend.log" env GOMAXPROCS=1 "$BUILD/backend" -listen "127.0.0.1:$BACKEND_PORT"
wait_port backend "$BACKEND_PORT" "$LOGS/backend.log"
curl -sS --max-time 5 -o "$BUILD/backend-body" "http://127.0.0.1:$BACKEND_PORT$URL_PATH"
for server in "${SERVERS[@]}"; do
	start_server "$server"
done
for name in "${SCENARIOS[@]}"; do
	check "$name"
done

# ---- load rounds ----

: >"$RUNS"
REDONE=0
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date +%s)
for ((round = 1; round <= ROUNDS; round++)); do
	offset=$(((round - 1) % ${#SCENARIOS[@]}))
	for name in "${SCENARIOS[@]:offset}" "${SCENARIOS[@]:0:offset}"; do
		for ((attempt = 1; attempt <= RETRIES; attempt++)); do
			REDO=0
			measure "$round" "$name"
			((REDO)) || break
			REDONE=$((REDONE + 1))
		done
	done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
log "measurements took $(($(date +%s) - started_at)) s; load average $load_before before, $load_after after"
scrape weir-cache "$BUILD/m-end"
end_bytes=$(metric "$BUILD/m-end" weir_cache_bytes 'route="cached"')
end_evicted=$(cache_event "$BUILD/m-end" evicted)
end_rss_kb=$(status_kb "${PID[weir-cache]}" VmRSS)
nginx_cache_kb=$(du -sk "$BUILD/nginx-cache/cache" | cut -f1)
for server in "${SERVERS[@]}" backend; do
	stop_pid "${PID[$server]}"
done
for port in "${PORT[@]}" "$BACKEND_PORT"; do
	wait_closed "$port"
done

# ---- report ----

{
	echo "$SECTION"
	echo
	echo "Generated by \`${WEIR_REV:+WEIR_REV=$WEIR_REV }bench/cache.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'): ROUNDS=$ROUNDS, DURATION=${DURATION}s (after a ${WARMUP}s warm-up), $CONNS connections, weir $weir_version, $(nginx -v 2>&1 | sed 's/^nginx version: //'), wrk $(wrk -v 2>&1 | head -1 | awk '{ print $2 }'), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)."
	echo
	echo "GET $URL_PATH (bench/backend's 1024-byte JSON, no Cache-Control). **weir-hit**: bench/configs/weir-cache.yaml, route"
	echo "\`cached\` with \`cache: {ttl: 10m, max_bytes: 2GiB}\` (memory store). **nginx-hit**: bench/configs/nginx-cache.conf,"
	echo "\`proxy_cache\` (keys_zone 10m, \`proxy_cache_valid 200 10m\`, key \`\$host\$request_uri\`, \`add_header X-Cache \$upstream_cache_status\`)."
	echo "Both were warmed and checked with curl to answer \`X-Cache: HIT\` before the load and after each hit run. **weir-miss**:"
	echo "the same weir route, each request a URL never asked before (\`$URL_PATH?r=<round>-<run>-<thread>-<n>\`, bench/wrk-cachemiss.lua):"
	echo "a lookup, the backend call and a store every time. **weir-proxy** / **nginx-proxy**: no cache (bench/configs/weir.yaml,"
	echo "bench/configs/nginx.conf), every request to the backend."
	echo
	echo "Each proxy alone on core 0 single-threaded (weir GOMAXPROCS=1, nginx one worker); \`wrk -t1 -c$CONNS\` and the backend"
	echo "on core 1. Medians (min–max) over the rounds. **core-0 CPU/req**: core 0's busy jiffies over the measured run ÷ requests;"
	echo "**proxy process CPU/req**: the weir process's (nginx worker's) utime+stime ÷ requests; **backend CPU/req**: the backend's"
	echo "(≈0 when nothing reaches it). Latencies are wrk's. No run had a socket error or a non-2xx answer."
	echo
	echo "| scenario | req/s | core-0 CPU/req µs | proxy process CPU/req µs | backend CPU/req µs | core-0 busy % | core-0 stolen % | p50 ms | p99 ms | response headers + body bytes |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for name in "${SCENARIOS[@]}"; do
		printf '%s\t%s\n' "$name" "${SIZES[$name]}"
	done | awk -F'\t' -f bench/stats.awk -f <(cat <<'AWK'
FNR == NR { key = $2; seen[key] = 1; for (c = 3; c <= 15; c++) vals[key, c] = vals[key, c] " " $c; next }
$1 in seen {
	split($2, sz, " ")
	printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d + %d |\n", $1, stat($1, 3, "%.0f", 1), stat($1, 4, "%.1f", 1),
		stat($1, 5, "%.1f", 1), stat($1, 6, "%.1f", 1), stat($1, 9, "%.0f", 1), stat($1, 14, "%.0f", 1), stat($1, 7, "%.2f", 1000),
		stat($1, 8, "%.2f", 1000), sz[1], sz[2]
}
AWK
) "$RUNS" -
	echo
	echo "Ratios (medians):"
	echo
	awk -F'\t' -v conns="$CONNS" -v retries="$RETRIES" -f bench/stats.awk -f <(cat <<'AWK'
{ key = $2; seen[key] = 1; for (c = 3; c <= 15; c++) vals[key, c] = vals[key, c] " " $c
  hits[key] += $11; misses[key] += $12; evicted[key] += $13; requests[key] += $10; if (!$15) unclean = unclean " " key " (round " $1 ")" }
END {
	printf "- **hit, weir ÷ nginx**: core-0 CPU/req %s, req/s %s, p99 %s\n", ratio("weir-hit", "nginx-hit", 4), ratio("weir-hit", "nginx-hit", 3), ratio("weir-hit", "nginx-hit", 8)
	printf "- proxy (no cache), weir ÷ nginx: core-0 CPU/req %s, req/s %s\n", ratio("weir-proxy", "nginx-proxy", 4), ratio("weir-proxy", "nginx-proxy", 3)
	printf "- hit ÷ proxy, core-0 CPU/req: weir %s, nginx %s\n", ratio("weir-hit", "weir-proxy", 4), ratio("nginx-hit", "nginx-proxy", 4)
	printf "- weir-miss ÷ weir-proxy, core-0 CPU/req: %s\n", ratio("weir-miss", "weir-proxy", 4)
	print ""
	printf "weir's /metrics over the measured runs (all rounds; the counts include the up to %d requests in flight when wrk stops):\n", conns
	printf "weir-hit %d requests, %d hits, %d misses; weir-miss %d requests, %d misses, %d hits; evicted during the runs: %d.\n",
		requests["weir-hit"], hits["weir-hit"], misses["weir-hit"], requests["weir-miss"], misses["weir-miss"], hits["weir-miss"], evicted["weir-hit"] + evicted["weir-miss"]
	print ""
	if (unclean != "") printf "**Kept although disturbed** (still over the limits of the last paragraph after %d measurements):%s.\n", retries, unclean
	else print "No run kept was disturbed by the limits of the last paragraph."
}
AWK
) "$RUNS"
	echo "At the end weir's cache held $(awk -v b="$end_bytes" 'BEGIN { printf "%.0f MiB", b / 1048576 }') (weir_cache_bytes; $end_evicted evicted in all, warm-ups included), weir's RSS was"
	echo "$((end_rss_kb / 1024)) MiB; nginx's cache directory held $nginx_cache_kb KiB (the one entry's file). Load average (1, 5, 15 min) $load_before before the"
	echo "rounds, $load_after after (the load itself keeps both cores busy: about 2). This is a VM whose host takes its cores away"
	echo "at times (steal time in /proc/stat; core 0's busy time here counts it, as bench/lib.sh does, the proxy process's does"
	echo "not). Each run started once the machine had been idle for a second, and $REDONE run(s) were measured again because"
	echo "more than 10 % of core 0's busy time was stolen, or core 0 was busy more than 25 % beyond the measured process"
	echo "(steal left out: something else ran there)."
} >"$BUILD/section.md"
if [[ -f $RESULTS ]]; then
	# everything before the section, trailing blank lines dropped, then one blank line
	awk -v s="$SECTION" '$0 == s { exit } /^$/ { blanks++; next } { for (; blanks > 0; blanks--) print ""; print } END { print "" }' \
		"$RESULTS" >"$BUILD/results.md"
else
	printf '# weir cache benchmarks\n\n' >"$BUILD/results.md"
fi
cat "$BUILD/section.md" >>"$BUILD/results.md"
mv "$BUILD/results.md" "$RESULTS"
log "wrote $RESULTS"
