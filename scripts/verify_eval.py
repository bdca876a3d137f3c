#!/usr/bin/env python3
"""Scores an ibex TREC run with pytrec_eval, independently of ibex's own metrics.

Usage: python3 scripts/verify_eval.py QRELS_TSV RUN_FILE
(needs `pip install pytrec-eval-terrier`). Prints nDCG@10, Recall@100, MAP and MRR@10 averaged
over the judged queries, to compare with `ibex eval --run-file RUN_FILE`.
"""
import sys
import pytrec_eval

qrels_path, run_path = sys.argv[1], sys.argv[2]
qrels = {}
with open(qrels_path) as f:
    for line in f:
        parts = line.split()
        if len(parts) < 3 or not parts[-1].lstrip("-").isdigit():
            continue  # header
        qid, did, grade = parts[0], parts[-2], int(parts[-1])
        qrels.setdefault(qid, {})[did] = grade
run = {}
with open(run_path) as f:
    for line in f:
        qid, _, did, rank, score, _ = line.split()
        run.setdefault(qid, {})[did] = float(score)
for qid in qrels:
    run.setdefault(qid, {})
evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10", "recall_100", "map_cut_1000", "recip_rank"})
per_query = evaluator.evaluate(run)


def mrr_at_10(qid):
    ranked = sorted(run[qid].items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:10]
    for i, (did, _) in enumerate(ranked):
        if qrels[qid].get(did, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


n = len(per_query)
print(
    "pytrec_eval: queries %d  nDCG@10 %.4f  Recall@100 %.4f  MAP %.4f  MRR@10 %.4f"
    % (
        n,
        sum(m["ndcg_cut_10"] for m in per_query.values()) / n,
        sum(m["recall_100"] for m in per_query.values()) / n,
        sum(m["map_cut_1000"] for m in per_query.values()) / n,
        sum(mrr_at_10(q) for q in per_query) / n,
    )
)
