#!/usr/bin/env bash
# Builds Relais and runs every test: first a normal build (unit + integration),
# then the unit tests again under AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

echo "== build (RelWithDebInfo, -Werror)"
scripts/build.sh build -DRELAIS_WERROR=ON
echo "== tests"
(cd build && ctest --output-on-failure -j2 --timeout 900)

echo "== build (ASan + UBSan)"
scripts/build.sh build-asan -DRELAIS_SANITIZE=ON -DRELAIS_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug
echo "== tests under ASan + UBSan (unit tests; hostile peers and delivery against the sanitized relais)"
(cd build-asan && ctest --output-on-failure -j2 --timeout 900 -L unit)
(cd build-asan && ctest --output-on-failure -j2 --timeout 900 -R "^(HostileTest|Delivery[A-Za-z]*Test)\\.")
