#!/usr/bin/env bash
# Builds Relais and runs every test:
#  0. the format check (scripts/format.sh: clang-format, .clang-format);
#  1. a normal build (gcc, -Werror): unit and integration tests (real DCMTK
#     peers, Orthanc, headless Chromium for the dashboard);
#  2. the Debian package, installed and checked for real (root only);
#  3. a clang build with AddressSanitizer + UBSan and the libFuzzer
#     targets: the unit tests, the hostile-peer, delivery, admin API, TLS,
#     access, peer-text, rule-reload, audit and abusive-peer tests against the sanitized
#     relais, then each fuzz target for a bounded time (RELAIS_FUZZ_SECONDS,
#     default 45) from its seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

echo "== format"
scripts/format.sh
echo "== build (RelWithDebInfo, -Werror)"
scripts/build.sh build -DRELAIS_WERROR=ON
echo "== tests"
(cd build && ctest --output-on-failure -j2 --timeout 900)

echo "== Debian package"
scripts/package_test.sh build

echo "== build (clang, ASan + UBSan, fuzz targets)"
CC=clang CXX=clang++ scripts/build.sh build-sanitize -DRELAIS_FUZZ=ON -DRELAIS_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug
echo "== tests under ASan + UBSan (unit tests; hostile peers, delivery, admin, TLS, access against the sanitized relais)"
(cd build-sanitize && ctest --output-on-failure -j2 --timeout 900 -L unit)
(cd build-sanitize && ctest --output-on-failure -j2 --timeout 900 \
  -R "^(HostileTest|Delivery[A-Za-z]*Test|AdminTest|TlsEndToEndTest|AccessControlTest|GracefulStopTest|ServiceNotifyTest|TextSafetyTest|RulesReloadTest|AuditTrailTest|ConnectionCapTest|StoreVerifyCommandTest|AbusivePeersTest)\\.")
echo "== fuzzing"
RELAIS_FUZZ_BUILD=build-sanitize scripts/fuzz.sh "${RELAIS_FUZZ_SECONDS:-45}"
