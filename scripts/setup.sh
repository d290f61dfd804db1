#!/usr/bin/env bash
# Installs every Debian 12 package that Relais needs to build, test and benchmark.
# Idempotent; run as root (or through sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libdcmtk-dev dcmtk
  libuv1-dev liblmdb-dev lmdb-utils libzstd-dev libxxhash-dev
  libtomlplusplus-dev libre2-dev libcli11-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev
  libh2o-dev nlohmann-json3-dev chromium fonts-dejavu-core openssl libsystemd-dev
  orthanc curl procps iproute2 python3 iperf3 clang-format
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}; run this script as root" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The orthanc package may start a system service; our tests run their own Orthanc.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now orthanc >/dev/null 2>&1 || true
fi
echo "setup: done"
