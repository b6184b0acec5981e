#!/usr/bin/env python3
"""make bench's reports, from bench/results/raw.tsv ("label<TAB>value" per
run; bench/run.sh writes it):

  report.py summary RAW CLIENTS SECONDS ROUNDS USERS   the tables of the run
  report.py targets RAW SYNC_TARGETS_TSV               every target, met or not

Medians of the rounds; ratios and differences of two variants are the
medians of their per-round pairs (paired), since the machine's load drifts
and a pair shares it."""
import collections
import math
import os
import statistics
import sys


def load(raw):
    runs = collections.defaultdict(list)
    for line in open(raw):
        label, v = line.rstrip('\n').split('\t')
        runs[label].append(float(v))
    # durable_interleaved's deductions each hold one reading of the clock;
    # its "clock" kind holds two: credit_deduct's own CPU is deduct minus
    # (clock - deduct), per block
    for m in ("durable", "paused"):
        own = [2 * d - c for d, c in pairs(runs, f"{m}/deduct", f"{m}/clock")]
        if own:
            runs[f"{m}/deduct_own"] = own
    return runs


def pairs(runs, a, b):
    """the per-round pairs (a, b) of two variants"""
    return list(zip(runs.get(a, []), runs.get(b, [])))


def paired(runs, a, b):
    """medians of the per-round ratio a/b and difference a-b, and the
    number of pairs"""
    p = pairs(runs, a, b)
    if not p:
        return None
    return (statistics.median(x / y for x, y in p),
            statistics.median(x - y for x, y in p), len(p))


def median_ci(xs, level=0.95):
    """a distribution-free confidence interval for the median of xs: the
    k-th smallest and k-th largest, k the largest for which the binomial
    tails outside them hold at most 1 - level (the sign test); None when
    there are too few values (fewer than 6 for 95%)"""
    xs = sorted(xs)
    n = len(xs)
    k, tail = 0, 0.0
    while True:
        # P(Bin(n, 1/2) <= k): the chance the median lies below xs[k]
        tail += math.comb(n, k) / 2 ** n
        if 2 * tail > 1 - level:
            break
        k += 1
    if k == 0:
        return None
    return xs[k - 1], xs[n - k]


