#!/usr/bin/env bash
# An emulated WAN link between two network namespaces (user space: this
# kernel has no `tc netem`).
#
#   wan_env.sh up   PREFIX [DELAY_MS [LOSS [RATE_BYTES_PER_S [QUEUE_MS]]]]
#   wan_env.sh down PREFIX
#   wan_env.sh ctl  PREFIX COMMAND...     (down | up | toggle | loss P | delay MS |
#                                          rate B | queue-ms MS | stats)
#   wan_env.sh status PREFIX
#   wan_env.sh sweep BASE                 (tears down every link named BASE<pid>
#                                          whose <pid> is no longer running)
#
# `up` creates namespaces PREFIXa and PREFIXb (loopback up), and starts
# wanlink, which puts a TUN device wan0 in each: 10.77.0.1/24 in PREFIXa,
# 10.77.0.2/24 in PREFIXb. DELAY_MS is one way (RTT = 2 x DELAY_MS); LOSS is
# a per-packet probability in each direction; RATE 0 means unlimited.
# Run programs on either side with `ip netns exec PREFIXa CMD`.
# `up` first tears down whatever a previous (possibly crashed) run with the
# same PREFIX left behind. `down` is idempotent; it prints wanlink's final
# statistics if it was running.
#
# State: $WAN_STATE_DIR (default /run/relais-wan)/PREFIX/{pid,ctl.sock,wanlink.log}.
# The wanlink binary: $WANLINK, else the first of BUILD/tests/tools/wanlink for
# BUILD in build, build-*, of the repository. Needs root, iproute2, /dev/net/tun.
# Env: WAN_SEED (loss PRNG seed, default 1), WAN_ADDR_A / WAN_ADDR_B (CIDR).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
state_root=${WAN_STATE_DIR:-/run/relais-wan}

die() { echo "wan_env: $*" >&2; exit 1; }

find_wanlink() {
  if [[ -n ${WANLINK:-} ]]; then
    [[ -x $WANLINK ]] || die "WANLINK=$WANLINK is not executable"
    echo "$WANLINK"
    return
  fi
  local b
  for b in "$repo/build" "$repo"/build-*; do
    if [[ -x $b/tests/tools/wanlink ]]; then echo "$b/tests/tools/wanlink"; return; fi
  done
  die "wanlink not found: build target wanlink or set WANLINK"
}

check_prefix() {
  # Namespace names become PREFIXa/PREFIXb; keep them short and plain.
  [[ $1 =~ ^[A-Za-z0-9_.-]{1,30}$ ]] || die "bad prefix '$1'"
}

ns_exists() { [[ -e /var/run/netns/$1 ]]; }

# True if PID is a running wanlink (not a recycled pid).
is_wanlink() {
  local pid=$1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == wanlink ]]
}

cmd_down() {
  local prefix=$1 dir="$state_root/$1" pid=""
  [[ -f $dir/pid ]] && pid=$(cat "$dir/pid" 2>/dev/null || true)
  if is_wanlink "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      is_wanlink "$pid" || break
      sleep 0.1
    done
    if is_wanlink "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    # Its last lines are the statistics it printed on exit.
    if [[ -f $dir/wanlink.log ]]; then grep -E '^(link|a->b|b->a)' "$dir/wanlink.log" >&2 || true; fi
  fi
  # Processes still running inside the namespaces (e.g. a server a crashed
  # test left behind) would keep them alive: kill them.
  local ns p
  for ns in "${prefix}a" "${prefix}b"; do
    if ns_exists "$ns"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  rm -rf "$dir"
}

cmd_up() {
  local prefix=$1 delay=${2:-0} loss=${3:-0} rate=${4:-0} queue=${5:-100}
  local dir="$state_root/$prefix" bin ns
  bin=$(find_wanlink)
  [[ $(id -u) -eq 0 ]] || die "must run as root"
  [[ -c /dev/net/tun ]] || die "/dev/net/tun missing"
  cmd_down "$prefix" 2>/dev/null  # stale state of a crashed run
  mkdir -p "$dir"
  for ns in "${prefix}a" "${prefix}b"; do
    ip netns add "$ns" || { cmd_down "$prefix"; die "ip netns add $ns failed"; }
    ip -n "$ns" link set lo up
  done
  local ready="$dir/ready"
  # setsid: not in our process group, so a Ctrl-C of the caller's foreground
  # job does not kill the link under the caller's own cleanup.
  setsid "$bin" --ns-a "${prefix}a" --ns-b "${prefix}b" \
    --addr-a "${WAN_ADDR_A:-10.77.0.1/24}" --addr-b "${WAN_ADDR_B:-10.77.0.2/24}" \
    --delay-ms "$delay" --loss "$loss" --seed "${WAN_SEED:-1}" --rate "$rate" --queue-ms "$queue" \
    --control "$dir/ctl.sock" --ready-file "$ready" </dev/null >"$dir/wanlink.log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 1 100); do
    [[ -f $ready ]] && break
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
    sleep 0.05
  done
  if [[ ! -f $ready ]]; then
    cat "$dir/wanlink.log" >&2 || true
    cmd_down "$prefix"
    die "wanlink did not start"
  fi
  cp "$ready" "$dir/pid"  # wanlink's own pid (setsid may have forked)
  echo "wan_env: ${prefix}a (10.77.0.1) <-> ${prefix}b (10.77.0.2): delay ${delay} ms one way, loss $loss, rate $rate B/s" >&2
}

# Links of callers that died without `down` (crashed test or benchmark): they
# name their links BASE<their pid>.
cmd_sweep() {
  local base=$1 ns stale="" p
  for ns in /var/run/netns/"$base"* "$state_root/$base"*; do
    [[ -e $ns ]] || continue
    ns=${ns##*/}
    [[ $ns =~ ^${base}([0-9]+)[ab]?$ ]] || continue
    p=${BASH_REMATCH[1]}
    kill -0 "$p" 2>/dev/null && continue
    [[ " $stale " == *" $base$p "* ]] || stale+=" $base$p"
  done
  for p in $stale; do
    echo "wan_env: removing stale link $p" >&2
    cmd_down "$p"
  done
}

cmd_ctl() {
  local prefix=$1
  shift
  local sock="$state_root/$prefix/ctl.sock"
  [[ -S $sock ]] || die "no link $prefix (no $sock)"
  "$(find_wanlink)" ctl "$sock" "$@"
}

[[ $# -ge 2 ]] || { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
action=$1
prefix=$2
check_prefix "$prefix"
shift 2
case "$action" in
  up) cmd_up "$prefix" "$@" ;;
  down) cmd_down "$prefix" ;;
  ctl) [[ $# -ge 1 ]] || die "ctl needs a command"; cmd_ctl "$prefix" "$@" ;;
  status) cmd_ctl "$prefix" stats ;;
  sweep) cmd_sweep "$prefix" ;;
  *) die "unknown action $action" ;;
esac
