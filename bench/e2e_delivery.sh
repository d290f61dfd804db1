#!/usr/bin/env bash
# End-to-end delivery benchmark: storescu -> Relais -> storescp against
# storescu -> storescp directly, same data, same run.
#
#   bench/e2e_delivery.sh [BUILD_DIR] [--ct N] [--small M] [--quick] [--senders K]
#                         [--max-assoc A] [--level L] [--reps R] [--nagle] [--tmp DIR] [--keep]
#
# BUILD_DIR (default build/) must hold bench/relais_gen_data and router/relais.
# For each data set (CT, small objects) it runs, each with a fresh storescp
# on 127.0.0.1:
#   direct  K storescu processes (one association each) send every file to
#           storescp; time until the last storescu ends.
#   relais  the same K storescu send to Relais, whose one rule forwards
#           everything to storescp (max_associations A); time until the
#           last object is on storescp's disk. Also: when the last C-STORE
#           was acknowledged by Relais (ingest time).
#   drain   every object is first queued in Relais while storescp is down;
#           then storescp starts; time until the queue is delivered (the
#           delivery side alone).
# and prints objects/s, MB/s and relais/direct (target: >= 90 % with 4
# senders). direct and relais run R times interleaved (--reps, default 2;
# the best of each is shown: this kind of machine drifts by +-30 %); drain
# once. Defaults: 1000 CT + 1000 small, K = 4 storescu, A = 4, Relais with
# the store settings of a fresh relais.toml (--level L sets
# compression_level = L). DCMTK's tools run with TCP_NODELAY=1 (their
# fastest setting; --nagle leaves it unset). --quick: 100 + 100, 1 run.
#
# Requires: storescu, storescp (dcmtk), ss, du.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build="$repo/build"
ct=1000
small=1000
senders=4
reps=2
max_assoc=4
tmp_parent=${TMPDIR:-/tmp}
keep=0
nodelay=1
level=default
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ct) ct=$2; shift 2 ;;
    --small) small=$2; shift 2 ;;
    --quick) ct=100; small=100; reps=1; shift ;;
    --reps) reps=$2; shift 2 ;;
    --senders) senders=$2; shift 2 ;;
    --max-assoc) max_assoc=$2; shift 2 ;;
    --tmp) tmp_parent=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --nagle) nodelay=0; shift ;;
    --level) level=$2; shift 2 ;;
    -h|--help) sed -n '/^# End-to-end/,/^# Requires/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) build=$(cd "$1" && pwd); shift ;;
  esac
done

if [[ $nodelay -eq 1 ]]; then export TCP_NODELAY=1; else unset TCP_NODELAY; fi
bench_name=e2e_delivery
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
gen="$build/bench/relais_gen_data"
relais="$build/router/relais"
for f in "$gen" "$relais"; do
  [[ -x $f ]] || { echo "e2e_delivery: $f missing: build targets relais and relais_gen_data" >&2; exit 2; }
done
work=$(mktemp -d "$tmp_parent/relais-e2e-delivery.XXXXXX")
pids=()
trap cleanup_pids_and_work EXIT
trap 'exit 130' INT TERM

data="$work/data"
log "generating $ct CT + $small small objects"
"$gen" --out "$data" --ct "$ct" --small "$small" --seed 1 >/dev/null 2>"$work/gen.log" ||
  { cat "$work/gen.log" >&2; exit 1; }
