#!/usr/bin/env bash
# Functions are called indirectly ("start_$recv", trap): not unreachable.
# shellcheck disable=SC2317
# End-to-end ingest benchmark: Relais vs DCMTK storescp vs Orthanc, same data, same run.
#
#   bench/e2e_ingest.sh [BUILD_DIR] [--ct N] [--small M] [--quick] [--seed S]
#                       [--receivers LIST] [--pdu BYTES] [--tmp DIR] [--tsv FILE] [--keep]
#
# BUILD_DIR (default build/) must hold bench/relais_gen_data (target
# relais_gen_data) and, for the Relais rows, router/relais (target relais).
# This script builds nothing. For every data set (CT, small objects), every
# TCP_NODELAY setting (1, unset) and every receiver it starts a fresh
# receiver on a free port of 127.0.0.1, sends all files over ONE association
# with DCMTK storescu, checks that the receiver kept every object, stops the
# receiver, and prints one table row. See bench/README.md for how to read it.
#
# Requires: storescu, storescp (dcmtk), /usr/sbin/Orthanc (orthanc), curl, ss, du.
set -euo pipefail

usage() {
  sed -n '/^# End-to-end/,/^# Requires/p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --ct N            CT images (512x512x16, ~525 KB each). Default: 1000
  --small M         small objects (~21 KB each). Default: 1000
  --quick           smoke run: --ct 100 --small 100
  --seed S          pixel seed for the generator. Default: 1
  --receivers LIST  comma-separated subset of relais,storescp,orthanc. Default: all
  --pdu BYTES       max PDU every receiver announces (storescp allows <= 131072). Default: 131072
  --tmp DIR         parent of the temporary directory (data and stores, same disk). Default: $TMPDIR or /tmp
  --tsv FILE        also write the rows as tab-separated values to FILE
  --keep            keep the temporary directory (prints its path)
EOF
}

repo=$(cd "$(dirname "$0")/.." && pwd)
build="$repo/build"
ct=1000
small=1000
seed=1
receivers="relais,storescp,orthanc"
pdu=131072
tmp_parent=${TMPDIR:-/tmp}
tsv=""
keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ct) ct=$2; shift 2 ;;
    --small) small=$2; shift 2 ;;
    --quick) ct=100; small=100; shift ;;
    --seed) seed=$2; shift 2 ;;
    --receivers) receivers=$2; shift 2 ;;
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
relais="$build/router/relais"
orthanc_bin=/usr/sbin/Orthanc
for tool in storescu storescp curl ss du; do
  command -v "$tool" >/dev/null || { echo "e2e_ingest: $tool not found" >&2; exit 2; }
done
[[ -x "$gen" ]] || { echo "e2e_ingest: $gen missing: build target relais_gen_data first" >&2; exit 2; }

work=$(mktemp -d "$tmp_parent/relais-e2e.XXXXXX")
pids=()  # every receiver this script started

bench_name=e2e_ingest
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
trap cleanup_pids_and_work EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- data
data="$work/data"
log "generating $ct CT + $small small objects in $data"
"$gen" --out "$data" --ct "$ct" --small "$small" --seed "$seed" >/dev/null 2>"$work/gen.log" ||
  { cat "$work/gen.log" >&2; exit 1; }
