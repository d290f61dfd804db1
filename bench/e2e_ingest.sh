#!/usr/bin/env bash
# Functions are called indirectly ("start_$recv", trap): not unreachable.
# shellcheck disable=SC2317
# End-to-end ingest benchmark: Relais vs DCMTK storescp (with and without
# fsync per file) vs Orthanc, same data, same run.
#
#   bench/e2e_ingest.sh [BUILD_DIR] [--ct N] [--small M] [--large-mb L] [--senders LIST]
#                       [--receivers LIST] [--reps R] [--nodelay LIST] [--rss-object-mb B]
#                       [--quick] [--seed S] [--pdu BYTES] [--tmp DIR] [--tsv FILE] [--keep]
#
# BUILD_DIR (default build/) must hold bench/relais_gen_data (target
# relais_gen_data), bench/librelais_fsync_shim.so (target relais_fsync_shim)
# and, for the Relais rows, router/relais (target relais). This script builds
# nothing. For every data set (CT, small objects, one large object), every
# number of parallel senders (1, 4), every TCP_NODELAY setting and every
# receiver, it starts a fresh receiver on a free port of 127.0.0.1, sends
# the whole set with K storescu processes at once (one association each,
# files dealt round robin), checks that the receiver kept every object,
# stops it and records objects/s, MB/s, the receiver's CPU seconds per GB,
# its peak RSS and stored/raw. Each leg runs R times, the receivers
# interleaved (A B C A B C), and the table shows each receiver's best run.
# With --rss-object-mb B it then sends one object of B MB to Relais alone
# and prints Relais's peak RSS. See bench/README.md for how to read it.
#
# Requires: storescu, storescp (dcmtk), /usr/sbin/Orthanc (orthanc), curl, ss, du, timeout.
set -euo pipefail

usage() {
  sed -n '/^# End-to-end/,/^# Requires/p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --ct N            CT images (512x512x16, ~525 KB each). Default: 1000
  --small M         small objects (~21 KB each). Default: 1000
  --large-mb L      one multi-frame object of ~L MB, sent by 1 sender (0: none). Default: 200
  --senders LIST    numbers of parallel storescu processes. Default: 1,4
  --receivers LIST  subset of relais,relais_l0,storescp,storescp_fsync,orthanc. Default: all
                    (relais_l0 is Relais with compression_level = 0; storescp and
                    storescp_fsync run with --fork when there is more than one sender)
  --reps R          runs of each leg, interleaved; the best is shown. Default: 2
  --nodelay LIST    TCP_NODELAY settings, of 1,unset. Default: 1
  --rss-object-mb B afterwards, Relais's peak RSS receiving one object of B MB
                    (1000 for the 1 GB target; 0: skip). Default: 0
  --quick           smoke run: --ct 40 --small 40 --large-mb 20 (about a minute)
  --seed S          pixel seed for the generator. Default: 1
  --pdu BYTES       max PDU every receiver announces (storescp allows <= 131072). Default: 131072
  --tmp DIR         parent of the temporary directory (data and stores, same disk). Default: $TMPDIR or /tmp
  --tsv FILE        also write the best rows as tab-separated values to FILE
  --keep            keep the temporary directory (prints its path)
EOF
}

repo=$(cd "$(dirname "$0")/.." && pwd)
build="$repo/build"
ct=1000
small=1000
large_mb=200
senders_list="1,4"
receivers="relais,relais_l0,storescp,storescp_fsync,orthanc"
reps=2
nodelays="1"
rss_mb=0
seed=1
pdu=131072
tmp_parent=${TMPDIR:-/tmp}
tsv=""
keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ct) ct=$2; shift 2 ;;
    --small) small=$2; shift 2 ;;
    --large-mb) large_mb=$2; shift 2 ;;
    --senders) senders_list=$2; shift 2 ;;
    --receivers) receivers=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --nodelay) nodelays=$2; shift 2 ;;
    --rss-object-mb) rss_mb=$2; shift 2 ;;
    --quick) ct=40; small=40; large_mb=20; shift ;;
    --seed) seed=$2; shift 2 ;;
    --pdu) pdu=$2; shift 2 ;;
    --tmp) tmp_parent=$2; shift 2 ;;
    --tsv) tsv=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    *) build=$(cd "$1" && pwd); shift ;;
  esac
done

