#!/usr/bin/env bash
# The main job: build, describe the machine, compile every default kernel for the local GPU (or for sm_90a
# where there is none), and fill the kernel cache with what a GPT-2 124M training step needs. On a machine with a
# GPU it then prepares the Brown corpus and trains a small GPT (6 layers, d = 384) with the INT8 data flow,
# printing loss and throughput (tuning the GEMMs on the first run); without one it says so and stops there.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
jf=build/jetforge
$jf info
gpu_arch=$($jf info | sed -n 's/.*(target \(sm_[0-9a-z]*\)).*/\1/p' | head -n 1)
arch=${gpu_arch:-sm_90a}
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
if [ -z "$gpu_arch" ]; then
  echo "no GPU here: training needs one (run ./run.sh on a machine with an NVIDIA GPU)"
  exit 0
fi
tools/prepare_data.sh
$jf train --model configs/gpt-6l-384.yaml --data .data/brown.tok --steps 300 --val-every 100 --out train-out