declare -A set_dir=([ct]="$data/ct" [small]="$data/small")
declare -A set_count=([ct]=$ct [small]=$small)
declare -A set_bytes set_kb
for s in ct small; do
  set_bytes[$s]=$(find "${set_dir[$s]}" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  set_kb[$s]=$(du_kb "${set_dir[$s]}")
  cat "${set_dir[$s]}"/* >/dev/null 2>&1 || true  # same page-cache state for every receiver
done

# ---------------------------------------------------------------- receivers
# start_<receiver> RUN_DIR PORT: starts it in the background, sets `rpid` and
# `aet`; returns non-zero if it does not come up.
start_storescp() {
  local dir=$1 port=$2
  mkdir -p "$dir/out"
  aet=STORESCP
  # +xa: accept every supported transfer syntax; storescp accepts all standard
  # storage SOP classes by default. Single process (no --fork).
  storescp -aet "$aet" +xa -pdu "$pdu" -od "$dir/out" "$port" >"$dir/receiver.log" 2>&1 &
  rpid=$!
  pids+=("$rpid")
  wait_listen "$rpid" "$port" 15
}
# storescp names its files <modality>.<SOP Instance UID>.
count_storescp() { find "$1/out" -type f -printf '%f\n' | count_uids "$2"; }

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
count_orthanc() {
  curl -sf "http://127.0.0.1:$(cat "$1/http_port")/statistics" |
    tr -d ' \n' | sed -n 's/.*"CountInstances":\([0-9]*\).*/\1/p'
}

start_relais() {
  local dir=$1 port=$2
  [[ -x "$relais" ]] || return 1
  mkdir -p "$dir/store"
  aet=RELAIS
  cat >"$dir/relais.toml" <<EOF
[listener]
ae_title = "$aet"
host = "127.0.0.1"
port = $port
max_associations = 64
max_pdu = $pdu

[store]
path = "$dir/store"
EOF
  "$relais" serve --config "$dir/relais.toml" >"$dir/receiver.log" 2>&1 &
  rpid=$!
  pids+=("$rpid")
  wait_listen "$rpid" "$port" 15
}
# Counted with `relais store ls` (read-only LMDB open) after the server
# stopped: lines that name one of our SOP Instance UIDs. Prints nothing if the
# listing fails.
count_relais() {
  local out
  out=$("$relais" store ls --config "$1/relais.toml" 2>/dev/null) || return 0
  count_uids "$2" <<<"$out"
}

stored_kb() {
  case "$1" in
    relais) du_kb "$2/store" ;;
    storescp) du_kb "$2/out" ;;
    orthanc) du_kb "$2/storage" "$2/index" ;;
  esac
}

# ---------------------------------------------------------------- runs
rows=()
failures=()
na_row() { rows+=("$1|$2|$3|n/a|n/a|n/a|n/a|n/a|n/a"); }

