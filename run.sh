#!/usr/bin/env bash
# The main job: build, describe the machine, and compile every default kernel for the local GPU (or for
# sm_90a where there is none).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
jf=build/jetforge
$jf info
arch=$($jf info | sed -n 's/.*(target \(sm_[0-9a-z]*\)).*/\1/p' | head -n 1)
arch=${arch:-sm_90a}
echo "compiling every default kernel for $arch"
$jf specs | grep -v '^#' | while read -r spec; do $jf compile "$spec" --arch "$arch"; done
