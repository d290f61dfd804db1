#!/usr/bin/env bash
# Builds Relais and runs it in the foreground with the shipped demo configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh build -DRELAIS_BUILD_BENCH=OFF
mkdir -p out
exec build/router/relais serve --config appliance/relais-demo.toml "$@"
