"""ANN peers on the files `ann_bench prepare` wrote: hnswlib and faiss HNSWFlat.

Same vectors, same queries, same M and ef_construction as ibex, inner product (the vectors are
unit length). Prints one JSON line per (engine, threads, ef) like ann_bench's `run`, plus one
`build` line per engine (seconds and the index's resident memory growth).

Recall follows ann_bench: a returned row is a hit when its exact similarity reaches the 10th
exact similarity minus epsilon (ann-benchmarks' tie rule).
"""

import argparse
import json
import os
import time

import numpy as np
import psutil


def rss():
    return psutil.Process(os.getpid()).memory_info().rss


def load(data):
    meta = json.load(open(os.path.join(data, "meta.json")))
    d = meta["dimension"]
    base = np.fromfile(os.path.join(data, "base.f32"), dtype="<f4").reshape(-1, d)
    queries = np.fromfile(os.path.join(data, "queries.f32"), dtype="<f4").reshape(-1, d)
    truth = np.fromfile(os.path.join(data, "truth.bin"), dtype="<u4").reshape(-1, meta["k"] + 1)
    kth = truth[:, meta["k"]].copy().view("<f4")
    return meta, base, queries, kth


def recall(base, queries, kth, found, k, epsilon):
    found = np.asarray(found, dtype=np.int64)[:, :k]
    valid = found >= 0
    rows = np.where(valid, found, 0)
    sims = np.einsum("qd,qkd->qk", queries, base[rows])
    hits = (sims >= (kth[:, None] - epsilon)) & valid
    return float(hits.sum()) / (k * len(queries))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef", default="10,12,16,20,24,32,40,48,64,80,96,128,160,192,256,384,512")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--engines", default="hnswlib,faiss")
    args = parser.parse_args()
    efs = [int(x) for x in args.ef.split(",")]
    thread_counts = [int(x) for x in args.threads.split(",")]
    meta, base, queries, kth = load(args.data)
    k, epsilon = meta["k"], meta["epsilon"]
    build_threads = max(thread_counts)

    for engine in args.engines.split(","):
        before = rss()
        started = time.perf_counter()
        if engine == "hnswlib":
            import hnswlib

            index = hnswlib.Index(space="ip", dim=base.shape[1])
            index.init_index(max_elements=len(base), ef_construction=args.ef_construction, M=args.m, random_seed=100)
            index.set_num_threads(build_threads)
            index.add_items(base, np.arange(len(base)))
        elif engine == "faiss":
            import faiss

            faiss.omp_set_num_threads(build_threads)
            index = faiss.IndexHNSWFlat(base.shape[1], args.m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = args.ef_construction
            index.add(base)
        else:
            raise SystemExit(f"unknown engine {engine}")
        build_seconds = time.perf_counter() - started
        print(json.dumps({"engine": engine, "event": "build", "seconds": build_seconds,
                          "index_bytes": rss() - before, "vectors": len(base)}), flush=True)
        for threads in thread_counts:
            for ef in efs:
                # Best of three passes, as ann_bench.
                seconds = float("inf")
                for _ in range(3):
                    started = time.perf_counter()
                    if engine == "hnswlib":
                        index.set_ef(max(ef, k))
                        index.set_num_threads(threads)
                        labels, _ = index.knn_query(queries, k=k)
                    else:
                        faiss.omp_set_num_threads(threads)
                        index.hnsw.efSearch = max(ef, k)
                        _, labels = index.search(queries, k)
                    seconds = min(seconds, time.perf_counter() - started)
                print(json.dumps({"engine": engine, "threads": threads, "ef": ef,
                                  "qps": len(queries) / seconds,
                                  "recall": recall(base, queries, kth, labels, k, epsilon)}), flush=True)
        del index


if __name__ == "__main__":
    main()
