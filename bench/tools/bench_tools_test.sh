#!/usr/bin/env bash
# Checks the tools of the end-to-end benchmarks (ctest BenchToolsTest.*).
#
#   bench/tools/bench_tools_test.sh BUILD_DIR fsync-shim   the shim fsyncs written regular files only,
#                                                          also in storescp and storescp --fork
#   bench/tools/bench_tools_test.sh BUILD_DIR large-object relais_gen_data --large-mb: a valid Part 10
#                                                          file of the asked size, its UID listed
set -euo pipefail
build=$(cd "$1" && pwd)
what=$2
repo=$(cd "$(dirname "$0")/../.." && pwd)
shim="$build/bench/librelais_fsync_shim.so"
gen="$build/bench/relais_gen_data"
work=$(mktemp -d "${TMPDIR:-/tmp}/relais-bench-tools.XXXXXX")
pids=()
keep=0
bench_name=bench_tools_test
# shellcheck source=bench/lib.sh
source "$repo/bench/lib.sh"
trap cleanup_pids_and_work EXIT

fail() {
  echo "FAIL: $*" >&2
  keep=1
  exit 1
}
# fsyncs PREFIX: what the shim counted, summed over the processes.
fsyncs() { cat "$1".* 2>/dev/null | awk '{s += $1} END {print s + 0}'; }

case "$what" in
  fsync-shim)
    [[ -f $shim ]] || fail "$shim missing: build target relais_fsync_shim"
    # Plain processes: a file written through a shell redirection (close())
    # is fsync'd; a file only read is not; nothing without LD_PRELOAD.
    LD_PRELOAD=$shim RELAIS_FSYNC_SHIM_LOG="$work/w" sh -c "echo hello >'$work/a'"
    [[ $(fsyncs "$work/w") -eq 1 ]] || fail "a written file: $(fsyncs "$work/w") fsyncs, want 1"
    LD_PRELOAD=$shim RELAIS_FSYNC_SHIM_LOG="$work/r" cat "$work/a" >/dev/null
    [[ $(fsyncs "$work/r") -eq 0 ]] || fail "a file only read: $(fsyncs "$work/r") fsyncs, want 0"
    # Through stdio (fclose): python3 writes with buffered I/O.
    LD_PRELOAD=$shim RELAIS_FSYNC_SHIM_LOG="$work/p" python3 -c "open('$work/b', 'w').write('x' * 100000)"
    [[ $(fsyncs "$work/p") -ge 1 ]] || fail "python3 writing a file: no fsync"
    [[ $(wc -c <"$work/b") -eq 100000 ]] || fail "python3's file lost bytes under the shim"

    # Real storescp, single process and --fork, fed by storescu.
    "$gen" --out "$work/data" --ct 3 --small 0 >/dev/null 2>&1 || fail "relais_gen_data failed"
    for mode in single fork; do
      dir="$work/$mode"; mkdir -p "$dir/out"; port=$(free_port)
      args=()
      [[ $mode == fork ]] && args=(--fork)
      LD_PRELOAD=$shim RELAIS_FSYNC_SHIM_LOG="$dir/fsyncs" \
        storescp "${args[@]}" -aet SHIM +xa -od "$dir/out" "$port" >"$dir/storescp.log" 2>&1 &
      spid=$!; pids+=("$spid")
      wait_listen "$spid" "$port" 30 || fail "storescp ($mode) did not start: $(cat "$dir/storescp.log")"
      for pass in 1 2; do
        storescu -aec SHIM 127.0.0.1 "$port" +sd "$work/data/ct" >"$dir/storescu.$pass.log" 2>&1 ||
          fail "storescu to storescp ($mode): $(cat "$dir/storescu.$pass.log")"
      done
      # --fork: the children end after their association; wait for their counts.
      for _ in $(seq 1 200); do
        [[ $(fsyncs "$dir/fsyncs") -ge 6 ]] && break
        sleep 0.05
      done
      stop_pid "$spid"
      [[ $(find "$dir/out" -type f | wc -l) -eq 3 ]] || fail "storescp ($mode) kept $(find "$dir/out" -type f | wc -l) files, want 3"
      [[ $(fsyncs "$dir/fsyncs") -eq 6 ]] || fail "storescp ($mode): $(fsyncs "$dir/fsyncs") fsyncs for 6 files written"
    done
    echo "fsync shim: ok"
    ;;
  large-object)
    "$gen" --out "$work/data" --ct 1 --small 1 --large-mb 3 >/dev/null 2>&1 || fail "relais_gen_data --large-mb 3 failed"
    f="$work/data/large/LG000001.dcm"
    [[ -f $f ]] || fail "$f not written"
    dcmftest "$f" | grep -q '^yes:' || fail "$f is not a Part 10 file: $(dcmftest "$f")"
    # 3 MB in frames of 512x512x16 (524288 bytes): 6 frames.
    frames=$(dcmdump +P NumberOfFrames "$f" | sed -n 's/.*\[\([0-9]*\)\].*/\1/p')
    [[ $frames == 6 ]] || fail "NumberOfFrames $frames, want 6"
    pixels=$(dcmdump -M +P PixelData "$f" | sed -n 's/.*# *\([0-9]*\),.*/\1/p')
    [[ $pixels == $((6 * 524288)) ]] || fail "Pixel Data of $pixels bytes, want $((6 * 524288))"
    uid=$(dcmdump +P SOPInstanceUID "$f" | sed -n 's/.*\[\(.*\)\].*/\1/p')
    [[ $(cat "$work/data/large.uids") == "$uid" ]] || fail "large.uids does not list $uid"
    # The frames read back as written: dcmdump loads the whole data set.
    dcmdump +L +P PixelData "$f" >/dev/null || fail "dcmdump cannot load $f"
    echo "large object: ok"
    ;;
  *)
    fail "unknown check $what (fsync-shim, large-object)"
    ;;
esac