# run_one RECEIVER SET NODELAY(1|unset)
run_one() {
  local recv=$1 set=$2 nd=$3 dir port rpid="" aet="" rc t0 t1 ok_rsp assocs got secs rss stored
  dir="$work/run-$recv-$set-$nd"
  mkdir -p "$dir"
  port=$(free_port)
  local -a envs=(env -u TCP_NODELAY)
  [[ $nd == 1 ]] && envs=(env TCP_NODELAY=1)
  log "$recv: $set, TCP_NODELAY=$nd, port $port"
  # The receiver gets the same TCP_NODELAY as storescu (storescp and Orthanc
  # use DCMTK's network layer, which reads it).
  local started=0
  if [[ $nd == 1 ]]; then export TCP_NODELAY=1; else unset TCP_NODELAY; fi
  "start_$recv" "$dir" "$port" && started=1
  unset TCP_NODELAY
  if [[ $started -eq 0 ]]; then
    local why
    if [[ $recv == relais && ! -x $relais ]]; then
      why="$relais not built"
    else
      why="did not start: $(tail -n 3 "$dir/receiver.log" 2>/dev/null | tr '\n' ' ')"
    fi
    failures+=("$recv $set TCP_NODELAY=$nd: $why")
    [[ -n ${rpid:-} ]] && stop_pid "$rpid"
    na_row "$recv" "$set" "$nd"
    return
  fi

  # storescu runs in the background so that a signal reaches the trap at once
  # (bash runs traps only after a foreground command ends; `wait` returns).
  t0=$(date +%s.%N)
  "${envs[@]}" storescu -v -aet BENCHSCU -aec "$aet" 127.0.0.1 "$port" +sd "${set_dir[$set]}" \
    >"$dir/storescu.log" 2>&1 &
  local scu=$!
  pids+=("$scu")
  rc=0
  wait "$scu" || rc=$?
  t1=$(date +%s.%N)
  rss=$(peak_rss_kb "$rpid")
  ok_rsp=$(grep -c 'Received Store Response (Success)' "$dir/storescu.log" || true)
  assocs=$(grep -c 'Requesting Association' "$dir/storescu.log" || true)
  if [[ $recv == orthanc ]]; then got=$(count_orthanc "$dir"); fi
  stop_pid "$rpid"
  case "$recv" in
    storescp) got=$(count_storescp "$dir" "$data/$set.uids") ;;
    relais) got=$(count_relais "$dir" "$data/$set.uids") ;;
  esac
  got=${got:-}
  stored=$(stored_kb "$recv" "$dir")

  local want=${set_count[$set]} problem=""
  if [[ $rc -ne 0 ]]; then problem+="storescu exit $rc; "; fi
  if [[ $assocs -ne 1 ]]; then problem+="$assocs associations; "; fi
  if [[ $ok_rsp -ne $want ]]; then problem+="$ok_rsp/$want Success responses; "; fi
  if [[ -z $got ]]; then
    problem+="receiver count unavailable; "
    got=$ok_rsp
  elif [[ $got -ne $want ]]; then
    problem+="receiver kept $got/$want; "
  fi
  if [[ -n $problem ]]; then
    failures+=("$recv $set TCP_NODELAY=$nd: $problem(logs: $dir)")
    if [[ $recv == relais && ( $rc -ne 0 || $ok_rsp -ne $want ) ]]; then
      na_row "$recv" "$set" "$nd"
      keep=1
      return
    fi
    [[ $rc -ne 0 || $ok_rsp -ne $want || $got -ne $want ]] && keep=1
  fi
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
  rows+=("$recv|$set|$nd|$got|$secs|$(awk -v n="$got" -v s="$secs" 'BEGIN {printf "%.1f", n / s}')|$(awk -v b="${set_bytes[$set]}" -v s="$secs" 'BEGIN {printf "%.1f", b / 1e6 / s}')|$(awk -v k="$rss" 'BEGIN {printf "%.1f MB", k / 1024}')|$(awk -v a="$stored" -v b="${set_kb[$set]}" 'BEGIN {printf "%.2f", a / b}')")
  # Free the disk before the next run.
  [[ $keep -eq 1 ]] || rm -rf "$dir/out" "$dir/store" "$dir/storage" "$dir/index"
}

IFS=, read -r -a recv_list <<<"$receivers"
for set in ct small; do
  [[ ${set_count[$set]} -gt 0 ]] || continue
  for nd in 1 unset; do
    for recv in "${recv_list[@]}"; do
      case "$recv" in relais|storescp|orthanc) ;; *) echo "unknown receiver $recv" >&2; exit 2 ;; esac
      run_one "$recv" "$set" "$nd"
    done
  done
done

# ---------------------------------------------------------------- table
echo
echo "data: $ct CT ($(awk -v b="${set_bytes[ct]}" 'BEGIN {printf "%.1f", b / 1e6}') MB), $small small ($(awk -v b="${set_bytes[small]}" 'BEGIN {printf "%.1f", b / 1e6}') MB); max PDU $pdu; storescu $(storescu --version 2>&1 | head -1 | awk '{print $3}'); $(nproc) cores"
row() { printf '%-9s %-6s %-11s %8s %8s %10s %8s %10s %10s\n' "$@"; }
row receiver set TCP_NODELAY objects seconds objects/s MB/s "peak RSS" stored/raw
row --------- ------ ----------- -------- -------- ---------- -------- ---------- ----------
[[ -n $tsv ]] && printf 'receiver\tset\ttcp_nodelay\tobjects\tseconds\tobjects_per_s\tmb_per_s\tpeak_rss\tstored_over_raw\n' >"$tsv"
for r in "${rows[@]}"; do
  IFS='|' read -r a b c d e f g h i <<<"$r"
  row "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i"
  [[ -n $tsv ]] && printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i" >>"$tsv"
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
exit $status
