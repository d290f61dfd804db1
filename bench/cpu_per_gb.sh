#!/usr/bin/env bash
# CPU cost of Relais per GB on its two paths, measured from /proc (user +
# system seconds of the relais process), which a loaded machine disturbs far
# less than wall-clock throughput:
#
#   bench/cpu_per_gb.sh [BUILD_DIR] [--ct N] [--reps R] [--max-assoc A] [--pdu BYTES]
#                       [--level L] [--perf ingest|drain] [--relais NAME=PATH,...] [--tmp DIR] [--keep]
#
#   ingest  one storescu (one association) sends N generated CT to Relais,
#           whose destination is down, so everything is stored and queued.
#           Relais's CPU from the first to the last C-STORE, per GB received;
#           storescp receiving the same files on the same association is
#           the reference.
#   drain   the queued store is copied; for each rep the copy is put back,
#           storescp starts, then Relais, which delivers the queue with A
#           associations (default 1). Relais's CPU from its start until
#           storescp has every file (start-up included: a few ms), per GB
#           sent; storescu sending the same files directly (one association)
#           is the reference.
# --relais compares several relais binaries (e.g. before=/tmp/relais.old,
# after=build/router/relais; default: BUILD_DIR's): each leg runs each of
# them in turn. Legs are interleaved R times (default 3) and every run is printed, then
# the median. --perf LEG records `perf record -g` of Relais during the last
# run of LEG into WORK/LEG-NAME.perf.data (implies --keep).
#
# DCMTK's tools run with TCP_NODELAY=1. storescp announces --pdu (default
# 16384, DCMTK's default, as in e2e_delivery.sh); Relais's listener announces
# the same.
#
# Requires: storescu, storescp (dcmtk), ss; perf (package linux-perf) for --perf.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build="$repo/build"
ct=1000
reps=3
max_assoc=1
pdu=16384
level=default
perf_leg=""
tmp_parent=${TMPDIR:-/tmp}
keep=0
relais_arg=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ct) ct=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --max-assoc) max_assoc=$2; shift 2 ;;
    --pdu) pdu=$2; shift 2 ;;
    --level) level=$2; shift 2 ;;
    --perf) perf_leg=$2; keep=1; shift 2 ;;
    --relais) relais_arg=$2; shift 2 ;;
    --tmp) tmp_parent=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '/^# CPU cost/,/^# Requires/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) build=$(cd "$1" && pwd); shift ;;
  esac
done

export TCP_NODELAY=1
bench_name=cpu_per_gb
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
gen="$build/bench/relais_gen_data"
relais="$build/router/relais"
declare -A relais_bin=()
names=()
if [[ -z $relais_arg ]]; then relais_arg="relais=$relais"; fi
IFS=',' read -ra pairs <<<"$relais_arg"
for p in "${pairs[@]}"; do
  names+=("${p%%=*}")
  relais_bin[${p%%=*}]=$(realpath "${p#*=}")
done
for f in "$gen" "${relais_bin[@]}"; do
  [[ -x $f ]] || { echo "cpu_per_gb: $f missing: build targets relais and relais_gen_data" >&2; exit 2; }
done
work=$(mktemp -d "$tmp_parent/relais-cpu.XXXXXX")
pids=()
trap cleanup_pids_and_work EXIT
trap 'exit 130' INT TERM

log "generating $ct CT"
"$gen" --out "$work/data" --ct "$ct" --small 0 --large-mb 0 --seed 1 >/dev/null 2>"$work/gen.log" ||
  { cat "$work/gen.log" >&2; exit 1; }
find "$work/data/ct" -type f | sort >"$work/files"
bytes=$(xargs -a "$work/files" stat -c %s | awk '{s += $1} END {print s + 0}')

results=()
record() {  # LEG RECEIVER TICKS SECONDS
  local cpu
  cpu=$(ticks_s "$3")
  results+=("$1|$2|$cpu|$(awk -v c="$cpu" -v b="$bytes" 'BEGIN {printf "%.2f", c / (b / 1e9)}')|$(rate "$ct" "$4")")
}
maybe_perf() {  # LEG PID: starts perf record on PID for the last rep of LEG; sets perf_pid
  perf_pid=""
  if [[ $perf_leg == "$1" && $rep -eq $reps ]]; then
    perf record -g -o "$work/$1-$name.perf.data" -p "$2" >"$work/$1-$name.perf.log" 2>&1 &
    perf_pid=$!
    sleep 0.5
  fi
}
stop_perf() {
  if [[ -n $perf_pid ]]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
  fi
}

# The queued store, made once: Relais receives everything while its destination is down.
q="$work/queued"
write_relais_config "$q" "$(free_port)" "$(free_port)"