gen="$build/bench/relais_gen_data"
shim="$build/bench/librelais_fsync_shim.so"
relais="$build/router/relais"
orthanc_bin=/usr/sbin/Orthanc
for tool in storescu storescp curl ss du timeout; do
  command -v "$tool" >/dev/null || { echo "e2e_ingest: $tool not found" >&2; exit 2; }
done
[[ -x "$gen" ]] || { echo "e2e_ingest: $gen missing: build target relais_gen_data first" >&2; exit 2; }
IFS=, read -r -a recv_list <<<"$receivers"
IFS=, read -r -a senders_of <<<"$senders_list"
IFS=, read -r -a nd_list <<<"$nodelays"
for recv in "${recv_list[@]}"; do
  case "$recv" in
    relais|relais_l0|storescp|orthanc) ;;
    storescp_fsync) [[ -f $shim ]] || { echo "e2e_ingest: $shim missing: build target relais_fsync_shim" >&2; exit 2; } ;;
    *) echo "e2e_ingest: unknown receiver $recv (relais,relais_l0,storescp,storescp_fsync,orthanc)" >&2; exit 2 ;;
  esac
done
for k in "${senders_of[@]}"; do
  [[ $k =~ ^[1-9][0-9]*$ ]] || { echo "e2e_ingest: --senders wants numbers >= 1, not $k" >&2; exit 2; }
done
for nd in "${nd_list[@]}"; do
  [[ $nd == 1 || $nd == unset ]] || { echo "e2e_ingest: --nodelay wants 1 or unset, not $nd" >&2; exit 2; }
done
[[ $reps =~ ^[1-9][0-9]*$ ]] || { echo "e2e_ingest: --reps wants a number >= 1" >&2; exit 2; }

work=$(mktemp -d "$tmp_parent/relais-e2e.XXXXXX")
pids=()  # every process this script started

bench_name=e2e_ingest
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
trap cleanup_pids_and_work EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- data
data="$work/data"
log "generating $ct CT + $small small objects + one of $large_mb MB in $data"
"$gen" --out "$data" --ct "$ct" --small "$small" --large-mb "$large_mb" --seed "$seed" >/dev/null 2>"$work/gen.log" ||
  { cat "$work/gen.log" >&2; exit 1; }
sets=()
declare -A set_dir=([ct]="$data/ct" [small]="$data/small" [large]="$data/large")
declare -A set_count=([ct]=$ct [small]=$small [large]=$((large_mb > 0 ? 1 : 0)))
declare -A set_bytes set_kb
for s in ct small large; do
  [[ ${set_count[$s]} -gt 0 ]] || continue
  sets+=("$s")
  set_bytes[$s]=$(find "${set_dir[$s]}" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  set_kb[$s]=$(du_kb "${set_dir[$s]}")
  find "${set_dir[$s]}" -type f | sort >"$work/$s.files"
  cat "${set_dir[$s]}"/* >/dev/null 2>&1 || true  # same page-cache state for every receiver
done

# ---------------------------------------------------------------- receivers
# start_<receiver> RUN_DIR PORT SENDERS: starts it in the background, sets
# `rpid` and `aet`; returns non-zero if it does not come up.
start_storescp() {
  local dir=$1 port=$2 k=$3
  local -a fork=()
  [[ $k -gt 1 ]] && fork=(--fork)
  mkdir -p "$dir/out"
  aet=STORESCP
  # +xa: accept every supported transfer syntax; storescp accepts all standard
  # storage SOP classes by default. --fork: one process per association.
  storescp "${fork[@]}" -aet "$aet" +xa -pdu "$pdu" -od "$dir/out" "$port" >"$dir/receiver.log" 2>&1 &
  rpid=$!
  pids+=("$rpid")
  wait_listen "$rpid" "$port" 15
}
# The same with the shim, which fsyncs each file before closing it and keeps
# its count in $dir/fsyncs.PID (bench/tools/fsync_shim.c).
start_storescp_fsync() {
  LD_PRELOAD=$shim RELAIS_FSYNC_SHIM_LOG="$1/fsyncs" start_storescp "$@"
}
# storescp names its files <modality>.<SOP Instance UID>.
count_storescp() { find "$1/out" -type f -printf '%f\n' | count_uids "$2"; }
count_storescp_fsync() { count_storescp "$@"; }

start_orthanc() {
  local dir=$1 port=$2 http
  http=$(free_port)
  mkdir -p "$dir/storage" "$dir/index"
  aet=ORTHANC
  cat >"$dir/orthanc.json" <<EOF
{
  "Name" : "relais-bench",
  "StorageDirectory" : "$dir/storage",
  "IndexDirectory" : "$dir/index",
  "StorageCompression" : false,
  "Plugins" : [ ],
  "LuaScripts" : [ ],
  "DicomServerEnabled" : true,
  "DicomAet" : "$aet",
  "DicomPort" : $port,
  "DicomCheckCalledAet" : false,
  "DicomAlwaysAllowStore" : true,
  "DicomModalities" : { },
  "MaximumPduLength" : $pdu,
  "HttpServerEnabled" : true,
  "HttpPort" : $http,
  "RemoteAccessAllowed" : false,
  "AuthenticationEnabled" : false,
  "SaveJobs" : false
}
EOF
  echo "$http" >"$dir/http_port"
  "$orthanc_bin" "$dir/orthanc.json" >"$dir/receiver.log" 2>&1 &
  rpid=$!
  pids+=("$rpid")
  local deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    kill -0 "$rpid" 2>/dev/null || return 1
    if curl -sf "http://127.0.0.1:$http/system" >/dev/null 2>&1; then
      wait_listen "$rpid" "$port" 10
      return
    fi
    sleep 0.2
  done
  return 1
}
# Asked while Orthanc still runs (set `got` before it is stopped).
count_orthanc() {
  curl -sf "http://127.0.0.1:$(cat "$1/http_port")/statistics" |
    tr -d ' \n' | sed -n 's/.*"CountInstances":\([0-9]*\).*/\1/p'
}

