#!/usr/bin/env bash
# Legs are called indirectly ("leg_$name"): not unreachable.
# shellcheck disable=SC2317
# WAN benchmark: throughput through the emulated WAN link (tests/tools/wanlink)
# between two network namespaces, at 100 ms RTT, without and with loss.
#
#   bench/wan_link.sh [BUILD_DIR] [--ct N] [--ct-loss M] [--delay-ms D] [--losses LIST]
#                     [--rate BYTES_PER_S] [--iperf-seconds S] [--legs LIST] [--pdu BYTES]
#                     [--cc ALGO] [--tmp DIR] [--tsv FILE] [--keep]
#
# BUILD_DIR (default build/) must hold tests/tools/wanlink (target wanlink)
# and bench/relais_gen_data (target relais_gen_data). This script builds
# nothing. For every loss rate it brings up one link (PREFIXa 10.77.0.1 <->
# PREFIXb 10.77.0.2, one-way delay D, so RTT = 2 D), then measures:
#   - iperf3, 1 and 4 parallel TCP streams a -> b (skipped if iperf3 is absent);
#   - every leg in --legs with 1 and 4 parallel associations, each sending
#     its share of the CT images (512x512x16, ~525 KB, same generator as
#     bench/e2e_ingest.sh) from namespace a to a storescp in namespace b.
# It prints one table row per measurement. Root only (ip netns, /dev/net/tun).
#
# Adding a leg: write `leg_NAME ASSOCS RUN_DIR` (see leg_direct and the
# leg_relais sketch below) and pass --legs direct,NAME.
#
# Requires: storescu, storescp (dcmtk), ip (iproute2), ss; optional iperf3.
set -euo pipefail

usage() {
  sed -n '/^# WAN benchmark/,/^# Requires/p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --ct N             CT images per run without loss. Default: 200
  --ct-loss M        CT images per run with loss (TCP is slow there). Default: 24
  --delay-ms D       one-way delay. Default: 50 (RTT 100 ms)
  --losses LIST      comma-separated loss probabilities. Default: 0,0.02
  --rate B           link rate limit, bytes/s (0 = none). Default: 0
  --iperf-seconds S  duration of each iperf3 run. Default: 10
  --legs LIST        comma-separated DICOM legs: direct (storescu -> storescp), relais
                     (storescu -> relais -> storescp), relais_jls (same, destination
                     prefers JPEG-LS lossless), relais_drain (delivery alone: queued
                     while the link is down, timed from the first arrival),
                     relais_default and relais_default_drain (the same two with the
                     destination as a new user writes it: name, AE title, host, port;
                     adaptive concurrency), relais_relay_drain (relais_drain to a
                     Relais in namespace b: the asynchronous operations window).
                     Default: direct
  --relais-assoc A   tuned legs (relais, relais_jls, relais_drain): concurrency = "fixed",
                     max_associations = A. Default: 32
  --pdu BYTES        max PDU of storescp and storescu. Default: 131072
  --cc ALGO          TCP congestion control in both namespaces (e.g. reno, bbr; a
                     namespace may only pick one listed in the host's
                     net.ipv4.tcp_allowed_congestion_control). Default: the
                     kernel's. It matters with loss: BBR barely reacts to random
                     loss, loss-based Reno/CUBIC cut their window on every loss
  --tmp DIR          parent of the temporary directory. Default: $TMPDIR or /tmp
  --tsv FILE         also write the rows as tab-separated values to FILE
  --keep             keep the temporary directory (prints its path)
Env: TCP_NODELAY (DCMTK reads it) is 1 unless set; WAN_SEED seeds the loss.
EOF
}

repo=$(cd "$(dirname "$0")/.." && pwd)
build="$repo/build"
ct=200
ct_loss=24
delay_ms=50
losses="0,0.02"
link_rate=0
iperf_s=10
legs="direct"
relais_assoc=32
pdu=131072
cc=""
tmp_parent=${TMPDIR:-/tmp}
tsv=""
keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ct) ct=$2; shift 2 ;;
    --ct-loss) ct_loss=$2; shift 2 ;;
    --delay-ms) delay_ms=$2; shift 2 ;;
    --losses) losses=$2; shift 2 ;;
    --rate) link_rate=$2; shift 2 ;;
    --iperf-seconds) iperf_s=$2; shift 2 ;;
    --legs) legs=$2; shift 2 ;;
    --relais-assoc) relais_assoc=$2; shift 2 ;;
    --pdu) pdu=$2; shift 2 ;;
    --cc) cc=$2; shift 2 ;;
    --tmp) tmp_parent=$2; shift 2 ;;
    --tsv) tsv=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    *) build=$(cd "$1" && pwd); shift ;;
  esac
