#!/usr/bin/env bash
# Builds and runs every test. GPU tests run where there is a GPU and are reported as skipped elsewhere.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
build/jetforge info | grep -E "^(NVRTC|GPU)"  # says why GPU tests will be skipped, where they are
ctest --test-dir build --output-on-failure
