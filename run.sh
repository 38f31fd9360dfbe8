#!/usr/bin/env bash
# The main job: build, describe the machine, compile every default kernel for the local GPU (or for sm_90a
# where there is none), and fill the kernel cache with what a GPT-2 124M training step needs, so that a
# later run on this machine (or on a GPU node the cache file is copied to) starts without compiling.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
jf=build/jetforge
$jf info
arch=$($jf info | sed -n 's/.*(target \(sm_[0-9a-z]*\)).*/\1/p' | head -n 1)
arch=${arch:-sm_90a}
echo "compiling every default kernel for $arch"
$jf specs | grep -v '^#' | while read -r spec; do
  if ! out=$($jf compile "$spec" --arch "$arch" 2>&1); then
    case "$out" in *"needs sm_90a"*) echo "skipped $spec (Hopper only)"; continue ;; esac
    echo "$out" >&2; exit 1
  fi
  echo "$out"
done
$jf cache build --model configs/gpt2-124m.yaml --arch "$arch"
$jf cache ls | tail -n 1