# Relais with what a fresh relais.toml gives: only the listener's address,
# AE title and max PDU (the same for every receiver) and the store path are
# set; relais_l0 adds compression_level = 0.
start_relais() {
  local dir=$1 port=$2 extra=${4:-}
  [[ -x "$relais" ]] || return 1
  mkdir -p "$dir/store"
  aet=RELAIS
  cat >"$dir/relais.toml" <<EOF
[listener]
ae_title = "$aet"
host = "127.0.0.1"
port = $port
max_pdu = $pdu

[store]
path = "$dir/store"
$extra
EOF
  "$relais" serve --config "$dir/relais.toml" >"$dir/receiver.log" 2>&1 &
  rpid=$!
  pids+=("$rpid")
  wait_listen "$rpid" "$port" 15
}
start_relais_l0() { start_relais "$1" "$2" "$3" "compression_level = 0"; }
# Counted with `relais store ls` (read-only LMDB open) after the server
# stopped: lines that name one of our SOP Instance UIDs. Prints nothing if the
# listing fails.
count_relais() {
  local out
  out=$("$relais" store ls --config "$1/relais.toml" 2>/dev/null) || return 0
  count_uids "$2" <<<"$out"
}
count_relais_l0() { count_relais "$@"; }

stored_kb() {
  case "$1" in
    relais*) du_kb "$2/store" ;;
    storescp*) du_kb "$2/out" ;;
    orthanc) du_kb "$2/storage" "$2/index" ;;
  esac
}

# How a receiver is named in the table.
label() {
  local l=$1
  [[ $l == storescp_fsync ]] && l="storescp+fsync"
  [[ $l == storescp* && $2 -gt 1 ]] && l+=" --fork"
  echo "$l"
}

# ---------------------------------------------------------------- runs
# Results of every run, by "recv|set|senders|nodelay" and run number.
declare -A res_secs res_row
failures=()
relais_failed=0

