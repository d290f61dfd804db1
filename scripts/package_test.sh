#!/usr/bin/env bash
# Builds the Debian package from an existing build folder and checks it for
# real: contents, dpkg -i on this machine (root: CI runs on a throwaway
# Debian 12), the system user, the unit (systemd-analyze verify), the
# version, the installed configuration, and the service's command line run
# as the relais user with only CAP_NET_BIND_SERVICE answering C-ECHO on port
# 104; then dpkg -r, which keeps the store.
#   scripts/package_test.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
fail() { echo "package_test: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "package_test: needs root (dpkg -i); skipped" >&2; exit 0; }

(cd "$build" && cpack -G DEB >/dev/null) || fail "cpack -G DEB"
deb=$(ls -t "$build"/relais_*.deb | head -1)
echo "package_test: built $deb ($(du -h "$deb" | cut -f1))"
contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/relais ./usr/lib/systemd/system/relais.service ./etc/relais/relais.toml ./etc/relais/rules.toml \
         ./usr/share/doc/relais/README.md; do
  grep -q " $f\$" <<<"$contents" || fail "$f is not in the package"
done
info=$(dpkg-deb -I "$deb")  # (not piped into grep -q: pipefail would see dpkg-deb's SIGPIPE)
grep -q "Depends:.*adduser" <<<"$info" || fail "Depends lacks adduser"
grep -q "Depends:.*libdcmtk" <<<"$info" || fail "Depends lacks the shared libraries (shlibdeps)"

dpkg -i "$deb" >/dev/null || fail "dpkg -i"
getent passwd relais >/dev/null || fail "no relais user"
[ "$(getent passwd relais | cut -d: -f7)" != "/bin/bash" ] || fail "relais user has a login shell"
[ "$(stat -c %U /var/lib/relais)" = relais ] || fail "/var/lib/relais is not owned by relais"
[ "$(stat -c %a /etc/relais/relais.toml)" = 640 ] || fail "/etc/relais/relais.toml is not 0640"
version=$(/usr/bin/relais --version)
grep -Eq "^relais [0-9]+\.[0-9]+\.[0-9]+ \(([0-9a-f]{7,}|unknown)\)" <<<"$version" || fail "relais --version: $version"
/usr/bin/relais config check /etc/relais/relais.toml >/dev/null || fail "installed config does not pass relais config check"
/usr/bin/relais rules check /etc/relais/rules.toml >/dev/null || fail "installed rules do not pass relais rules check"
unit=/usr/lib/systemd/system/relais.service
if command -v systemd-analyze >/dev/null; then
  out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $out"
  [ -z "$out" ] || fail "systemd-analyze verify complains: $out"
fi
for want in "User=relais" "NoNewPrivileges=yes" "ProtectSystem=strict" "PrivateTmp=yes" \
             "CapabilityBoundingSet=CAP_NET_BIND_SERVICE" "Restart=on-failure" "Type=notify" "WatchdogSec=30"; do
  grep -qx "$want" "$unit" || fail "unit lacks $want"
done

# The unit's command line as the unit runs it: user relais, only
# CAP_NET_BIND_SERVICE, port 104, the installed configuration.
log=$(mktemp)
setpriv --reuid=relais --regid=relais --init-groups --inh-caps=+net_bind_service \
  --ambient-caps=+net_bind_service --bounding-set=-all,+net_bind_service \
  /usr/bin/relais serve --config /etc/relais/relais.toml >"$log" 2>&1 &
pid=$!
ok=0
for _ in $(seq 1 100); do
  if echoscu -aec RELAIS 127.0.0.1 104 >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.1
done
if [ $ok -eq 1 ]; then
  storescu -aec RELAIS 127.0.0.1 104 "$(dirname "$0")/../../shared/corpus/pydicom__CT_small.dcm" >/dev/null 2>&1 ||
    { kill $pid; cat "$log"; fail "the installed service did not take a C-STORE"; }
fi
if [ $ok -eq 1 ] && command -v curl >/dev/null; then
  curl -fsS http://127.0.0.1:8480/healthz >/dev/null || { kill $pid; cat "$log"; fail "admin /healthz"; }
fi
kill -TERM $pid; wait $pid || true
[ $ok -eq 1 ] || { cat "$log"; fail "the installed service did not answer C-ECHO on port 104"; }
[ -f /var/lib/relais/store/data.mdb ] || fail "no store in /var/lib/relais/store"
rm -f "$log"

# An upgrade (the same package again runs the upgrade path of the
# maintainer scripts) keeps the store and the configuration.
objects_before=$(/usr/bin/relais store ls --config /etc/relais/relais.toml --json 2>/dev/null | wc -l)
echo "# local edit" >> /etc/relais/rules.toml
dpkg -i --force-confold "$deb" >/dev/null || fail "dpkg -i over an installed package"
[ -f /var/lib/relais/store/data.mdb ] || fail "the upgrade removed the store"
grep -q "# local edit" /etc/relais/rules.toml || fail "the upgrade overwrote a changed conffile"
objects_after=$(/usr/bin/relais store ls --config /etc/relais/relais.toml --json 2>/dev/null | wc -l)
[ "$objects_before" = "$objects_after" ] || fail "objects in the store changed across the upgrade"
sed -i '/^# local edit$/d' /etc/relais/rules.toml

dpkg -r relais >/dev/null || fail "dpkg -r"
[ ! -e /usr/bin/relais ] || fail "/usr/bin/relais left after dpkg -r"
[ -f /var/lib/relais/store/data.mdb ] || fail "dpkg -r removed the store"
echo "package_test: OK ($deb installed, checked, removed; store kept)"
