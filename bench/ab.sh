#!/usr/bin/env bash
# weir against weir: builds weir at each of REVS and runs them in interleaved rounds on one config,
# to tell a change in weir from a change in the machine (bench/run.sh compares peers within a run;
# runs on different days differ by more than most changes on this VM).
#
#   REVS="dde833e HEAD" bench/ab.sh            # GET /13 at 64 and 256 connections, 5 rounds
#   REVS="a b c" ROUNDS=7 CONNS=64 bench/ab.sh
#
# Settings (environment): REVS (git revisions, at least one), ROUNDS (5), DURATION of each measured
# wrk run in seconds (4), WARMUP (1), CONNS ("64 256"), CONFIG (bench/configs/weir.yaml, read from
# the working tree so that every revision serves the same file), URL_PATH (/13).
# Same layout as run.sh: weir alone on core 0 with GOMAXPROCS=1, wrk and bench/backend on core 1.
# The revision order rotates each round. Prints, per revision and connection count, the median and
# min–max of core-0 busy time per request and of weir's own utime+stime per request, and the median
# over the rounds of its core-0 figure divided by the first revision's in the same round.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=bench/.build/ab
LOGS=$BUILD/logs
read -r -a REVS <<<"${REVS:?REVS names the git revisions to compare, e.g. REVS=\"dde833e HEAD\"}"
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-"64 256"}
CONFIG=${CONFIG:-bench/configs/weir.yaml}
URL_PATH=${URL_PATH:-/13}
PROXY_CORE=0
LOAD_CORE=1
PORT=18081 # the listener in bench/configs/weir.yaml
BACKEND_ADDR=127.0.0.1:18080

source bench/lib.sh
command -v wrk >/dev/null || die "wrk is missing: apt-get install -y wrk"
rm -rf "$BUILD"
mkdir -p "$LOGS"

declare -A BIN=()
for rev in "${REVS[@]}"; do
	sha=$(git rev-parse --short "$rev^{commit}") || die "no such revision: $rev"
	src="$BUILD/src-$sha"
	mkdir -p "$src"
	git archive "$sha" | tar -x -C "$src"
	(cd "$src" && go build -o ../weir-"$sha" ./cmd/weir) || die "weir at $rev does not build"
	BIN[$rev]="$BUILD/weir-$sha"
	log "built weir at $rev ($sha)"
done
go build -o "$BUILD/backend" ./bench/backend

start backend "$LOAD_CORE" "$LOGS/backend.log" env GOMAXPROCS=1 "$BUILD/backend" -listen "$BACKEND_ADDR"
wait_port backend 18080 "$LOGS/backend.log"

RUNS=$BUILD/runs.tsv
: >"$RUNS"
for ((round = 1; round <= ROUNDS; round++)); do
	n=${#REVS[@]}
	for ((k = 0; k < n; k++)); do
		rev=${REVS[$(((k + round) % n))]}
		start weir "$PROXY_CORE" "$LOGS/weir-$round-$k.log" env GOMAXPROCS=1 "${BIN[$rev]}" -config "$CONFIG"
		wait_port weir "$PORT" "$LOGS/weir-$round-$k.log"
		pid=${PID[weir]}
		for conns in $CONNS; do
			url="http://127.0.0.1:$PORT$URL_PATH"
			taskset -c "$LOAD_CORE" wrk -t1 -c"$conns" -d"${WARMUP}s" "$url" >/dev/null
			c0=$(core_jiffies)
			p0=$(proc_jiffies "$pid")
			out=$(taskset -c "$LOAD_CORE" wrk -t1 -c"$conns" -d"${DURATION}s" -s bench/wrk.lua "$url")
			c1=$(core_jiffies)
			p1=$(proc_jiffies "$pid")
			result=$(grep '^RESULT ' <<<"$out") || die "no RESULT line from wrk: $out"
			read -r requests _ errors non2xx _ <<<"$(sed 's/^RESULT //; s/[a-z0-9_]*=//g' <<<"$result")"
			((requests > 0 && errors + non2xx == 0)) || die "weir at $rev: $requests requests, $errors errors, $non2xx non-2xx"
			awk -v OFS='\t' -v hz="$(getconf CLK_TCK)" -v round="$round" -v rev="$rev" -v conns="$conns" -v n="$requests" \
				-v c0="$c0" -v c1="$c1" -v p0="$p0" -v p1="$p1" 'BEGIN {
					split(c0, a, " "); split(c1, b, " ")
					print round, rev, conns, (b[1] - a[1]) * 1e6 / hz / n, (p1 - p0) * 1e6 / hz / n
				}' >>"$RUNS"
			log "round $round  $rev  c=$conns: $(tail -1 "$RUNS" | cut -f4,5 | awk '{ printf "%.1f us/req on core 0, %.1f in weir", $1, $2 }')"
		done
		stop_pid "$pid"
		wait_closed "$PORT"
	done
done

echo
echo "| revision | conns | core-0 CPU/req µs | weir CPU/req µs | core-0 ÷ ${REVS[0]}, per round |"
echo "|---|---:|---:|---:|---:|"
awk -F'\t' -v first="${REVS[0]}" -v order="${REVS[*]}" -v conns="$CONNS" -f bench/stats.awk -f - "$RUNS" <<'AWK'
{ key = $2 SUBSEP $3; seen[key] = 1; vals[key, 4] = vals[key, 4] " " $4; vals[key, 5] = vals[key, 5] " " $5
  inround[key, $1, 4] = $4; rounds[$1] = 1 }
END {
	nr = split(order, revs, " "); nc = split(conns, cs, " ")
	for (i = 1; i <= nr; i++) for (j = 1; j <= nc; j++) {
		key = revs[i] SUBSEP cs[j]
		printf "| %s | %s | %s | %s | %s |\n", revs[i], cs[j], stat(key, 4, "%.1f", 1), stat(key, 5, "%.1f", 1),
			rratio(key, first SUBSEP cs[j], 4)
	}
}
AWK