done

bench_name=wan
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"

gen="$build/bench/relais_gen_data"
relais="$build/router/relais"
export WANLINK="$build/tests/tools/wanlink"
wan_env="$repo/tests/tools/wan_env.sh"
export TCP_NODELAY=${TCP_NODELAY:-1}
for tool in storescu storescp ip ss; do
  command -v "$tool" >/dev/null || { echo "wan_link: $tool not found" >&2; exit 2; }
done
[[ $(id -u) -eq 0 ]] || { echo "wan_link: must run as root" >&2; exit 2; }
[[ -x $gen ]] || { echo "wan_link: $gen missing: build target relais_gen_data" >&2; exit 2; }
[[ -x $WANLINK ]] || { echo "wan_link: $WANLINK missing: build target wanlink" >&2; exit 2; }
have_iperf=0
command -v iperf3 >/dev/null && have_iperf=1

prefix="rwb$$"
"$wan_env" sweep rwb  # links of benchmark runs that were killed
ns_a="${prefix}a"
ns_b="${prefix}b"
addr_b=10.77.0.2
work=$(mktemp -d "$tmp_parent/relais-wan.XXXXXX")
pids=()

cleanup() {
  cleanup_pids_and_work
  "$wan_env" down "$prefix" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run a command in namespace a / b. Not for background jobs whose pid matters
# (`in_a cmd &` makes $! a subshell): call `ip netns exec` directly there.
in_a() { ip netns exec "$ns_a" "$@"; }
in_b() { ip netns exec "$ns_b" "$@"; }

# wait_listen_in NS PORT SECONDS: true once PORT listens inside NS.
wait_listen_in() {
  local ns=$1 port=$2 deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    [[ -n $(ip netns exec "$ns" ss -Htln "( sport = :$port )" 2>/dev/null) ]] && return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------- data
# One generated set of max(ct, ct_loss) images; for each run, N of them are
# hard-linked into ASSOCS directories (round robin), one per association.
data="$work/data"
n_max=$((ct > ct_loss ? ct : ct_loss))
log "generating $n_max CT images in $data"
"$gen" --out "$data" --ct "$n_max" --small 0 --seed 1 >/dev/null 2>"$work/gen.log" ||
  { cat "$work/gen.log" >&2; exit 1; }
mapfile -t ct_files < <(find "$data/ct" -type f | sort)
cat "${ct_files[@]}" >/dev/null

# split_set N ASSOCS DIR: DIR/0 .. DIR/ASSOCS-1 holding the first N images; prints their bytes.
split_set() {
  local n=$1 k=$2 dir=$3 i bytes=0
  for ((i = 0; i < k; i++)); do mkdir -p "$dir/$i"; done
  for ((i = 0; i < n; i++)); do
    ln "${ct_files[$i]}" "$dir/$((i % k))/"
    bytes=$((bytes + $(stat -c %s "${ct_files[$i]}")))
  done
  echo "$bytes"
}

# ---------------------------------------------------------------- helpers for legs
# start_storescp_b DIR PORT: storescp in namespace b (forks per association),
# files into DIR/out. Sets `scp_pid`.
start_storescp_b() {
  local dir=$1 port=$2
  mkdir -p "$dir/out"
  # Not through in_b: $! must be the process that becomes storescp.
  ip netns exec "$ns_b" storescp -aet STORESCP --fork +xa -pdu "$pdu" -od "$dir/out" "$port" \
    >"$dir/storescp.log" 2>&1 &
  scp_pid=$!
  pids+=("$scp_pid")
  wait_listen_in "$ns_b" "$port" 15
}

# stop_all_in NS: stops every process left in namespace NS (only ours run there).
stop_all_in() {
  local p
  for p in $(ip netns pids "$1" 2>/dev/null); do stop_pid "$p"; done
}

# send_from_a HOST PORT AET SETDIR ASSOCS LOGDIR: one storescu per SETDIR/i,
# all at once, from namespace a; returns non-zero if any failed.
send_from_a() {
  local host=$1 port=$2 aet=$3 set=$4 k=$5 logdir=$6 i rc=0
  local -a scus=()
  for ((i = 0; i < k; i++)); do
    ip netns exec "$ns_a" storescu -v -aet WANSCU -aec "$aet" -pdu "$pdu" "$host" "$port" +sd "$set/$i" \
      >"$logdir/storescu-$i.log" 2>&1 &
    scus+=($!)
    pids+=($!)
  done
  for i in "${scus[@]}"; do wait "$i" || rc=1; done
  return $rc
}

# Objects storescp kept in DIR/out (files named MODALITY.UID; counted once
# each), or, with a receiving Relais (relais_relay legs), the objects it
# stored (its log's event=stored lines).
count_out() {
  if [[ -f $1/relaisb.log ]]; then
    grep -c 'event=stored' "$1/relaisb.log" || true
    return
  fi
  find "$1/out" -type f -printf '%f\n' | sort -u | wc -l
}

# start_relais_b DIR PORT: a Relais in namespace b listening as STORESCP
# (it keeps what it gets; no rules), log in DIR/relaisb.log. Sets `scp_pid`.
start_relais_b() {
  local dir=$1 port=$2
  mkdir -p "$dir/storeb"
  printf '%s\n' "[listener]" 'ae_title = "STORESCP"' "host = \"$addr_b\"" "port = $port" "max_pdu = $pdu" \
    "[store]" "path = \"$dir/storeb\"" >"$dir/relaisb.toml"
  ip netns exec "$ns_b" "$relais" serve --config "$dir/relaisb.toml" >"$dir/relaisb.log" 2>&1 &
  scp_pid=$!
  pids+=("$scp_pid")
  wait_listen_in "$ns_b" "$port" 15
}

# wait_count DIR N SECONDS: true once DIR/out holds N objects.
wait_count() {
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    (($(count_out "$1") >= $2)) && return 0
    sleep 0.2
  done
  return 1
}

# ---------------------------------------------------------------- legs
# leg_NAME ASSOCS RUN_DIR: sends the images in RUN_DIR/set/0..ASSOCS-1 from
# namespace a and ends when they are all in a storescp of namespace b. It sets
# `leg_objects` (kept by the final receiver) and `leg_note` (problems, or "");
# the caller times it, unless the leg sets `leg_secs` itself.

# storescu (ns a) -> storescp (ns b), straight over the WAN.
leg_direct() {
  local k=$1 dir=$2 scp_pid=""
  leg_note=""
  start_storescp_b "$dir" 11112 || { leg_note="storescp did not start"; leg_objects=0; return; }
  send_from_a "$addr_b" 11112 STORESCP "$dir/set" "$k" "$dir" || leg_note="storescu failed (logs: $dir)"
  leg_objects=$(count_out "$dir")
  stop_pid "$scp_pid"
  stop_all_in "$ns_b"  # storescp's forked children
}

# storescu (ns a) -> relais (ns a, 127.0.0.1) -> over the WAN -> storescp
# (ns b), Relais opening up to $relais_assoc associations to storescp. ASSOCS
# is the number of storescu feeding Relais (locally, not over the WAN).
# Timing ends when storescp has them all. $3: extra destination keys (e.g.
# a transfer syntax preference).
relais_leg() {
  local k=$1 dir=$2 extra=$3 drain=${4:-0} tuned=${5:-1} receiver=${6:-storescp} scp_pid="" rpid n t_first
  # Tuned: a fixed number of associations and short retries. Default: the
  # destination as rules/README.md starts it (name, AE title, host, port),
  # adaptive concurrency finding the number itself.
  local keys=()
  [[ $tuned -eq 1 ]] && keys=('concurrency = "fixed"' "max_associations = $relais_assoc"
    'retry = { initial_backoff = "1s", max_backoff = "4s" }')
  leg_note=""
  [[ -x $relais ]] || { leg_note="$relais not built"; leg_objects=0; return; }
  if [[ $receiver == relais ]]; then
    start_relais_b "$dir" 11112 || { leg_note="receiving relais did not start"; leg_objects=0; return; }
  else
    start_storescp_b "$dir" 11112 || { leg_note="storescp did not start"; leg_objects=0; return; }
  fi
  mkdir -p "$dir/store"
  printf '%s\n' "[[destination]]" 'name = "farsite"' 'ae_title = "STORESCP"' "host = \"$addr_b\"" "port = 11112" \
    "${keys[@]}" "$extra" "" "[[rule]]" 'name = "all"' 'forward = ["farsite"]' >"$dir/rules.toml"
  printf '%s\n' "[listener]" 'ae_title = "RELAIS"' 'host = "127.0.0.1"' "port = 11113" "max_pdu = $pdu" \
    "[store]" "path = \"$dir/store\"" "[delivery]" "idle_release_s = 30" "connect_timeout_s = 2" \
    "[rules]" "path = \"$dir/rules.toml\"" >"$dir/relais.toml"
  # Drain: the link is down while Relais takes everything in; timing starts
  # at the first arrival after it comes back (delivery alone).
  [[ $drain -eq 1 ]] && "$wan_env" ctl "$prefix" down >/dev/null
  ip netns exec "$ns_a" "$relais" serve --config "$dir/relais.toml" >"$dir/relais.log" 2>&1 &
  rpid=$!
  pids+=("$rpid")
  wait_listen_in "$ns_a" 11113 15 || { leg_note="relais did not start"; leg_objects=0; return; }
  send_from_a 127.0.0.1 11113 RELAIS "$dir/set" "$k" "$dir" || leg_note="storescu failed (logs: $dir)"
  n=$(find "$dir/set" -type f | wc -l)
  if [[ $drain -eq 1 ]]; then
    "$wan_env" ctl "$prefix" up >/dev/null
    wait_count "$dir" 1 60 || true
    t_first=$(now_s)
  fi
  wait_count "$dir" "$n" 1800 || leg_note+=" delivery incomplete (logs: $dir)"
  [[ $drain -eq 1 ]] && leg_secs=$(elapsed "$t_first" "$(now_s)")
  leg_objects=$(count_out "$dir")
  stop_pid "$rpid"
  stop_pid "$scp_pid"
  stop_all_in "$ns_b"
}
# As stored (Explicit VR Little Endian).
leg_relais() { relais_leg "$1" "$2" ""; }
# The destination prefers JPEG-LS lossless: Relais compresses before sending.
leg_relais_jls() { relais_leg "$1" "$2" 'transfer_syntaxes = ["JPEGLSLossless", "ExplicitVRLittleEndian"]'; }
# Delivery alone: everything is queued while the link is down, then timed
# from the first arrival after it comes back up.
leg_relais_drain() { relais_leg "$1" "$2" "" 1; }
# "relais (default config)": the destination with only name, AE title, host
# and port (adaptive concurrency), fed like leg_relais / drained like
# leg_relais_drain.
leg_relais_default() { relais_leg "$1" "$2" "" 0 0; }
leg_relais_default_drain() { relais_leg "$1" "$2" "" 1 0; }
# Relais -> Relais: the receiver is a Relais in namespace b, which grants the
# asynchronous operations window (up to 16 C-STOREs in flight on each
# association; storescp answers none: one at a time). Drained like
# leg_relais_drain, tuned (--relais-assoc); compare with relais_drain at the
# same --relais-assoc (e.g. 1) for the window's gain.
leg_relais_relay_drain() { relais_leg "$1" "$2" "" 1 1 relais; }

# Bytes the link forwarded a -> b so far (wanlink stats).
wire_bytes_ab() {
  local v
  v=$("$wan_env" ctl "$prefix" stats 2>/dev/null | tr '|' '\n' |
    awk '/^a->b/ { for (i = 1; i <= NF; i++) if ($i == "bytes;") { print $(i - 1); exit } }')
  echo "${v:-0}"
}

# ---------------------------------------------------------------- iperf3
# iperf_run STREAMS: prints the receiver's MB/s (1e6 bytes).
iperf_run() {
  local p=$1 port=5201 srv out
  ip netns exec "$ns_b" iperf3 -s -1 -p "$port" >"$work/iperf-server.log" 2>&1 &
  srv=$!
  pids+=("$srv")
  wait_listen_in "$ns_b" "$port" 10 || { echo "n/a"; return; }
  out=$(in_a iperf3 -c "$addr_b" -p "$port" -P "$p" -t "$iperf_s" -f M 2>&1) || true
  wait "$srv" 2>/dev/null || true
  # Last "receiver" line is the total ([SUM] with -P > 1). -f M prints MBytes/sec (2^20).
  awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "MBytes/sec") v = $(i - 1) }
       END { if (v == "") print "n/a"; else printf "%.1f", v * 1048576 / 1e6 }' <<<"$out"
}

