# shellcheck shell=bash
# Shell functions shared by the end-to-end benchmarks (sourced, not run).
# The caller sets `pids=()` (processes to stop on exit) and `work`.
# shellcheck disable=SC2154

log() { echo "[${bench_name:-bench}] $*" >&2; }

# A TCP port of 127.0.0.1 that nothing listens on.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if [[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]]; then
      echo "$p"
      return 0
    fi
  done
  echo "${bench_name:-bench}: no free port" >&2
  return 1
}

# wait_listen PID PORT SECONDS: true once PORT listens, false if PID died or time ran out.
wait_listen() {
  local pid=$1 port=$2 deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || return 1
    [[ -n $(ss -Htln "( sport = :$port )" 2>/dev/null) ]] && return 0
    sleep 0.1
  done
  return 1
}

# stop PID: SIGTERM, then SIGKILL after 20 s.
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Stops every pid in `pids`; removes `work` unless keep=1.
cleanup_pids_and_work() {
  local pid
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      sleep 0.5
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  if [[ ${keep:-0} -eq 1 ]]; then
    echo "kept $work" >&2
  else
    rm -rf "$work"
  fi
}

peak_rss_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
du_kb() { du -sk "$@" | awk '{s += $1} END {print s}'; }

# How many of the SOP Instance UIDs in UIDS_FILE occur in the text on stdin.
count_uids() { grep -oF -f "$1" | sort -u | wc -l; }

# now_s: seconds since the epoch with nanoseconds.
now_s() { date +%s.%N; }
# elapsed T0 T1: "12.34"
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }
# rate N SECONDS: "123.4"
rate() { awk -v n="$1" -v s="$2" 'BEGIN {printf "%.1f", (s > 0 ? n / s : 0)}'; }
# mbps BYTES SECONDS: "12.3"
mbps() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.1f", (s > 0 ? b / 1e6 / s : 0)}'; }

# CPU time, from /proc/PID/stat (PS: fields after "(comm) "; utime, stime,
# cutime, cstime are fields 14-17 of proc(5), in clock ticks).
# own_ticks PID: utime + stime + cutime + cstime of PID (its threads, and its
# children that it has reaped).
own_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}'; }
# child_ticks PID: the same, summed over the processes whose parent is PID,
# live or zombie (storescp --fork children not reaped yet).
child_ticks() {
  cat /proc/[0-9]*/stat 2>/dev/null |
    awk -v p="$1" '{sub(/.*\) /, ""); if ($2 == p) s += $12 + $13 + $14 + $15} END {print s + 0}'
}
# tree_ticks PID: CPU ticks of PID and its children, read consistently: a
# child reaped between the two reads would be counted twice or not at all,
# so read again until PID's own figure did not move meanwhile.
tree_ticks() {
  local a b c n
  for n in 1 2 3 4 5 6 7 8; do
    a=$(own_ticks "$1")
    c=$(child_ticks "$1")
    b=$(own_ticks "$1")
    [[ -n $a && $a == "$b" ]] && break
    [[ $n -eq 8 ]] && log "CPU of $1: children kept ending while read; figure may be off by one child"
  done
  echo $((${b:-0} + c))
}
clk_tck=$(getconf CLK_TCK)
# ticks_s TICKS: "1.23" seconds
ticks_s() { awk -v t="$1" -v h="$clk_tck" 'BEGIN {printf "%.2f", t / h}'; }
# children_hwm_kb PID: the largest VmHWM among PID's live children (0 if none).
children_hwm_kb() {
  local c m=0 v
  for c in $(pgrep -P "$1" 2>/dev/null); do
    v=$(peak_rss_kb "$c")
    [[ -n $v && $v -gt $m ]] && m=$v
  done
  echo "$m"
}

# files_in DIR: how many files DIR holds (recursively).
files_in() { find "$1" -type f | wc -l; }
# wait_files DIR N TIMEOUT_S [POLL_S]: true once DIR holds N files (looks every POLL_S, default 0.05 s).
wait_files() {
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    [[ $(files_in "$1") -ge $2 ]] && return 0
    sleep "${4:-0.05}"
  done
  return 1
}

# start_storescp DIR PORT [STORESCP_OPTION...]: storescp as AE ARCHIVE writing
# to DIR/out, logging to DIR/storescp.log; sets spid, adds it to `pids`, true
# once PORT listens.
start_storescp() {
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir/out"
  storescp -aet ARCHIVE +xa "$@" -od "$dir/out" "$port" >"$dir/storescp.log" 2>&1 &
  spid=$!
  pids+=("$spid")
  wait_listen "$spid" "$port" 15
}

# write_relais_config DIR LISTEN_PORT DEST_PORT: DIR/relais.toml (store in
# DIR/store) and DIR/rules.toml, which forwards everything to the destination
# "archive" (AE ARCHIVE on 127.0.0.1:DEST_PORT). Reads the caller's `level`
# (compression_level unless "default"), `max_assoc` and, if set, `pdu` (the
# listener's max_pdu).
write_relais_config() {
  mkdir -p "$1/store"
  cat >"$1/relais.toml" <<EOF
[listener]
ae_title = "RELAIS"
host = "127.0.0.1"
port = $2
$([[ -z ${pdu:-} ]] || echo "max_pdu = $pdu")
[store]
path = "$1/store"
$([[ $level == default ]] || echo "compression_level = $level")
[delivery]
idle_release_s = 30
[rules]
path = "$1/rules.toml"
EOF
  cat >"$1/rules.toml" <<EOF
[[destination]]
name = "archive"
ae_title = "ARCHIVE"
host = "127.0.0.1"
port = $3
max_associations = $max_assoc
retry = { initial_backoff = "1s", max_backoff = "2s" }

[[rule]]
name = "everything"
forward = ["archive"]
EOF
}
