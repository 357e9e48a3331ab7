#!/usr/bin/env bash
# Where weir's time per request goes, against bench/floor (fasthttp's Server and HostClient relaying,
# nothing else): perf samples core 0 while wrk loads the proxy, and the samples are split into kernel
# and user space and attributed to the functions on their stacks. Report in bench/results-profile.md.
#
#   bench/profile.sh                       # GET /13 at 64 connections, 3 rounds of 5 s per proxy
#   CONFIG=bench/configs/weir-chain.yaml URL_PATH=/1k bench/profile.sh
#
# Settings (environment): ROUNDS (3), DURATION of each profiled wrk run in seconds (5), CONNS (64),
# URL_PATH (/13), CONFIG (bench/configs/weir.yaml; weir's first listen address in it is loaded), FREQ perf's
# sampling rate in Hz (2999), RESULTS (bench/results-profile.md), HEADER (a request header line wrk adds
# to every request, e.g. "Authorization: Bearer $TOKEN" with CONFIG=bench/configs/weir-jwt.yaml, whose
# JWKS and token bench/jwtkit makes: go run ./bench/jwtkit -jwks bench/.build/jwt/jwks.json).
# Same layout as run.sh: the proxy alone on core 0 with GOMAXPROCS=1, wrk and bench/backend on core 1.
# Each round profiles weir, then floor, each after a 1 s warm-up; the figures are the samples of all
# rounds over the requests of all rounds. perf's software clock (cpu-clock) needs no hardware counters,
# so this works in a VM; it needs root (or perf_event_paranoid <= 0) and the linux-perf package.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=bench/.build/profile
LOGS=$BUILD/logs
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
URL_PATH=${URL_PATH:-/13}
CONFIG=${CONFIG:-bench/configs/weir.yaml}
FREQ=${FREQ:-2999}
RESULTS=${RESULTS:-bench/results-profile.md}
PROXY_CORE=0
LOAD_CORE=1
BACKEND_ADDR=127.0.0.1:18080
# weir's port: the config's first listen address (server.listen comes before admin.listen).
weir_port=$(sed -n 's/^ *listen: *"\{0,1\}127\.0\.0\.1:\([0-9]*\).*/\1/p' "$CONFIG" | head -1)
[[ -n $weir_port ]] || { echo "$CONFIG has no listen address on 127.0.0.1" >&2; exit 2; }
declare -A PORT=([weir]=$weir_port [floor]=18085)

wrk_args=()
[[ -z ${HEADER:-} ]] || wrk_args=(-H "$HEADER")

source bench/lib.sh
for tool in wrk perf; do
	command -v "$tool" >/dev/null || die "$tool is missing: apt-get install -y wrk linux-perf"
done
rm -rf "$BUILD"
mkdir -p "$LOGS"
go build -o "$BUILD/weir" ./cmd/weir
go build -o "$BUILD/floor" ./bench/floor
go build -o "$BUILD/backend" ./bench/backend

start backend "$LOAD_CORE" "$LOGS/backend.log" env GOMAXPROCS=1 "$BUILD/backend" -listen "$BACKEND_ADDR"
wait_port backend "${BACKEND_ADDR##*:}" "$LOGS/backend.log"
start weir "$PROXY_CORE" "$LOGS/weir.log" env GOMAXPROCS=1 "$BUILD/weir" -config "$CONFIG"
wait_port weir "${PORT[weir]}" "$LOGS/weir.log"
start floor "$PROXY_CORE" "$LOGS/floor.log" env GOMAXPROCS=1 "$BUILD/floor" -listen "127.0.0.1:${PORT[floor]}" \
	-upstream "$BACKEND_ADDR"
wait_port floor "${PORT[floor]}" "$LOGS/floor.log"

