#!/usr/bin/env python3
"""Paired significance of a change in nDCG@10 between two runs of the same queries.

Usage: python3 scripts/significance.py QRELS_TSV BASELINE_RUN CHANGED_RUN [TRIALS]

Prints the mean nDCG@10 of each run over the judged queries, the mean difference, the two-sided
p-value of a paired randomization test (Fisher's; TRIALS random sign flips of the per-query
differences, default 100,000, fixed seed) and of a paired t-test (normal approximation of the
t distribution, fine from about 30 queries). Standard library only; run files are TREC runs
(`ibex eval --run-file`), the qrels BEIR's `qrels/test.tsv`.
"""
import math
import random
import sys


def read_qrels(path):
    qrels = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3 or not parts[-1].lstrip("-").isdigit():
                continue
            qrels.setdefault(parts[0], {})[parts[-2]] = int(parts[-1])
    return qrels


def read_run(path):
    run = {}
    with open(path) as f:
        for line in f:
            qid, _, did, _, score, _ = line.split()
            run.setdefault(qid, []).append((float(score), did))
    # trec_eval's order: score descending, then document id descending.
    return {q: [d for _, d in sorted(v, reverse=True)] for q, v in run.items()}


def ndcg_at_10(ranked, judged):
    dcg = sum(judged.get(did, 0) / math.log2(i + 2) for i, did in enumerate(ranked[:10]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def main():
    qrels = read_qrels(sys.argv[1])
    base = read_run(sys.argv[2])
    changed = read_run(sys.argv[3])
    trials = int(sys.argv[4]) if len(sys.argv) > 4 else 100_000
    qids = sorted(qrels)
    a = [ndcg_at_10(base.get(q, []), qrels[q]) for q in qids]
    b = [ndcg_at_10(changed.get(q, []), qrels[q]) for q in qids]
    diffs = [y - x for x, y in zip(a, b)]
    n = len(diffs)
    observed = sum(diffs) / n
    rng = random.Random(1)
    extreme = 0
    for _ in range(trials):
        flipped = sum(d if rng.random() < 0.5 else -d for d in diffs) / n
        if abs(flipped) >= abs(observed) - 1e-12:
            extreme += 1
    p_random = (extreme + 1) / (trials + 1)
    mean = observed
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
    t = mean / (sd / math.sqrt(n)) if sd > 0 else float("inf")
    p_t = math.erfc(abs(t) / math.sqrt(2)) if sd > 0 else 0.0
    better = sum(1 for d in diffs if d > 1e-12)
    worse = sum(1 for d in diffs if d < -1e-12)
    print(
        f"queries {n}: baseline {sum(a) / n:.4f}, changed {sum(b) / n:.4f}, "
        f"difference {observed:+.4f} (better on {better}, worse on {worse}); "
        f"randomization p = {p_random:.4f}, paired t = {t:.2f}, p = {p_t:.4f}"
    )


if __name__ == "__main__":
    main()