declare -A set_count=([ct]=$ct [small]=$small) set_bytes
for s in ct small; do
  set_bytes[$s]=$(find "$data/$s" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  # K lists of files, round robin, one per storescu.
  find "$data/$s" -type f | sort >"$work/$s.files"
  split -n "r/$senders" -d "$work/$s.files" "$work/$s.part."
done

# send SET AET PORT LOG_PREFIX: K storescu in parallel; waits for all.
send() {
  local set=$1 aet=$2 port=$3 prefix=$4 part i=0 rc=0
  local -a scus=()
  for part in "$work/$set.part."*; do
    # shellcheck disable=SC2046
    storescu -aet BENCHSCU -aec "$aet" 127.0.0.1 "$port" $(cat "$part") >"$prefix.$i.log" 2>&1 &
    scus+=($!)
    pids+=($!)
    i=$((i + 1))
  done
  for i in "${scus[@]}"; do wait "$i" || rc=1; done
  return $rc
}

rows=()
problems=()
summary=()
add_row() {  # SCENARIO SET N SECONDS [NOTE]
  rows+=("$1|$2|$3|$4|$(rate "$3" "$4")|$(mbps "${set_bytes[$2]}" "$4")|${5:-}")
}

for set in ct small; do
  n=${set_count[$set]}
  [[ $n -gt 0 ]] || continue

  # direct and relais, interleaved, R times; the best of each is kept.
  best_direct="" best_relais="" relais_note="" runs_direct="" runs_relais=""
  for rep in $(seq 1 "$reps"); do
    # direct
    dir="$work/direct-$set-$rep"; mkdir -p "$dir"; sport=$(free_port)
    start_storescp "$dir" "$sport" || { problems+=("direct $set: storescp did not start"); continue; }
    log "run $rep/$reps, direct $set: $senders storescu -> storescp"
    t0=$(now_s); send "$set" ARCHIVE "$sport" "$dir/scu" || problems+=("direct $set: a storescu failed")
    wait_files "$dir/out" "$n" 60 || problems+=("direct $set: storescp has $(files_in "$dir/out")/$n")
    t1=$(now_s); stop_pid "$spid"
    secs=$(elapsed "$t0" "$t1")
    runs_direct+="${runs_direct:+ }$(rate "$n" "$secs")"
    if [[ -z $best_direct ]] || awk -v a="$secs" -v b="$best_direct" 'BEGIN {exit !(a < b)}'; then best_direct=$secs; fi
    rm -rf "$dir/out"

    # relais, storescp up
    dir="$work/relais-$set-$rep"; mkdir -p "$dir"; sport=$(free_port); rport=$(free_port)
    start_storescp "$dir" "$sport" || { problems+=("relais $set: storescp did not start"); continue; }
    write_relais_config "$dir" "$rport" "$sport"
    "$relais" serve -c "$dir/relais.toml" >"$dir/relais.log" 2>&1 &
    rpid=$!; pids+=("$rpid")
    wait_listen "$rpid" "$rport" 15 || { problems+=("relais $set: relais did not start"); continue; }
    log "run $rep/$reps, relais $set: $senders storescu -> relais -> storescp (max_associations $max_assoc)"
    t0=$(now_s); send "$set" RELAIS "$rport" "$dir/scu" || problems+=("relais $set: a storescu failed")
    ti=$(now_s)
    wait_files "$dir/out" "$n" 600 || problems+=("relais $set: storescp has $(files_in "$dir/out")/$n (logs $dir)")
    t1=$(now_s)
    rss=$(peak_rss_kb "$rpid")
    stop_pid "$rpid"; stop_pid "$spid"
    secs=$(elapsed "$t0" "$t1")
    runs_relais+="${runs_relais:+ }$(rate "$n" "$secs")"
    if [[ -z $best_relais ]] || awk -v a="$secs" -v b="$best_relais" 'BEGIN {exit !(a < b)}'; then
      best_relais=$secs
      relais_note="ingest $(elapsed "$t0" "$ti") s; RSS $((rss / 1024)) MB"
    fi
    rm -rf "$dir/out" "$dir/store"
  done
  [[ -n $best_direct ]] && add_row direct "$set" "$n" "$best_direct" "runs: $runs_direct objects/s"
  if [[ -n $best_relais && -n $best_direct ]]; then
    pct=$(awk -v a="$best_direct" -v b="$best_relais" 'BEGIN {printf "%.0f", 100 * a / b}')
    add_row relais "$set" "$n" "$best_relais" "$pct% of direct; $relais_note; runs: $runs_relais objects/s"
    summary+=("$set: relais/direct $pct % with $senders sender(s) (target >= 90 % with 4)")
  fi

  # drain: queue everything first, then open the destination
  dir="$work/drain-$set"; mkdir -p "$dir"; sport=$(free_port); rport=$(free_port)
  write_relais_config "$dir" "$rport" "$sport"
  "$relais" serve -c "$dir/relais.toml" >"$dir/relais.log" 2>&1 &
  rpid=$!; pids+=("$rpid")
  wait_listen "$rpid" "$rport" 15 || { problems+=("drain $set: relais did not start"); continue; }
  send "$set" RELAIS "$rport" "$dir/scu" || problems+=("drain $set: a storescu failed")
  sleep 3  # let the first connection attempts fail and back off (1-2 s)
  start_storescp "$dir" "$sport" || { problems+=("drain $set: storescp did not start"); continue; }
  log "drain $set: $n queued objects -> storescp"
  # Timed from the first object's arrival: the wait for the next probe is not delivery.
  wait_files "$dir/out" 1 30 || true
  t0=$(now_s)
  wait_files "$dir/out" "$n" 600 || problems+=("drain $set: storescp has $(files_in "$dir/out")/$n (logs $dir)")
  t1=$(now_s)
  stop_pid "$rpid"; stop_pid "$spid"
  # The destination was probed every 1-2 s: up to that much of the time is waiting for the next probe.
  add_row drain "$set" "$n" "$(elapsed "$t0" "$t1")" "delivery alone, from the first arrival"
  rm -rf "$dir/out" "$dir/store"
done

echo
echo "TCP_NODELAY for DCMTK: $([[ $nodelay -eq 1 ]] && echo 1 || echo unset)"
echo "Relais store compression_level: $level (--level; default: what a fresh relais.toml gives)"
echo "data: $ct CT ($(awk -v b="${set_bytes[ct]:-0}" 'BEGIN {printf "%.1f", b / 1e6}') MB), $small small; $senders storescu sender(s); Relais max_associations $max_assoc; $(nproc) cores"
printf '%-8s %-6s %8s %8s %10s %8s  %s\n' scenario set objects seconds objects/s MB/s note
for r in "${rows[@]}"; do
  IFS='|' read -r a b c d e f g <<<"$r"
  printf '%-8s %-6s %8s %8s %10s %8s  %s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g"
done
echo "best of $reps interleaved run(s) for direct and relais; drain runs once"
[[ ${#summary[@]} -gt 0 ]] && { echo; printf '%s\n' "${summary[@]}"; }
if [[ ${#problems[@]} -gt 0 ]]; then
  echo; echo "problems:"; printf '  %s\n' "${problems[@]}"; keep=1; exit 1
fi