# fold COMM: reads `perf script -F comm,ip,sym` and prints, for the samples of process COMM, lines
# "kernel N", "user N" and, for every function on a user-space sample's stack, "fn NAME N" (samples with
# it on the stack, each sample counted once per function) and "self NAME N" (samples in it). Samples
# in the kernel are not attributed to functions: weir and floor make the same system calls (read,
# write, epoll) per request, so their kernel time is compared as one figure.
fold() {
	awk -v want="$1" '
		function flush(   i, seenfn) {
			if (n > 0 && comm == want) {
				if (ip[1] ~ /^ffffffff/) kernel++
				else {
					user++; self[sym[1]]++
					for (i = 1; i <= n; i++) if (!(sym[i] in seenfn)) { seenfn[sym[i]] = 1; incl[sym[i]]++ }
				}
			}
			n = 0
		}
		/^[^ \t]/ { flush(); comm = $1; next }
		/^[ \t]*$/ { flush(); next }
		{ ip[++n] = $1; $1 = ""; sym[n] = substr($0, 2) }
		END {
			flush()
			printf "kernel %d\nuser %d\n", kernel, user
			for (f in incl) printf "fn %s\t%d\n", f, incl[f]
			for (f in self) printf "self %s\t%d\n", f, self[f]
		}'
}

: >"$BUILD/requests.tsv"
for ((round = 1; round <= ROUNDS; round++)); do
	for proxy in weir floor; do
		url="http://127.0.0.1:${PORT[$proxy]}$URL_PATH"
		taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d1s "${wrk_args[@]}" "$url" >/dev/null
		out="$LOGS/wrk-$proxy-$round.txt"
		# perf samples core 0 exactly while wrk runs, so wrk's request count is the window's.
		perf record -q -e cpu-clock -F "$FREQ" -C "$PROXY_CORE" -g -o "$BUILD/$proxy-$round.data" -- \
			taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNS" -d"${DURATION}s" "${wrk_args[@]}" -s bench/wrk.lua "$url" >"$out" 2>"$LOGS/perf-$proxy-$round.log" ||
			{ cat "$LOGS/perf-$proxy-$round.log" >&2; die "perf record failed"; }
		result=$(grep '^RESULT ' "$out") || die "no RESULT line from wrk against $proxy"
		read -r requests _ errors non2xx _ <<<"$(sed 's/^RESULT //; s/[a-z0-9_]*=//g' <<<"$result")"
		((requests > 0 && errors + non2xx == 0)) || die "$proxy: $requests requests, $errors errors, $non2xx non-2xx"
		comm=$(basename "$(readlink "/proc/${PID[$proxy]}/exe")" | cut -c1-15)
		perf script -i "$BUILD/$proxy-$round.data" -F comm,ip,sym 2>/dev/null | fold "$comm" >"$BUILD/$proxy-$round.fold"
		printf '%s\t%s\t%s\n' "$proxy" "$round" "$requests" >>"$BUILD/requests.tsv"
		log "round $round  $proxy: $requests requests, $(awk '/^(kernel|user) / { s += $2 } END { print s }' "$BUILD/$proxy-$round.fold") samples"
	done
done

# Totals over the rounds: "proxy kind name samples" (kind: kernel, user, fn, self).
for proxy in weir floor; do
	cat "$BUILD/$proxy"-*.fold | awk -v p="$proxy" -F'\t' '
		/^(kernel|user) / { split($0, a, " "); t[a[1]] += a[2]; next }
		{ split($1, a, " "); kind = a[1]; name = substr($1, length(kind) + 2); s[kind, name] += $2; k[kind, name] = 1 }
		END {
			for (x in t) printf "%s\t%s\t-\t%d\n", p, x, t[x]
			for (x in k) { split(x, b, SUBSEP); printf "%s\t%s\t%s\t%d\n", p, b[1], b[2], s[x] }
		}'
done >"$BUILD/samples.tsv"

