#!/usr/bin/env python3
"""BM25 under other analyzers and parameters, outside ibex, fused with ibex's own dense run.

Usage: python3 scripts/analyzer_ablation.py BEIR_DIR DENSE_RUN

Needs PyStemmer (`pip install PyStemmer`; bench/python_env.sh installs it). Builds an in-memory
BM25 index of the collection's title + text for each analyzer (tokenizer x possessives x
stemmer) and BM25 parameters, and prints nDCG@10 of BM25 alone and fused with DENSE_RUN (an
`ibex eval --mode dense --run-file` run) by reciprocal rank fusion (k 60) and min-max convex
fusion (alpha 0.5). Its purpose is to choose which analyzer is worth building into ibex (an index
format change) before building it: the figures that count are ibex's own, measured after.

Tokenizers: `simple` splits on every character that is not a letter or digit (tantivy's
SimpleTokenizer, ibex's today); `standard` approximates Lucene's StandardTokenizer (UAX#29): a
token runs through `.`, `'` and `,` between letters or digits, so `3.5`, `U.S` and `o'neil's`
stay whole. Possessives: a trailing `'s` removed (Lucene's EnglishPossessiveFilter). Stemmers:
Snowball English (Porter2, ibex's today) or the original Porter (Lucene's PorterStemFilter).
"""
import gzip
import json
import os
import math
import re
import sys
from collections import Counter, defaultdict

import Stemmer

# Run files, nDCG and the fusion functions are fusion_sweep's (this script's folder is on the path).
from fusion_sweep import convex, minmax, ndcg_at_10, read_qrels, read_run, rrf

STOP = set(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)
SIMPLE = re.compile(r"[^\W_]+")
STANDARD = re.compile(r"[^\W_]+(?:[.,'’][^\W_]+)*")


def analyzer(tokenizer, possessive, stemmer_name):
    stemmer = Stemmer.Stemmer(stemmer_name)
    cache = {}

    def analyze(text):
        out = []
        pattern = SIMPLE if tokenizer == "simple" else STANDARD
        for token in pattern.findall(text.lower()):
            if possessive and (token.endswith("'s") or token.endswith("’s")):
                token = token[:-2]
            if not token or len(token) > 40 or token in STOP:
                continue
            stem = cache.get(token)
            if stem is None:
                stem = stemmer.stemWord(token)
                cache[token] = stem
            out.append(stem)
        return out

    return analyze


def read_beir(beir):
    docs = {}
    path = f"{beir}/corpus.jsonl"
    with (gzip.open(path + ".gz", "rt") if os.path.exists(path + ".gz") else open(path)) as f:
        for line in f:
            d = json.loads(line)
            docs[d["_id"]] = (d.get("title") or "") + "\n" + (d.get("text") or "")
    queries = {}
    with open(f"{beir}/queries.jsonl") as f:
        for line in f:
            q = json.loads(line)
            queries[q["_id"]] = q["text"]
    return docs, queries, read_qrels(f"{beir}/qrels/test.tsv")


class Bm25:
    def __init__(self, docs, analyze):
        self.postings = defaultdict(list)
        self.lengths = {}
        for did, text in docs.items():
            terms = analyze(text)
            self.lengths[did] = len(terms)
            for term, tf in Counter(terms).items():
                self.postings[term].append((did, tf))
        self.n = len(docs)
        self.avg = sum(self.lengths.values()) / max(self.n, 1)

    def search(self, terms, k1, b, depth=1000):
        scores = defaultdict(float)
        for term, count in Counter(terms).items():
            plist = self.postings.get(term)
            if not plist:
                continue
            idf = math.log(1 + (self.n - len(plist) + 0.5) / (len(plist) + 0.5))
            for did, tf in plist:
                norm = k1 * (1 - b + b * self.lengths[did] / self.avg)
                scores[did] += count * idf * tf * (k1 + 1) / (tf + norm)
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]
        return ranked


def main():
    beir, dense_path = sys.argv[1], sys.argv[2]
    docs, queries, qrels = read_beir(beir)
    dense = read_run(dense_path, 1000)
    qids = sorted(qrels)
    print(f"{beir}: {len(docs)} documents, {len(qids)} judged queries")
    print("analyzer                          k1   b     bm25    rrf60   minmax0.5")
    for tokenizer in ("simple", "standard"):
        for possessive in (False, True):
            for stemmer in ("english", "porter"):
                analyze = analyzer(tokenizer, possessive, stemmer)
                index = Bm25(docs, analyze)
                for k1, b in ((1.2, 0.75), (0.9, 0.4)):
                    runs = {q: index.search(analyze(queries[q]), k1, b) for q in qids}
                    alone = sum(ndcg_at_10([d for d, _ in runs[q]], qrels[q]) for q in qids) / len(qids)
                    fused = sum(ndcg_at_10(rrf([runs[q], dense.get(q, [])], 60), qrels[q]) for q in qids) / len(qids)
                    convexed = sum(ndcg_at_10(convex(dense.get(q, []), runs[q], 0.5, minmax), qrels[q]) for q in qids) / len(qids)
                    name = f"{tokenizer}{'+possessive' if possessive else ''}+{stemmer}"
                    print(f"{name:33} {k1:4} {b:4}   {alone:.4f}  {fused:.4f}  {convexed:.4f}", flush=True)


if __name__ == "__main__":
    main()