# run_one RECEIVER SET SENDERS NODELAY(1|unset) REP
run_one() {
  local recv=$1 set=$2 k=$3 nd=$4 rep=$5 dir port rpid="" aet="" rc t0 t1 ok_rsp got secs stored
  local key="$recv|$set|$k|$nd" lbl
  lbl=$(label "$recv" "$k")
  dir="$work/run-$recv-$set-$k-$nd-$rep"
  mkdir -p "$dir"
  port=$(free_port)
  local -a envs=(env -u TCP_NODELAY)
  [[ $nd == 1 ]] && envs=(env TCP_NODELAY=1)
  log "run $rep/$reps: $lbl, $set, $k sender(s), TCP_NODELAY=$nd, port $port"
  # The receiver gets the same TCP_NODELAY as storescu (storescp and Orthanc
  # use DCMTK's network layer, which reads it).
  local started=0
  if [[ $nd == 1 ]]; then export TCP_NODELAY=1; else unset TCP_NODELAY; fi
  "start_$recv" "$dir" "$port" "$k" && started=1
  unset TCP_NODELAY
  if [[ $started -eq 0 ]]; then
    local why
    if [[ $recv == relais* && ! -x $relais ]]; then
      why="$relais not built"
    else
      why="did not start: $(tail -n 3 "$dir/receiver.log" 2>/dev/null | tr '\n' ' ')"
    fi
    failures+=("$lbl $set $k sender(s) TCP_NODELAY=$nd: $why")
    [[ $recv == relais* ]] && relais_failed=1
    [[ -n ${rpid:-} ]] && stop_pid "$rpid"
    return
  fi

  # K storescu at once, one association each, the files dealt round robin.
  # They run in the background so that a signal reaches the trap at once
  # (bash runs traps only after a foreground command ends; `wait` returns).
  rm -f "$work/$set.part."*
  split -n "r/$k" -d -a 3 "$work/$set.files" "$work/$set.part."
  local cpu0 cpu1 hwm=0 sampler="" part i=0
  local -a scus=() files=()
  cpu0=$(tree_ticks "$rpid")
  if [[ $recv == storescp* && $k -gt 1 ]]; then
    # --fork: each association has its own short-lived child; sample their peaks.
    (
      m=0
      while kill -0 "$rpid" 2>/dev/null; do
        v=$(children_hwm_kb "$rpid")
        ((v > m)) && { m=$v; echo "$m" >"$dir/children_hwm"; }
        sleep 0.05
      done
    ) &
    sampler=$!
    pids+=("$sampler")
  fi
  t0=$(now_s)
  for part in "$work/$set.part."*; do
    mapfile -t files <"$part"
    [[ ${#files[@]} -gt 0 ]] || continue
    "${envs[@]}" timeout 900 storescu -v -aet BENCHSCU -aec "$aet" 127.0.0.1 "$port" "${files[@]}" \
      >"$dir/storescu.$i.log" 2>&1 &
    scus+=($!)
    pids+=($!)
    i=$((i + 1))
  done
  rc=0
  for i in "${scus[@]}"; do wait "$i" || rc=$?; done
  t1=$(now_s)
  # storescp --fork children end just after their association: wait for them.
  for i in $(seq 1 100); do
    [[ -z $(pgrep -P "$rpid" -r R,S,D 2>/dev/null) ]] && break
    sleep 0.05
  done
  # Work the receiver still does for what it took (after the last response)
  # counts too: read until its CPU time stops moving (at most 2 s).
  cpu1=$(tree_ticks "$rpid")
  for i in $(seq 1 20); do
    sleep 0.1
    local c
    c=$(tree_ticks "$rpid")
    [[ $c -eq $cpu1 ]] && break
    cpu1=$c
  done
  hwm=$(peak_rss_kb "$rpid")
  if [[ -n $sampler ]]; then
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    [[ -f $dir/children_hwm ]] && hwm=$(cat "$dir/children_hwm")
  fi
  ok_rsp=$(cat "$dir"/storescu.*.log | grep -c 'Received Store Response (Success)' || true)
  local assocs
  assocs=$(cat "$dir"/storescu.*.log | grep -c 'Requesting Association' || true)
  got=""
  if [[ $recv == orthanc ]]; then got=$(count_orthanc "$dir"); fi
  stop_pid "$rpid"
  [[ $recv == orthanc ]] || got=$("count_$recv" "$dir" "$data/$set.uids")
  stored=$(stored_kb "$recv" "$dir")

  local want=${set_count[$set]} problem=""
  if [[ $rc -ne 0 ]]; then problem+="a storescu exited $rc; "; fi
  if [[ $assocs -ne ${#scus[@]} ]]; then problem+="$assocs associations for ${#scus[@]} storescu; "; fi
  if [[ $ok_rsp -ne $want ]]; then problem+="$ok_rsp/$want Success responses; "; fi
  if [[ -z $got ]]; then
    problem+="receiver count unavailable; "
    got=$ok_rsp
  elif [[ $got -ne $want ]]; then
    problem+="receiver kept $got/$want; "
  fi
  if [[ $recv == storescp_fsync ]]; then
    local synced
    synced=$(cat "$dir"/fsyncs.* 2>/dev/null | awk '{s += $1} END {print s + 0}')
    [[ $synced -ge $want ]] || problem+="the fsync shim fsync'd $synced files for $want objects (LD_PRELOAD not effective?); "
  fi
  if [[ -n $problem ]]; then
    failures+=("$lbl $set $k sender(s) TCP_NODELAY=$nd run $rep: $problem(logs: $dir)")
    keep=1
    [[ $recv == relais* ]] && relais_failed=1
    [[ $rc -ne 0 || $ok_rsp -ne $want ]] && return
  fi
  secs=$(elapsed "$t0" "$t1")
  local cpu_s cpu_gb
  cpu_s=$(ticks_s $((cpu1 - cpu0)))
  cpu_gb=$(awk -v c="$cpu_s" -v b="${set_bytes[$set]}" 'BEGIN {printf "%.2f", c / (b / 1e9)}')
  res_secs["$key|$rep"]=$secs
  res_row["$key|$rep"]="$lbl|$k|$set|$nd|$got|$secs|$(rate "$got" "$secs")|$(mbps "${set_bytes[$set]}" "$secs")|$cpu_s|$cpu_gb|$(awk -v k="$hwm" 'BEGIN {printf "%.1f", k / 1024}')|$(awk -v a="$stored" -v b="${set_kb[$set]}" 'BEGIN {printf "%.2f", a / b}')"
  # Free the disk before the next run.
  [[ $keep -eq 1 ]] || rm -rf "$dir/out" "$dir/store" "$dir/storage" "$dir/index"
}

for set in "${sets[@]}"; do
  for k in "${senders_of[@]}"; do
    # One large object has one sender.
    [[ $set == large && $k -gt 1 ]] && continue
    for nd in "${nd_list[@]}"; do
      for rep in $(seq 1 "$reps"); do
        for recv in "${recv_list[@]}"; do
          run_one "$recv" "$set" "$k" "$nd" "$rep"
        done
      done
    done
  done
done

# ---------------------------------------------------------------- one big object, Relais alone
rss_line=""
if [[ $rss_mb -gt 0 ]]; then
  big="$work/big"
  log "generating one object of $rss_mb MB"
  "$gen" --out "$big" --ct 0 --small 0 --large-mb "$rss_mb" --seed "$seed" >/dev/null 2>"$work/gen-big.log" ||
    { cat "$work/gen-big.log" >&2; exit 1; }
  dir="$work/run-rss"; mkdir -p "$dir"; port=$(free_port)
  if start_relais "$dir" "$port" 1; then
    log "relais: one $rss_mb MB object, port $port"
    t0=$(now_s)
    rc=0
    TCP_NODELAY=1 timeout 900 storescu -v -aet BENCHSCU -aec RELAIS 127.0.0.1 "$port" "$big"/large/*.dcm \
      >"$dir/storescu.log" 2>&1 &
    scu=$!; pids+=("$scu")
    wait "$scu" || rc=$?
    t1=$(now_s)
    hwm=$(peak_rss_kb "$rpid")
    stop_pid "$rpid"
    got=$(count_relais "$dir" "$big/large.uids")
    if [[ $rc -ne 0 || ${got:-0} -ne 1 ]]; then
      failures+=("relais one $rss_mb MB object: storescu exit $rc, kept ${got:-?}/1 (logs: $dir)")
      relais_failed=1
      keep=1
    fi
    rss_line="Relais receiving one object of $(mbps "$(stat -c %s "$big"/large/*.dcm)" 1) MB in $(elapsed "$t0" "$t1") s: peak RSS $(awk -v k="$hwm" 'BEGIN {printf "%.1f", k / 1024}') MB (target <= 200 MB)"
  else
    failures+=("relais one $rss_mb MB object: relais did not start: $(tail -n 3 "$dir/receiver.log" 2>/dev/null | tr '\n' ' ')")
    relais_failed=1
  fi
  rm -rf "$big" "$dir/store"
fi

# ---------------------------------------------------------------- table
echo
data_desc="$ct CT ($(awk -v b="${set_bytes[ct]:-0}" 'BEGIN {printf "%.1f", b / 1e6}') MB), $small small ($(awk -v b="${set_bytes[small]:-0}" 'BEGIN {printf "%.1f", b / 1e6}') MB)"
[[ $large_mb -gt 0 ]] && data_desc+=", 1 large ($(awk -v b="${set_bytes[large]}" 'BEGIN {printf "%.1f", b / 1e6}') MB)"
echo "data: $data_desc; max PDU $pdu; storescu $(storescu --version 2>&1 | head -1 | awk '{print $3}'); $(nproc) cores; best of $reps interleaved run(s)"
row() { printf '%-23s %7s %-5s %7s %7s %7s %9s %7s %7s %8s %8s %7s  %s\n' "$@"; }
row receiver senders set nodelay objects seconds objects/s MB/s "CPU s" "CPU s/GB" "RSS MB" stored/raw "objects/s of each run"
row ----------------------- ------- ----- ------- ------- ------- --------- ------- ------- -------- -------- ------- ---------------------
[[ -n $tsv ]] && printf 'receiver\tsenders\tset\ttcp_nodelay\tobjects\tseconds\tobjects_per_s\tmb_per_s\tcpu_s\tcpu_s_per_gb\tpeak_rss_mb\tstored_over_raw\truns_objects_per_s\n' >"$tsv"
declare -A best_rate best_cpu_gb best_ratio
for set in "${sets[@]}"; do
  for k in "${senders_of[@]}"; do
    for nd in "${nd_list[@]}"; do
      for recv in "${recv_list[@]}"; do
        key="$recv|$set|$k|$nd"
        best="" runs=""
        for rep in $(seq 1 "$reps"); do
          [[ -n ${res_secs["$key|$rep"]:-} ]] || continue
          IFS='|' read -r -a f <<<"${res_row["$key|$rep"]}"
          runs+="${runs:+ }${f[6]}"
          if [[ -z $best ]] || awk -v a="${res_secs["$key|$rep"]}" -v b="${res_secs["$key|$best"]}" 'BEGIN {exit !(a < b)}'; then
            best=$rep
          fi
        done
        [[ -n $best ]] || continue
        IFS='|' read -r -a f <<<"${res_row["$key|$best"]}"
        row "${f[@]}" "$runs"
        best_rate[$key]=${f[6]}
        best_cpu_gb[$key]=${f[9]}
        best_ratio[$key]=${f[11]}
        [[ -n $tsv ]] && printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${f[@]}" "$runs" >>"$tsv"
      done
    done
  done
done
[[ -n $rss_line ]] && { echo; echo "$rss_line"; }

# ---------------------------------------------------------------- against the targets (issue 15)
# ratio KEY_A KEY_B: best objects/s of A over B, or "n/a".
ratio() {
  local a=${best_rate[$1]:-} b=${best_rate[$2]:-}
  # n/a also when B measured 0 (CPU is counted in clock ticks of 10 ms: use more objects).
  [[ -n $a && -n $b ]] || { echo n/a; return; }
  awk -v a="$a" -v b="$b" 'BEGIN {if (b > 0) printf "%.2f", a / b; else printf "n/a"}'
}
cpu_ratio() {
  local a=${best_cpu_gb[$1]:-} b=${best_cpu_gb[$2]:-}
  # n/a also when B measured 0 (CPU is counted in clock ticks of 10 ms: use more objects).
  [[ -n $a && -n $b ]] || { echo n/a; return; }
  awk -v a="$a" -v b="$b" 'BEGIN {if (b > 0) printf "%.2f", a / b; else printf "n/a"}'
}
echo
echo "Relais (default settings) against the targets, best runs, TCP_NODELAY=${nd_list[0]}:"
nd=${nd_list[0]}
for set in "${sets[@]}"; do
  for k in "${senders_of[@]}"; do
    [[ $set == large && $k -gt 1 ]] && continue
    r="relais|$set|$k|$nd"
    [[ -n ${best_rate[$r]:-} ]] || continue
    if [[ $k -eq 1 ]]; then
      line="x storescp $(ratio "$r" "storescp|$set|$k|$nd") (>= 0.75), x storescp+fsync $(ratio "$r" "storescp_fsync|$set|$k|$nd") (>= 1.3)"
    else
      line="x storescp --fork $(ratio "$r" "storescp|$set|$k|$nd") (>= 1.0), x storescp+fsync --fork $(ratio "$r" "storescp_fsync|$set|$k|$nd")"
    fi
    line+=", CPU/GB x storescp $(cpu_ratio "$r" "storescp|$set|$k|$nd") (<= 1.5)"
    [[ $set == ct && $k -eq ${senders_of[0]} ]] && line+=", stored/raw ${best_ratio[$r]} (<= 0.40)"
    printf '  %-5s %d sender(s): %s\n' "$set" "$k" "$line"
  done
done

status=0
if [[ ${#failures[@]} -gt 0 ]]; then
  echo
  echo "problems:"
  for f in "${failures[@]}"; do
    echo "  $f"
    [[ $f == relais* ]] || status=1
  done
fi
[[ $relais_failed -eq 1 ]] && echo "(Relais rows missing or failed: see problems; the run goes on)"
exit $status
