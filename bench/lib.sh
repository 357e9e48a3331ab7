# Shell functions shared by the bench/ scripts (sourced, not run). The sourcing script sets PROXY_CORE,
# and ADMIN (name -> weir admin port) where it scrapes weir's metrics.

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# ---- processes: every one started here is recorded and stopped by PID at exit ----

declare -A STARTED=() # PIDs started and not yet stopped (keys)
declare -A PID=()     # name -> PID of the process started

# alive PID: the process exists and has not exited (an exited child stays a zombie until reaped).
alive() {
	local state
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[[ -n $state && $state != Z ]]
}

# stop_pid PID: SIGTERM, up to 10 s to exit, then SIGKILL; reaps it.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		alive "$pid" || break
		sleep 0.1
	done
	if alive "$pid"; then
		log "PID $pid ignored SIGTERM for 10 s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
	unset 'STARTED[$pid]'
}

cleanup() {
	local pid
	for pid in "${!STARTED[@]}"; do
		stop_pid "$pid"
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CORE LOGFILE CMD...: runs CMD pinned to CORE in the background and records its PID.
start() {
	local name=$1 core=$2 logfile=$3
	shift 3
	taskset -c "$core" "$@" >"$logfile" 2>&1 &
	PID[$name]=$!
	STARTED[$!]=1
}

# port_is_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_is_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port NAME PORT LOGFILE: waits up to 10 s for PORT to accept while NAME's process is alive.
wait_port() {
	local name=$1 port=$2 logfile=$3 i
	for ((i = 0; i < 100; i++)); do
		port_is_open "$port" && return 0
		alive "${PID[$name]}" || { tail -20 "$logfile" >&2; die "$name exited before listening on $port"; }
		sleep 0.1
	done
	tail -20 "$logfile" >&2
	die "$name does not listen on $port after 10 s"
}

# wait_closed PORT: waits up to 10 s for nothing to listen on PORT any more.
wait_closed() {
	local i
	for ((i = 0; i < 100; i++)); do
		port_is_open "$1" || return 0
		sleep 0.1
	done
	die "port $1 still accepts after its process was stopped"
}

# nginx_worker MASTER_PID: prints the PID of the only worker process, which serves every request (the
# master may accept on the port before forking it; with proxy_cache it also forks a cache manager and,
# for a minute, a cache loader, which are not workers).
nginx_worker() {
	local children=() workers=() i c
	for ((i = 0; i < 50 && ${#workers[@]} == 0; i++)); do
		sleep 0.1
		read -r -a children <"/proc/$1/task/$1/children" || true
		workers=()
		for c in "${children[@]}"; do
			tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null | grep -q 'worker process' && workers+=("$c")
		done
	done
	((${#workers[@]} == 1)) || die "nginx master $1 has ${#workers[@]} worker processes, want one"
	echo "${workers[0]}"
}

# ---- measurements ----

# core_jiffies: "busy total" jiffies of core PROXY_CORE (busy excludes idle and iowait).
core_jiffies() {
	awk -v cpu="cpu$PROXY_CORE" '$1 == cpu { print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat
}
# proc_jiffies PID: utime+stime of a process (fields after the parenthesised command name).
proc_jiffies() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
status_kb() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }

# raise_nofile N: raises the open-files soft limit to the hard one, which must allow N descriptors.
raise_nofile() {
	local hard
	hard=$(ulimit -Hn)
	[[ $hard == unlimited ]] || ((hard >= $1)) || die "open-files hard limit $hard is below $1"
	ulimit -n "$hard"
}

# scrape NAME FILE: weir NAME's /metrics (its admin port is ADMIN[NAME]) into FILE.
scrape() {
	curl -sS --max-time 5 -o "$2" "http://127.0.0.1:${ADMIN[$1]}/metrics" || die "$1: cannot scrape /metrics"
}
# metric FILE NAME [LABEL...]: the sum of NAME's samples in FILE that carry every LABEL (k="v"); 0 if none.
metric() {
	local file=$1 name=$2
	shift 2
	awk -v name="$name" -v labels="$*" 'BEGIN { n = split(labels, want, " ") }
		{ base = $1; sub(/\{.*/, "", base); if (base != name) next
		  for (i = 1; i <= n; i++) if (index($1, want[i]) == 0) next
		  sum += $NF }
		END { printf "%.0f\n", sum }' "$file"
}
