#!/usr/bin/env bash
# Everything the GPU machine has to prove, in one command after the build (see bench/NOTES.md, end):
#   bench/device_run.sh BUILD_DIR OUT_DIR [--quick]
# GPU test suite, every benchmark with its PyTorch script, the tune stress test, and two short training runs
# (int8, bf16) of the small GPT on .data/brown.tok. Full logs go to OUT_DIR; the short tables are printed last.
# --quick skips the GEMM sweep and trains 30 steps instead of 200.
set -uo pipefail
build=$1 out=$2 quick=${3:-}
mkdir -p "$out"
steps=200 sweep=--sweep
[ "$quick" = --quick ] && steps=30 sweep=
run() {  # name, command...: runs it with its output in OUT_DIR/name.txt, says how it ended (124: timed out)
  local name=$1
  shift
  local start=$SECONDS
  timeout "${JF_STEP_TIMEOUT_S:-300}" "$@" > "$out/$name.txt" 2>&1
  echo "$name: exit $? in $((SECONDS - start)) s" | tee -a "$out/summary.txt"
}
run gpu_tests "$build/tests/jetforge_tests" --test-suite='gpu*'
run dispatch "$build/bench/jetforge_bench_dispatch"
run gemm "$build/bench/jetforge_bench_gemm" $sweep
run quantize "$build/bench/jetforge_bench_quantize"
run ops "$build/bench/jetforge_bench_ops"
run attention "$build/bench/jetforge_bench_attention"
run sdpa python3 bench/sdpa.py
mkdir -p "$out/attention_dump"
run attention_dump "$build/bench/jetforge_bench_attention" --dump "$out/attention_dump"
run attention_errors python3 bench/sdpa.py --errors "$out/attention_dump"
rm -rf "$out/attention_dump"
run block "$build/bench/jetforge_bench_block"
run block_torch python3 bench/block.py
run gpt2 "$build/bench/jetforge_bench_gpt2"
run gpt2_torch python3 bench/gpt2.py
# GPT-2 124M tuned from an empty cache (exhaustive), then again with the budgeted search on the same cubins; the
# comparison checks each budgeted pick against the exhaustive best.
run tune "$build/jetforge" tune --model configs/gpt2-124m.yaml --cache "$out/tune.db" --report "$out/tune_exhaustive.csv"
cp "$out/tune.db" "$out/tune_budgeted.db"
run tune_budgeted "$build/jetforge" tune --model configs/gpt2-124m.yaml --cache "$out/tune_budgeted.db" --finalists 3 --report "$out/tune_budgeted.csv"
run tune_compare python3 bench/tune_compare.py "$out/tune_exhaustive.csv" "$out/tune_budgeted.csv"
rm -f "$out"/tune*.db
run tune_stress bash tests/tune_stress.sh "$build"
for precision in int8 bf16; do
  run "train_$precision" "$build/jetforge" train --model configs/gpt-6l-384.yaml --data .data/brown.tok --precision "$precision" --steps "$steps" \
    --val-every 50 --out "$out/train"
done
echo
grep -E "test cases|assertions" "$out/gpu_tests.txt"
grep -E "ERROR" "$out/gpu_tests.txt" | head -20
for name in dispatch gemm ops attention sdpa block block_torch gpt2 gpt2_torch tune_compare tune_stress; do
  echo "== $name"
  tail -n 16 "$out/$name.txt"
done
for precision in int8 bf16; do
  echo "== train $precision"
  grep -E "^step|validation loss" "$out/train_$precision.txt" | tail -n 4
done
