"""The Python package's side of bench/python_overhead.sh: search QPS and embedding throughput
through `ibex` in Python, measured the way the Rust examples measure them.

    python bench/python_overhead.py search INDEX QUERIES MODE THREADS SECONDS
    python bench/python_overhead.py embed PASSAGES ROUNDS

Prints one JSON line, like examples/search_throughput.rs and embed_throughput.rs.
"""

import json
import sys
import threading
import time

import ibex


def search(index_dir, queries_path, mode, threads, seconds):
    index = ibex.Index.open(index_dir)
    queries = [json.loads(line)["text"] for line in open(queries_path) if line.strip()]
    # The Rust example's requests: SearchRequest::new defaults (top 10, 2 passages).
    index.search(queries[0], mode=mode, top_k=10, passages=2)  # warm-up (model, caches)
    stop = threading.Event()
    counts = [0] * threads

    def worker(t):
        i = t
        while not stop.is_set():
            index.search(queries[i % len(queries)], mode=mode, top_k=10, passages=2)
            counts[t] += 1
            i += threads

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    print(json.dumps({"engine": "python", "qps": sum(counts) / elapsed, "searches": sum(counts)}))


def embed(passages_path, rounds):
    texts = [json.loads(line)["text"] for line in open(passages_path) if line.strip()]
    embedder = ibex.Embedder()
    embedder.embed(texts[:64])  # warm-up
    best = None
    for _ in range(rounds):
        started = time.perf_counter()
        vectors = embedder.embed(texts)
        seconds = time.perf_counter() - started
        best = seconds if best is None else min(best, seconds)
    assert vectors.shape[0] == len(texts)
    print(json.dumps({"engine": "python", "seconds": best, "sentences": len(texts)}))


if __name__ == "__main__":
    if sys.argv[1] == "search":
        search(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6]))
    else:
        embed(sys.argv[2], int(sys.argv[3]))
