#!/usr/bin/env python3
"""Sweeps fusion functions over the BM25 and dense run files of `ibex eval`, offline.

Usage: python3 scripts/fusion_sweep.py QRELS_TSV BM25_RUN DENSE_RUN [DEPTH]

Each run is a TREC run file (`ibex eval --run-file`, depth 1000). Prints nDCG@10 of reciprocal
rank fusion with k swept, and of convex fusion (alpha x dense + (1 - alpha) x BM25) of min-max
and z-score normalized scores with alpha swept, each list cut at DEPTH (default 1000) before
fusion, as ibex's hybrid mode fuses them. Standard library only. It picks nothing: the choice of
a default is made on all collections at once (EVALUATION.md), in ibex itself.
"""
import math
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


def read_run(path, depth):
    run = {}
    with open(path) as f:
        for line in f:
            qid, _, did, rank, score, _ = line.split()
            if int(rank) <= depth:
                run.setdefault(qid, []).append((did, float(score)))
    return run


def ndcg_at_10(ranked, judged):
    # trec_eval's ndcg_cut: linear gains (the grade), log2 discount.
    dcg = sum(judged.get(did, 0) / math.log2(i + 2) for i, did in enumerate(ranked[:10]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def ordered(scores):
    return [d for d, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]


def rrf(lists, k):
    scores = {}
    for lst in lists:
        for rank, (did, _) in enumerate(lst, 1):
            scores[did] = scores.get(did, 0.0) + 1.0 / (k + rank)
    return ordered(scores)


def minmax(lst):
    if not lst:
        return {}
    values = [s for _, s in lst]
    lo, hi = min(values), max(values)
    return {d: ((s - lo) / (hi - lo) if hi > lo else 1.0) for d, s in lst}


def zscore(lst):
    if not lst:
        return {}
    values = [s for _, s in lst]
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {d: ((s - mean) / sd if sd > 0 else 0.0) for d, s in lst}


def theoretical_min(lower):
    """Bruch et al.'s theoretical min-max: the scale's lower bound, the list's maximum."""

    def normalize(lst):
        if not lst:
            return {}
        hi = max(s for _, s in lst)
        return {d: ((s - lower) / (hi - lower) if hi > lower else 1.0) for d, s in lst}

    return normalize


def convex(dense, bm25, alpha, normalize, normalize_bm25=None):
    nd, nb = normalize(dense), (normalize_bm25 or normalize)(bm25)
    floor_d = min(nd.values(), default=0.0)
    floor_b = min(nb.values(), default=0.0)
    scores = {}
    for did in set(nd) | set(nb):
        scores[did] = alpha * nd.get(did, floor_d) + (1 - alpha) * nb.get(did, floor_b)
    return ordered(scores)


def main():
    qrels = read_qrels(sys.argv[1])
    depth = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
    bm25 = read_run(sys.argv[2], depth)
    dense = read_run(sys.argv[3], depth)
    qids = sorted(qrels)

    def mean(fuse):
        return sum(ndcg_at_10(fuse(bm25.get(q, []), dense.get(q, [])), qrels[q]) for q in qids) / len(qids)

    print(f"queries {len(qids)}, depth {depth}")
    print("bm25   %.4f" % mean(lambda b, d: [x for x, _ in b]))
    print("dense  %.4f" % mean(lambda b, d: [x for x, _ in d]))
    for k in (5, 10, 20, 30, 60, 100):
        print("rrf k=%-4d %.4f" % (k, mean(lambda b, d: rrf([b, d], k))))
    for name, normalize in (("minmax", minmax), ("zscore", zscore)):
        row = []
        for alpha in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
            row.append("a=%.1f %.4f" % (alpha, mean(lambda b, d: convex(d, b, alpha, normalize))))
        print(name, "  ".join(row))
    # Theoretical min-max: BM25 from 0; cosine from 0 or from -1.
    for name, lower in (("tmm0", 0.0), ("tmm-1", -1.0)):
        row = []
        for alpha in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
            row.append("a=%.1f %.4f" % (alpha, mean(lambda b, d: convex(d, b, alpha, theoretical_min(lower), theoretical_min(0.0)))))
        print(name, "  ".join(row))


if __name__ == "__main__":
    main()