for rep in $(seq 1 "$reps"); do
  # ingest: storescp on one association
  dir="$work/scp-$rep"; port=$(free_port)
  start_storescp "$dir" "$port" -pdu "$pdu"
  t0=$(now_s); a=$(tree_ticks "$spid")
  xargs -a "$work/files" storescu -aet BENCHSCU -aec ARCHIVE 127.0.0.1 "$port" >"$dir/scu.log" 2>&1
  b=$(tree_ticks "$spid"); t1=$(now_s)
  stop_pid "$spid"
  record ingest storescp $((b - a)) "$(elapsed "$t0" "$t1")"
  rm -rf "$dir"

  # ingest: Relais on one association (the first rep's store is kept for the drains)
  for name in "${names[@]}"; do
    relais=${relais_bin[$name]}
    dir="$work/relais-in-$rep-$name"
    [[ $rep -eq 1 && $name == "${names[0]}" ]] && dir=$q
    write_relais_config "$dir" "$(free_port)" "$(free_port)"
    port=$(awk -F' = ' '/^port/ {print $2; exit}' "$dir/relais.toml")
    "$relais" serve -c "$dir/relais.toml" >"$dir/relais.log" 2>&1 &
    rpid=$!; pids+=("$rpid")
    wait_listen "$rpid" "$port" 15 || { echo "relais did not start: $dir/relais.log" >&2; exit 1; }
    maybe_perf ingest "$rpid"
    t0=$(now_s); a=$(own_ticks "$rpid")
    xargs -a "$work/files" storescu -aet BENCHSCU -aec RELAIS 127.0.0.1 "$port" >"$dir/scu.log" 2>&1
    b=$(own_ticks "$rpid"); t1=$(now_s)
    stop_perf
    stop_pid "$rpid"
    record ingest "$name" $((b - a)) "$(elapsed "$t0" "$t1")"
    [[ $dir == "$q" ]] || rm -rf "$dir"
  done

  # drain: Relais delivers the queued store
  for name in "${names[@]}"; do
    relais=${relais_bin[$name]}
    dir="$work/drain-$rep-$name"; rm -rf "$dir"; mkdir -p "$dir"
    cp -a "$q/store" "$dir/store"
    dport=$(free_port); lport=$(free_port)
    start_storescp "$dir" "$dport" -pdu "$pdu"
    sed -e "s|$q/store|$dir/store|" -e "s|^port = .*|port = $lport|" "$q/relais.toml" >"$dir/relais.toml"
    sed -e "s|^port = .*|port = $dport|" "$q/rules.toml" >"$dir/rules.toml"
    sed -i "s|$q/rules.toml|$dir/rules.toml|" "$dir/relais.toml"
    t0=$(now_s)
    "$relais" serve -c "$dir/relais.toml" >"$dir/relais.log" 2>&1 &
    rpid=$!; pids+=("$rpid")
    maybe_perf drain "$rpid"
    wait_files "$dir/out" "$ct" 600 0.02 || echo "drain: storescp has $(files_in "$dir/out")/$ct ($dir)" >&2
    b=$(own_ticks "$rpid"); t1=$(now_s)
    stop_perf
    stop_pid "$rpid"; stop_pid "$spid"
    record drain "$name" "$b" "$(elapsed "$t0" "$t1")"
    rm -rf "$dir/out" "$dir/store"
  done
done

# storescu's CPU for the same files (the direct sender), R times.
for rep in $(seq 1 "$reps"); do
  dir="$work/scu-$rep"; port=$(free_port)
  start_storescp "$dir" "$port" -pdu "$pdu"
  t0=$(now_s)
  /usr/bin/env time -f '%U %S' -o "$dir/time" xargs -a "$work/files" storescu -aet BENCHSCU -aec ARCHIVE 127.0.0.1 "$port" >"$dir/scu.log" 2>&1 ||
    true
  t1=$(now_s)
  stop_pid "$spid"
  ticks=$(awk -v h="$clk_tck" '{printf "%d", ($1 + $2) * h}' "$dir/time" 2>/dev/null || echo 0)
  record drain storescu "$ticks" "$(elapsed "$t0" "$t1")"
  rm -rf "$dir"
done

echo
echo "data: $ct CT, $(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1e6}') MB; PDU $pdu; drain max_associations $max_assoc; $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-7s %-9s %7s %9s %10s\n' leg process cpu_s cpu_s/GB objects/s
for r in "${results[@]}"; do
  IFS='|' read -r a b c d e <<<"$r"
  printf '%-7s %-9s %7s %9s %10s\n' "$a" "$b" "$c" "$d" "$e"
done
echo "medians:"
keys=()
for name in "${names[@]}"; do keys+=("ingest|$name"); done
keys+=("ingest|storescp")
for name in "${names[@]}"; do keys+=("drain|$name"); done
keys+=("drain|storescu")
for key in "${keys[@]}"; do
  printf '%s\n' "${results[@]}" | awk -F'|' -v k="$key" '
    $1 "|" $2 == k {c[n + 0] = $4; o[n + 0] = $5; n++}
    END {
      if (n == 0) exit
      for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) {
        if (c[j] < c[i]) {t = c[i]; c[i] = c[j]; c[j] = t}
        if (o[j] < o[i]) {t = o[i]; o[i] = o[j]; o[j] = t}
      }
      m = int((n - 1) / 2)
      printf "  %-16s %6.2f CPU s/GB  %7.1f objects/s  (%d runs)\n", k, c[m], o[m], n
    }'
done
