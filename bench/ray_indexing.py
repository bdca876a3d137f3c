"""Distributed indexing on Ray against `ibex index` in the same run (bench/ray_indexing.sh).

Indexes the first N documents of Cranfield three ways, one after the other on the same machine:
the `ibex index` command (one process, every core), `ibex.ray.build_sharded_index` with one
embedding worker using every core, and with two workers of one core each on a two-node Ray
cluster on loopback. Prints one CSV row per run: documents/s and the ratio to `ibex index`.
Then the cost of the scatter-gather: the Cranfield queries searched in-process on the 4 shards
(`ibex.ray.ShardedIndex`) and on one index holding the same vectors, one thread, per mode.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import ibex.ray  # noqa: E402

CORES = os.cpu_count() or 2


def main() -> None:
    ibex_bin, corpus, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    work = tempfile.mkdtemp(prefix="ibex-ray-bench-")
    subset = os.path.join(work, "corpus.jsonl")
    with gzip.open(corpus, "rt") as source, open(subset, "w") as out:
        kept = 0
        for line in source:
            doc = json.loads(line)
            if (doc.get("title") or "").strip() or (doc.get("text") or "").strip():
                out.write(line)
                kept += 1
            if kept == count:
                break
    print("run,workers,threads_per_worker,documents,seconds,documents_per_s,ratio_to_ibex_index")

    started = time.perf_counter()
    subprocess.run([ibex_bin, "index", "--index", os.path.join(work, "cli"), subset], check=True,
                   capture_output=True)
    cli_seconds = time.perf_counter() - started
    cli_rate = kept / cli_seconds
    print(f"ibex index,1,{CORES},{kept},{cli_seconds:.1f},{cli_rate:.2f},1.00", flush=True)

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": CORES, "object_store_memory": 200 << 20, "include_dashboard": False})
    cluster.add_node(num_cpus=CORES, object_store_memory=200 << 20)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    try:
        for workers, threads in ((1, CORES), (2, max(1, CORES // 2))):
            out_dir = os.path.join(work, f"ray-{workers}")
            started = time.perf_counter()
            manifest = ibex.ray.build_sharded_index(
                subset, out_dir, shards=4, num_workers=workers, threads_per_worker=threads)
            seconds = time.perf_counter() - started
            assert manifest["documents"] == kept, manifest["documents"]
            rate = kept / seconds
            print(f"ray,{workers},{threads},{kept},{seconds:.1f},{rate:.2f},{rate / cli_rate:.2f}",
                  flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    try:
        search_cost(work, os.path.join(os.path.dirname(corpus), "queries.jsonl"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def search_cost(work: str, queries_path: str) -> None:
    import ibex

    sharded_dir = os.path.join(work, "ray-2")
    ibex.ray.reshard(sharded_dir, os.path.join(work, "one"), shards=1)
    single_dir = os.path.join(work, "one", ibex.ray.read_manifest(os.path.join(work, "one"))["shards"][0]["path"])
    with open(queries_path) as f:
        queries = [json.loads(line)["text"] for line in f if line.strip()]
    sharded = ibex.ray.ShardedIndex(sharded_dir)
    single = ibex.Index.open(single_dir)
    print()
    print("mode,single_index_ms,sharded_4_ms,ratio")
    for mode in ("bm25", "dense", "hybrid"):
        timings = []
        for index in (single, sharded):
            for q in queries[:20]:  # warm-up
                index.search(q, mode=mode, top_k=10, passages=2)
            started = time.perf_counter()
            for q in queries:
                index.search(q, mode=mode, top_k=10, passages=2)
            timings.append((time.perf_counter() - started) * 1000 / len(queries))
        print(f"{mode},{timings[0]:.2f},{timings[1]:.2f},{timings[1] / timings[0]:.2f}", flush=True)
    sharded.close()
    single.close()


if __name__ == "__main__":
    main()