# ---------------------------------------------------------------- runs
rows=()
failures=()
IFS=, read -r -a loss_list <<<"$losses"
IFS=, read -r -a leg_list <<<"$legs"
for leg in "${leg_list[@]}"; do
  declare -F "leg_$leg" >/dev/null || { echo "wan_link: unknown leg $leg" >&2; exit 2; }
done
rtt=$((2 * delay_ms))
for loss in "${loss_list[@]}"; do
  "$wan_env" up "$prefix" "$delay_ms" "$loss" "$link_rate" 2>"$work/wan_env.log" ||
    { cat "$work/wan_env.log" >&2; exit 1; }
  if [[ -n $cc ]]; then
    for ns in "$ns_a" "$ns_b"; do
      ip netns exec "$ns" sysctl -qw net.ipv4.tcp_congestion_control="$cc" ||
        { echo "wan_link: cannot set congestion control $cc" >&2; exit 2; }
    done
  fi
  ns_cc=$(in_a cat /proc/sys/net/ipv4/tcp_congestion_control)
  ns_rmem=$(in_a cat /proc/sys/net/ipv4/tcp_rmem | tr '\t' ' ')
  ns_wmem=$(in_a cat /proc/sys/net/ipv4/tcp_wmem | tr '\t' ' ')
  if [[ $have_iperf -eq 1 ]]; then
    for p in 1 4; do
      log "iperf3 -P $p, RTT $rtt ms, loss $loss"
      rows+=("$rtt|$loss|iperf3|$p|$iperf_s|-|$(iperf_run "$p")|-")
    done
  fi
  n=$ct
  [[ $loss != 0 && $loss != 0.0 ]] && n=$ct_loss
  for leg in "${leg_list[@]}"; do
    for k in 1 4; do
      dir="$work/run-$leg-$loss-$k"
      mkdir -p "$dir"
      bytes=$(split_set "$n" "$k" "$dir/set")
      log "$leg: $n CT, $k association(s), RTT $rtt ms, loss $loss"
      leg_objects=0
      leg_note=""
      leg_secs=""
      wire0=$(wire_bytes_ab)
      t0=$(now_s)
      "leg_$leg" "$k" "$dir"
      t1=$(now_s)
      wire=$(($(wire_bytes_ab) - wire0))
      secs=${leg_secs:-$(elapsed "$t0" "$t1")}
      [[ $leg_objects -ne $n ]] && leg_note+=" kept $leg_objects/$n"
      [[ -n $leg_note ]] && { failures+=("$leg loss $loss x$k:$leg_note"); keep=1; }
      rows+=("$rtt|$loss|$leg|$k|$secs|$(rate "$leg_objects" "$secs")|$(mbps "$bytes" "$secs")|$(awk -v w="$wire" 'BEGIN {printf "%.1f", w / 1e6}')")
      [[ $keep -eq 1 ]] || rm -rf "$dir"
    done
  done
  "$wan_env" ctl "$prefix" stats | tr '|' '\n' | sed 's/^/  /' >&2 || true
  "$wan_env" down "$prefix" 2>/dev/null
