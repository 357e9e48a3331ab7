#!/usr/bin/env bash
# Steady-state cache misses: weir with a 64 MiB memory cache that is full and evicting, every request
# a URL not asked before (bench/wrk-cachemiss.lua), against the same weir without the cache filter
# under the same wrk script. bench/cache.sh's weir-miss runs instead grow the cache without bound, so
# they also pay for memory the process touches for the first time.
#
#   bench/cachemiss.sh              # ROUNDS=3, DURATION=5 (about 1 minute)
#
# weir alone on core 0 (GOMAXPROCS=1); wrk and bench/backend on core 1. Each run starts a fresh weir;
# a miss run first fills the cache for 4 s (so that it evicts). CPU per request is the weir process's
# utime+stime over the measured run divided by requests. Prints one line per run and the medians.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=bench/.build-cachemiss
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
PROXY_CORE=0
LOAD_CORE=1
declare -A ADMIN=([weir]=18591)
source bench/lib.sh

command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }
rm -rf "$BUILD" && mkdir -p "$BUILD"
go build -o "$BUILD/weir" ./cmd/weir
go build -o "$BUILD/backend" ./bench/backend
sed 's/max_bytes: 2GiB/max_bytes: 64MiB/' bench/configs/weir-cache.yaml >"$BUILD/cache.yaml"
grep -v 'cache:' bench/configs/weir-cache.yaml | grep -v '^    filters:$' >"$BUILD/plain.yaml"
URL=http://127.0.0.1:18581/1k.json
HZ=$(getconf CLK_TCK)

start backend "$LOAD_CORE" "$BUILD/backend.log" env GOMAXPROCS=1 "$BUILD/backend" -listen 127.0.0.1:18080
wait_port backend 18080 "$BUILD/backend.log"
: >"$BUILD/runs.tsv"
for ((round = 1; round <= ROUNDS; round++)); do
	for scenario in miss uncached; do
		config=$BUILD/cache.yaml fill=4
		[[ $scenario == miss ]] || config=$BUILD/plain.yaml fill=1
		start weir "$PROXY_CORE" "$BUILD/weir.log" env GOMAXPROCS=1 "$BUILD/weir" -config "$config"
		wait_port weir 18581 "$BUILD/weir.log"
		WRK_MISS_PREFIX=fill$round taskset -c "$LOAD_CORE" wrk -t1 -c64 -d${fill}s -s bench/wrk-cachemiss.lua "$URL" >/dev/null
		c0=$(proc_jiffies "${PID[weir]}")
		out=$(WRK_MISS_PREFIX=run$round taskset -c "$LOAD_CORE" wrk -t1 -c64 -d"${DURATION}s" -s bench/wrk-cachemiss.lua "$URL")
		c1=$(proc_jiffies "${PID[weir]}")
		requests=$(grep -o 'requests=[0-9]*' <<<"$out" | cut -d= -f2)
		scrape weir "$BUILD/metrics"
		evicted=$(metric "$BUILD/metrics" weir_cache_events_total 'event="evicted"')
		stop_pid "${PID[weir]}"
		wait_closed 18581
		awk -v OFS='\t' -v s=$scenario -v n="$requests" -v c=$((c1 - c0)) -v hz="$HZ" -v e="$evicted" \
			'BEGIN { print s, n, c * 1e6 / hz / n, e }' | tee -a "$BUILD/runs.tsv"
	done
done
sort -k1,1 -k3,3n "$BUILD/runs.tsv" | awk -F'\t' '{ v[$1] = v[$1] " " $3; n[$1]++ }
	END { for (s in v) { split(substr(v[s], 2), a, " "); printf "%s: median %.1f µs CPU per request over %d runs\n", s, a[int((n[s] + 1) / 2)], n[s] } }'
