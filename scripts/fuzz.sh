#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for a
# bounded time, starting from the checked-in seeds in fuzz/corpus/<target>
# (copied: the seeds are not modified). Fails on any crash, leak, timeout or
# sanitizer report; prints the executions of each target.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# A crash leaves its input in out/fuzz/<target>/crash-*: add it as a
# regression test (tests/router/receive/fuzz_replay_test.cc) and to the seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then TARGETS=(pdu dimse fsm header config association text chunk); fi

# RELAIS_FUZZ_BUILD: a build folder configured with -DRELAIS_FUZZ=ON and clang
# (scripts/test.sh reuses its sanitizer build); configured here if new.
BUILD=${RELAIS_FUZZ_BUILD:-build-fuzz}
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DRELAIS_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD" -j"$(nproc)" $(printf -- "--target %s_fuzz " "${TARGETS[@]}")
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run_one() {
  local t=$1 work=out/fuzz/$1
  rm -rf "$work" && mkdir -p "$work/corpus"
  cp fuzz/corpus/"$t"/* "$work/corpus/" 2>/dev/null || true
  if "$BUILD"/fuzz/"${t}"_fuzz -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
       -max_len=65536 -artifact_prefix="$work/" -print_final_stats=1 "$work/corpus" > "$work/log" 2>&1; then
    local runs
    runs=$(grep -E "^stat::number_of_executed_units" "$work/log" | awk '{print $2}')
    echo "fuzz: $t: ${runs:-?} executions in ${SECONDS_PER_TARGET}s, no finding"
  else
    echo "fuzz: $t: FAILED (log: $work/log)"
    grep -E "ERROR|SUMMARY|^==|Test unit written" "$work/log" | head -20
    return 1
  fi
}

status=0
pids=()
names=()
# Two at a time (CI has 2 cores).
for t in "${TARGETS[@]}"; do
  run_one "$t" & pids+=($!); names+=("$t")
  if [ ${#pids[@]} -ge 2 ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
