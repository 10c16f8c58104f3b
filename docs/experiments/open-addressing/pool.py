#!/usr/bin/env python3
"""Pools the SAMPLE lines of TestRunTime outputs: per scenario and variant,
median (min-max) of ratio variant/empty and ns/run, and per round the paired
ns ratio of each variant to counter."""
import sys, statistics, collections
samples = collections.defaultdict(list)   # (scen, var) -> [(ratio, ns, ens, load)]
rounds = collections.defaultdict(dict)     # (file, round) -> {(scen,var): ns}
loads = []
for f in sys.argv[1:]:
    lines = [l.rstrip('\n').split('\t') for l in open(f) if l.startswith('SAMPLE')]
    nvar = len({(l[1], l[2]) for l in lines})
    for i, l in enumerate(lines):
        _, var, scen, ratio, ns, ens, load = l
        samples[(scen, var)].append((float(ratio), float(ns), float(ens)))
        rounds[(f, i // nvar)][(scen, var)] = float(ns)
        loads.append(float(load))
scens = list(dict.fromkeys(s for s, _ in samples))
vars_ = list(dict.fromkeys(v for _, v in samples))
def mmm(xs):
    xs = sorted(xs)
    return f"{statistics.median(xs):.2f} ({xs[0]:.2f}–{xs[-1]:.2f})"
def mmm0(xs):
    xs = sorted(xs)
    return f"{statistics.median(xs):.0f} ({xs[0]:.0f}–{xs[-1]:.0f})"
print(f"files: {' '.join(sys.argv[1:])}; rounds: {len(rounds)}; load average (1 min) at round starts: {min(loads):.2f}–{max(loads):.2f}, median {statistics.median(loads):.2f}")
print("| scenario | variant | n | ratio ÷ empty, median (min–max) | ns/run median (min–max) | empty ns/run median | ns ÷ counter ns, same round, median |")
print("|---|---|---|---|---|---|---|")
for s in scens:
    for v in vars_:
        xs = samples.get((s, v))
        if not xs:
            continue
        paired = [r[(s, v)] / r[(s, 'counter')] for r in rounds.values() if (s, v) in r and (s, 'counter') in r]
        print(f"| {s} | {v} | {len(xs)} | {mmm([x[0] for x in xs])} | {mmm0([x[1] for x in xs])} | {statistics.median([x[2] for x in xs]):.0f} | {statistics.median(paired):.2f} |")