def summary(runs, clients, secs, rounds, users):
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"pgbench, {clients} clients, {secs} s per run, median of {rounds} alternating rounds, durable commits; spread = {users} accounts, hot = 1 account; credits-sync stopped (its cost is the last table)")
    print()
    print("| workload | credit_deduct tps | floor tps | PL/pgSQL tps | deduct / floor | deduct / PL/pgSQL |")
    print("|---|---:|---:|---:|---:|---:|")
    for w in ("spread", "hot"):
        d, f, p = med.get(f"{w}/deduct"), med.get(f"{w}/floor"), med.get(f"{w}/plpgsql")
        if None in (d, f, p):
            continue
        print(f"| {w} | {d:.0f} | {f:.0f} | {p:.0f} | {d/f:.2f} | {d/p:.2f} |")
    if "cpu/spread/deduct" in med:
        print()
        print("Server CPU per durable transaction: the CPU time of all PostgreSQL processes during the run over the transactions completed (median of the rounds):")
        print()
        print("| workload | credit_deduct, CPU us/tx | floor | PL/pgSQL |")
        print("|---|---:|---:|---:|")
        for w in ("spread", "hot"):
            cells = [med.get(f"cpu/{w}/{v}") for v in ("deduct", "floor", "plpgsql")]
            if cells[0] is not None:
                print(f"| {w} | " + " | ".join("-" if c is None else f"{c:.0f}" for c in cells) + " |")
    if "setclause/deduct" in runs:
        print()
        print("SET search_path = pg_catalog, pg_temp: the functions against the same C functions declared without the clause (medians of per-round pairs):")
        print()
        print("| call (pgbench) | clients | with SET tps | without SET tps | with / without |")
        print("|---|---:|---:|---:|---:|")
        for f, n in (("balance", 1), ("deduct", int(clients))):
            p = paired(runs, f"setclause/{f}", f"setclause/{f}_noset")
            if p:
                print(f"| credit_{f} | {n} | {med[f'setclause/{f}']:.0f} | {med[f'setclause/{f}_noset']:.0f} | {p[0]:.3f} |")
    if "percall/deduct" in runs:
        print()
        print("| call (in one backend) | with SET, CPU us per call | without SET | with / without | the clause, CPU us per call |")
        print("|---|---:|---:|---:|---:|")
        for f in ("balance", "deduct"):
            p = paired(runs, f"percall/{f}", f"percall/{f}_noset")
            if p:
                print(f"| credit_{f} ({p[2]} pairs) | {med[f'percall/{f}']:.2f} | {med[f'percall/{f}_noset']:.2f} | {p[0]:.3f} | {p[1]:.2f} |")
    if "chain/spread/floor_chained" in runs or "durable/chained" in runs:
        print()
        print("The hash chain: the floor with ordering only (floor_ordered) against the same with the chain (floor_chained); they differ in the chain alone. Durable, as pgbench runs them; ratios are medians of the per-round pairs.")
        print()
        print("| workload | chained tps | unchained tps | tps, chained / unchained | chain cost (tps) | server CPU us/tx, chained | unchained | chain cost (CPU/tx) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for w in ("spread", "hot"):
            p = paired(runs, f"chain/{w}/floor_chained", f"chain/{w}/floor_ordered")
            c = paired(runs, f"cpu/chain/{w}/floor_chained", f"cpu/chain/{w}/floor_ordered")
            if p and c:
                print(f"| {w} | {med[f'chain/{w}/floor_chained']:.0f} | {med[f'chain/{w}/floor_ordered']:.0f} | {p[0]:.3f} | {(1 - p[0]) * 100:+.1f}% "
                      f"| {med[f'cpu/chain/{w}/floor_chained']:.0f} | {med[f'cpu/chain/{w}/floor_ordered']:.0f} | {(c[0] - 1) * 100:+.1f}% |")
        # the chained and the ordered statement in one backend, next to
        # credit_deduct: keys chained, ordered, deduct; unit: the table's
        # first heading
        def loop_table(title, unit, chained, ordered, deduct):
            p = paired(runs, chained, ordered)
            if not p or deduct not in med:
                return False
            d = med[deduct]
            print()
            print(title)
            print()
            print(f"| {unit} | chained statement | ordered statement | the chain (median of pair differences) | credit_deduct | the chain / credit_deduct |")
            print("|---|---:|---:|---:|---:|---:|")
            print(f"| {p[2]} blocks | {med[chained]:.2f} | {med[ordered]:.2f} | {p[1]:.2f} | {d:.2f} | {p[1] / d * 100:.1f}% |")
            return True
        if "wal/chain_loop" in med:
            print()
            print(f"WAL per call, the two statements 2,000 times in a loop: {med['wal/chain_loop']:.0f} bytes chained, {med['wal/ordered_loop']:.0f} ordered.")
        loop_table("In one backend, durable: the chained and the ordered statement and credit_deduct, each committed, interleaved one by one (credits_bench.durable_interleaved; a pair is a block's chained and ordered deductions); the backend's CPU per deduction, commit included, the clock's own reading taken out of credit_deduct's; no other client competes.",
                   "CPU us per durable deduction", "durable/chained", "durable/ordered", "durable/deduct_own")
        loop_table("The same with the backend pausing 1 ms after each commit, as it does waiting for its client, and so coming back to cold caches.",
                   "CPU us per durable deduction", "paused/chained", "paused/ordered", "paused/deduct_own")
    if any(k.endswith("+sync") for k in med):
        print()
        print("| workload | deduct, credits-sync running | deduct, credits-sync stopped | ratio |")
        print("|---|---:|---:|---:|")
        for w in ("spread", "hot"):
            a, b = med.get(f"{w}/deduct+sync"), med.get(f"{w}/deduct-nosync")
            if a and b:
                print(f"| {w} | {a:.0f} | {b:.0f} | {a/b:.2f} |")


def targets(runs, sync_tsv):
    sync = []
    if os.path.exists(sync_tsv):
        for line in open(sync_tsv):
            kind, label, v = line.rstrip('\n').split('\t')
            sync.append((kind, label, float(v)))
    rows = []
    def row(target, measured, ok):
        rows.append(f"| {target} | {measured} | {'information' if ok is None else 'met' if ok else 'NOT MET'} |")
    for w in ("spread", "hot"):
        p = paired(runs, f"{w}/deduct", f"{w}/floor")
        if p:
            row(f"credit_deduct / floor, {w}, credits-sync stopped >= 1.00", f"{p[0]:.2f}", p[0] >= 1.0)
    # the chain's costs: the median of the per-round pairs, and a
    # distribution-free 95% confidence interval for it (median_ci).  Met
    # when the whole interval is at or below 3%, not met when the whole
    # interval is above it, and inconclusive when the pairs cannot tell
    # (this machine's pgbench pairs vary by +-10 to 30%: more rounds narrow
    # it).  what: the measure's own words, put before the interval.
    def chain_row(target, costs, what="", unit="pairs"):
        med = statistics.median(costs)
        ci = median_ci(costs)
        measured = f"{med * 100:+.1f}% ({what}{len(costs)} {unit}, " + \
            (f"95% interval {ci[0] * 100:+.1f}% to {ci[1] * 100:+.1f}%)" if ci else
             f"too few for an interval; {min(costs) * 100:+.1f}% to {max(costs) * 100:+.1f}%)")
        if ci and ci[1] <= 0.03:
            row(target, measured, True)
        elif ci and ci[0] > 0.03:
            row(target, measured, False)
        else:
            rows.append(f"| {target} | {measured} | inconclusive |")
    for w in ("spread", "hot"):
        for what, a, b, sign in (("throughput", f"chain/{w}/floor_chained", f"chain/{w}/floor_ordered", -1),
                                 ("server CPU per transaction", f"cpu/chain/{w}/floor_chained", f"cpu/chain/{w}/floor_ordered", 1)):
            costs = [sign * (x / y - 1) for x, y in pairs(runs, a, b)]
            if costs:
                chain_row(f"hash chain cost per durable deduction, {what}, {w} <= 3%", costs)
    # the same per durable deduction in one backend, interleaved: the
    # chain's CPU (each block's difference) over credit_deduct's own
    for m, how in (("durable", "interleaved"), ("paused", "interleaved, 1 ms pause after each commit")):
        diffs = [x - y for x, y in pairs(runs, f"{m}/chained", f"{m}/ordered")]
        if diffs and runs.get(f"{m}/deduct_own"):
            d = statistics.median(runs[f"{m}/deduct_own"])
            chain_row(f"hash chain CPU per durable credit_deduct, one backend, {how} <= 3%", [x / d for x in diffs],
                      f"{statistics.median(diffs):.2f} of {d:.1f} CPU us, ", "blocks")
    for w in ("spread", "hot"):
        p = paired(runs, f"{w}/deduct+sync", f"{w}/deduct-nosync")
        if p:
            row(f"writers with credits-sync running / stopped, {w} >= 0.90", f"{p[0]:.2f}", p[0] >= 0.9)
    for kind, label, v in sync:
        if kind == "mirror_cpu":
            row(f"mirror CPU per row ({label}) <= 20 us", f"{v:.1f} us", v <= 20)
        elif kind == "lag_p99" and label.startswith("1,000/s"):
            row(f"lag p99, {label} <= 10 ms", f"{v:.2f} ms", v <= 10)
        elif kind == "idle_cpu":
            row(f"idle CPU, daemon + backend, {label} < 2%", f"{v:.2f}%", v < 2)
    print("| target | measured | |")
    print("|---|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    if sys.argv[1] == "summary":
        summary(load(sys.argv[2]), *sys.argv[3:7])
    elif sys.argv[1] == "targets":
        targets(load(sys.argv[2]), sys.argv[3])
    else:
        sys.exit("usage: report.py summary RAW CLIENTS SECONDS ROUNDS USERS | targets RAW SYNC_TARGETS_TSV")
