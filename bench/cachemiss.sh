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
command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }
rm -rf "$BUILD" && mkdir -p "$BUILD"
go build -o "$BUILD/weir" ./cmd/weir
go build -o "$BUILD/backend" ./bench/backend
sed 's/max_bytes: 2GiB/max_bytes: 64MiB/' bench/configs/weir-cache.yaml >"$BUILD/cache.yaml"
grep -v 'cache:' bench/configs/weir-cache.yaml | grep -v '^    filters:$' >"$BUILD/plain.yaml"
URL=http://127.0.0.1:18581/1k.json
HZ=$(getconf CLK_TCK)

taskset -c 1 env GOMAXPROCS=1 "$BUILD/backend" -listen 127.0.0.1:18080 >"$BUILD/backend.log" 2>&1 &
BACKEND=$!
WEIR=
trap 'kill $BACKEND $WEIR 2>/dev/null || true' EXIT
wait_up() {
	for _ in $(seq 100); do
		curl -s -o /dev/null "$1" && return 0
		sleep 0.05
	done
	echo "$1 did not answer" >&2
	exit 1
}
wait_up http://127.0.0.1:18080/1k.json
: >"$BUILD/runs.tsv"
for ((round = 1; round <= ROUNDS; round++)); do
	for scenario in miss uncached; do
		config=$BUILD/cache.yaml
		[[ $scenario == miss ]] || config=$BUILD/plain.yaml
		taskset -c 0 env GOMAXPROCS=1 "$BUILD/weir" -config "$config" >"$BUILD/weir.log" 2>&1 &
		WEIR=$!
		wait_up http://127.0.0.1:18591/readyz
		fill=1
		[[ $scenario == uncached ]] || fill=4
		WRK_MISS_PREFIX=fill$round taskset -c 1 wrk -t1 -c64 -d${fill}s -s bench/wrk-cachemiss.lua "$URL" >/dev/null
		c0=$(awk '{ print $14 + $15 }' /proc/$WEIR/stat)
		out=$(WRK_MISS_PREFIX=run$round taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" -s bench/wrk-cachemiss.lua "$URL")
		c1=$(awk '{ print $14 + $15 }' /proc/$WEIR/stat)
		requests=$(grep -o 'requests=[0-9]*' <<<"$out" | cut -d= -f2)
		evicted=$(curl -s http://127.0.0.1:18591/metrics | awk '/^weir_cache_events_total\{event="evicted"/ { print $2 }')
		kill $WEIR
		wait $WEIR 2>/dev/null || true
		WEIR=
		awk -v OFS='\t' -v s=$scenario -v n="$requests" -v c=$((c1 - c0)) -v hz="$HZ" -v e="${evicted:-0}" \
			'BEGIN { print s, n, c * 1e6 / hz / n, e }' | tee -a "$BUILD/runs.tsv"
	done
done
sort -k1,1 -k3,3n "$BUILD/runs.tsv" | awk -F'\t' '{ v[$1] = v[$1] " " $3; n[$1]++ }
	END { for (s in v) { split(substr(v[s], 2), a, " "); printf "%s: median %.1f µs CPU per request over %d runs\n", s, a[int((n[s] + 1) / 2)], n[s] } }'
