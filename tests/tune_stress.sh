#!/usr/bin/env bash
# GPU machine only: four `jetforge tune` processes on one cache database at once, then a tune killed with
# SIGKILL mid-run. Usage: tests/tune_stress.sh BUILD_DIR [SEED_DB] (model: $JF_STRESS_MODEL, default the small GPT)
# SEED_DB: a cache with every candidate already compiled (jetforge tune --compile-only), so the runs time kernels
# at once instead of compiling them. Prints one PASS/FAIL line per check; exits 1 on any failure.
set -uo pipefail
build=$1 seed=${2:-}
jf="$build/jetforge" model=${JF_STRESS_MODEL:-configs/gpt-6l-384.yaml} work=$(mktemp -d)
failures=0
check() { if [ "$2" = 0 ]; then echo "PASS $1"; else echo "FAIL $1"; failures=$((failures + 1)); fi; }

db="$work/shared.db"
[ -n "$seed" ] && cp "$seed" "$db"
pids=()
for i in 1 2 3 4; do "$jf" tune --model "$model" --cache "$db" --reps 5 > "$work/tune$i.log" 2>&1 & pids+=($!); done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
check "four concurrent tunes all exit 0" $status
problems=$(grep -c "candidates timed" "$work/tune1.log")
winners=$("$jf" cache winners --cache "$db" | grep -c " candidates)$")
[ "$winners" -eq "$problems" ]; check "one winner per problem ($winners winners, $problems problems, no duplicate or lost row)" $?
dups=$("$jf" cache ls --cache "$db" | awk '{print $1, $2}' | sort | uniq -d | wc -l)
[ "$dups" -eq 0 ]; check "no duplicate cubin rows ($("$jf" cache ls --cache "$db" | wc -l) entries)" $?
"$jf" cache verify --cache "$db" > "$work/verify.log" 2>&1; check "verify after the concurrent tunes: $(head -1 "$work/verify.log")" $?

killed="$work/killed.db"
[ -n "$seed" ] && cp "$seed" "$killed"
"$jf" tune --model "$model" --cache "$killed" --reps 50 > "$work/killed.log" 2>&1 &
victim=$!
sleep 3
kill -9 "$victim"; wait "$victim" 2>/dev/null
"$jf" cache verify --cache "$killed" > "$work/verify_killed.log" 2>&1; check "a tune killed with SIGKILL after 3 s leaves a database that passes verify: $(head -1 "$work/verify_killed.log")" $?
"$jf" cache winners --cache "$killed" > /dev/null; check "the killed run's database still opens and lists winners" $?
rm -rf "$work"
exit $((failures > 0))
