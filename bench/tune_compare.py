#!/usr/bin/env python3
"""Budgeted tuning against exhaustive: for every problem, the budgeted run's winner as timed by the exhaustive run,
next to the exhaustive winner's time. Usage: bench/tune_compare.py EXHAUSTIVE.csv BUDGETED.csv [--tolerance 0.03]
(both from `jetforge tune --report`; the budgeted one with --finalists N). Exits 1 if any winner is slower than
the exhaustive best by more than the tolerance."""
import csv
import sys


def load(path):
    rows = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["problem"], []).append(r)
    return rows


def main():
    args = sys.argv[1:]
    tolerance = 0.03
    if "--tolerance" in args:
        i = args.index("--tolerance")
        tolerance = float(args[i + 1])
        del args[i:i + 2]
    exhaustive, budgeted = load(args[0]), load(args[1])
    worst, failures = 0.0, 0
    print(f"{'problem':<70} {'exhaustive us':>13} {'budgeted pick us':>16} {'ratio':>6}")
    for problem, rows in exhaustive.items():
        timed = {r["spec"]: float(r["time_us"]) for r in rows if r["verdict"] == "ok" and r["full_timing"] == "1"}
        if not timed:
            failures += 1
            print(f"{problem[:70]:<70} no candidate passed the exhaustive run's check  OVER")
            continue
        best = min(timed.values())
        pick = next(r["spec"] for r in budgeted[problem] if r["winner"] == "1")
        ratio = timed[pick] / best
        worst = max(worst, ratio)
        failures += ratio > 1 + tolerance
        print(f"{problem[:70]:<70} {best:13.1f} {timed[pick]:16.1f} {ratio:6.3f}{'  OVER' if ratio > 1 + tolerance else ''}")
    print(f"{len(exhaustive)} problems; worst budgeted pick {100 * (worst - 1):.1f}% slower than the exhaustive best "
          f"(tolerance {100 * tolerance:.0f}%): {'PASS' if failures == 0 else 'FAIL'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