done

# ---------------------------------------------------------------- table
echo
echo "link: one-way delay $delay_ms ms (RTT $rtt ms), rate ${link_rate} B/s (0 = unlimited), MTU 1500;" \
  "CT ~$(( $(stat -c %s "${ct_files[0]}") / 1000 )) KB; max PDU $pdu; TCP_NODELAY=$TCP_NODELAY;" \
  "namespace TCP congestion control $ns_cc, tcp_rmem $ns_rmem, tcp_wmem $ns_wmem; $(nproc) cores"
row() { printf '%-7s %-6s %-10s %-14s %8s %10s %8s %8s\n' "$@"; }
echo "MB/s: the images' bytes (iperf3: TCP payload) per second; wire MB: IP bytes the link carried a -> b."
echo "relais legs: ASSOCS storescu feed Relais locally; tuned legs send with $relais_assoc associations (fixed);"
echo "relais_default legs: the destination has only name, AE title, host and port (adaptive concurrency)."
row RTT_ms loss test streams/assocs seconds objects/s MB/s "wire MB"
row ------- ------ ---------- -------------- -------- ---------- -------- --------
[[ -n $tsv ]] && printf 'rtt_ms\tloss\ttest\tparallel\tseconds\tobjects_per_s\tmb_per_s\twire_mb\n' >"$tsv"
for r in "${rows[@]}"; do
  IFS='|' read -r a b c d e f g h <<<"$r"
  row "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h"
  [[ -n $tsv ]] && printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" >>"$tsv"
done
if [[ ${#failures[@]} -gt 0 ]]; then
  echo
  echo "problems:"
  printf '  %s\n' "${failures[@]}"
  exit 1
fi