weir_version="$("$BUILD/weir" version) at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
{
	echo "# Where a request's CPU goes: weir against floor"
	echo
	echo "Generated by \`bench/profile.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'): GET $URL_PATH${HEADER:+ with header ${HEADER%%:*}}, $CONNS connections, $ROUNDS rounds of ${DURATION}s per proxy, perf cpu-clock at $FREQ Hz on core 0; $CONFIG; $(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(uname -sr), $weir_version, $(go version | awk '{ print $3 }')."
	echo
	echo "µs per request: a function's samples (it or its callees on the stack, user space only) over the"
	echo "requests wrk completed while perf recorded, times the sampling period. **kernel** is every sample"
	echo "whose leaf is in the kernel (system calls, the loopback TCP work they carry, interrupts);"
	echo "**user** the rest, the rows below it splitting it up (rows overlap: deadline resets and clock reads"
	echo "happen inside the server and the upstream exchange). floor's handler is its one function"
	echo "(main.main.func1) calling HostClient.Do; weir's is gateway.(*Server).handle."
	echo
	awk -F'\t' -v freq="$FREQ" -v reqfile="$BUILD/requests.tsv" -f - "$BUILD/samples.tsv" <<'AWK'
BEGIN { while ((getline line < reqfile) > 0) { split(line, a, "\t"); req[a[1]] += a[3] } }
{ s[$1, $2, $3] = $4; if ($2 == "fn" && $1 == "weir" && $3 ~ /weir-gateway\/weir\//) weirfn[$3] = $4 }
function us(p, kind, name) { return (p SUBSEP kind SUBSEP name) in s ? s[p, kind, name] / freq * 1e6 / req[p] : 0 }
function row(label, wk, wn, fk, fn,    w, f) {
	w = us("weir", wk, wn); f = us("floor", fk, fn)
	printf "| %s | %.2f | %.2f | %+.2f |\n", label, w, f, w - f
}
END {
	handler["weir"] = "github.com/weir-gateway/weir/gateway.(*Server).handle"; handler["floor"] = "main.main.func1"
	upstream["weir"] = "github.com/weir-gateway/weir/upstream.(*Pool).Do"; upstream["floor"] = "github.com/valyala/fasthttp.(*HostClient).Do"
	for (p in handler) {
		s[p, "total", "-"] = s[p, "kernel", "-"] + s[p, "user", "-"]
		s[p, "server", "-"] = s[p, "fn", "github.com/valyala/fasthttp.(*Server).serveConnCounted"] - s[p, "fn", handler[p]]
		s[p, "own", "-"] = s[p, "fn", handler[p]] - s[p, "fn", upstream[p]]
	}
	print "| where | weir µs/req | floor µs/req | weir − floor |"
	print "|---|---:|---:|---:|"
	row("**core 0, total**", "total", "-", "total", "-")
	row("kernel", "kernel", "-", "kernel", "-")
	row("user space", "user", "-", "user", "-")
	row("fasthttp's server loop, outside the handler", "server", "-", "server", "-")
	row("the handler", "fn", "github.com/weir-gateway/weir/gateway.(*Server).handle", "fn", "main.main.func1")
	row("… the upstream exchange (weir: upstream.(*Pool).Do; floor: HostClient.Do)", "fn", "github.com/weir-gateway/weir/upstream.(*Pool).Do", "fn", "github.com/valyala/fasthttp.(*HostClient).Do")
	row("… the rest of the handler (weir's own work)", "own", "-", "own", "-")
	row("Go scheduler (runtime.schedule)", "fn", "runtime.schedule", "fn", "runtime.schedule")
	row("deadline resets (internal/poll.setDeadlineImpl)", "fn", "internal/poll.setDeadlineImpl", "fn", "internal/poll.setDeadlineImpl")
	row("clock reads (__vdso_clock_gettime)", "self", "__vdso_clock_gettime", "self", "__vdso_clock_gettime")
	row("garbage collector (runtime.gcBgMarkWorker)", "fn", "runtime.gcBgMarkWorker", "fn", "runtime.gcBgMarkWorker")
	print ""
	print "weir's own functions (package github.com/weir-gateway/weir/...) by user-space time with their callees,"
	print "the 25 largest:"
	print ""
	print "| function | µs/req |"
	print "|---|---:|"
	n = 0
	for (f in weirfn) names[++n] = f
	for (i = 2; i <= n; i++) { x = names[i]; for (j = i - 1; j >= 1 && weirfn[names[j]] < weirfn[x]; j--) names[j+1] = names[j]; names[j+1] = x }
	for (i = 1; i <= n && i <= 25; i++) {
		f = names[i]; short = f; sub(/^github\.com\/weir-gateway\/weir\//, "", short)
		printf "| %s | %.2f |\n", short, us("weir", "fn", f)
	}
}
AWK
} >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
log "wrote $RESULTS"
