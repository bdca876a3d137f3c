"""Turns the JSON lines of ann_bench and ann_peers.py into the tables BENCHMARKS.md records, and
writes every (engine, threads, ef) point to bench/results/ann.csv for bench/charts.py."""

import csv
import datetime
import json
import os
import subprocess
import sys

data_dir, results = sys.argv[1], sys.argv[2]
meta = json.load(open(f"{data_dir}/meta.json"))
rows = [json.loads(line) for line in open(results) if line.startswith("{")]
builds = {r["engine"]: r for r in rows if r.get("event") == "build"}
points = [r for r in rows if "qps" in r]
engines = list(dict.fromkeys(r["engine"] for r in points))
threads = sorted({r["threads"] for r in points})

print(f"{meta['base']:,} base vectors, {meta['queries']:,} queries, {meta['dimension']} dims; "
      + "; ".join(meta["sources"]))
print()
print("| engine | build s (threads: %d) | index memory MiB |" % max(threads))
print("|---|---|---|")
for e in engines:
    b = builds[e]
    print(f"| {e} | {b['seconds']:.1f} | {b['index_bytes'] / 2**20:.0f} |")
print()


def best_qps(engine, t, target):
    ok = [r["qps"] for r in points if r["engine"] == engine and r["threads"] == t and r["recall"] >= target]
    return max(ok) if ok else None


print("QPS at a recall@10 target (the fastest ef that reaches it), and ibex's ratio to each peer:")
print()
print("| threads | recall@10 >= | " + " | ".join(engines) + " | " + " | ".join(f"ibex / {e}" for e in engines if e != "ibex") + " |")
print("|---|---|" + "---|" * (2 * len(engines) - 1))
for t in threads:
    for target in (0.9, 0.95, 0.99):
        q = {e: best_qps(e, t, target) for e in engines}
        cells = [f"{q[e]:,.0f}" if q[e] else "not reached" for e in engines]
        ratios = [f"{q['ibex'] / q[e]:.2f}" if q.get("ibex") and q[e] else "-" for e in engines if e != "ibex"]
        print(f"| {t} | {target} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
print()
print("Full curves (recall@10 / QPS):")
print()
efs = sorted({r["ef"] for r in points})
print("| threads | ef | " + " | ".join(engines) + " |")
print("|---|---|" + "---|" * len(engines))
for t in threads:
    for ef in efs:
        cells = []
        for e in engines:
            r = next((r for r in points if r["engine"] == e and r["threads"] == t and r["ef"] == ef), None)
            cells.append(f"{r['recall']:.3f} / {r['qps']:,.0f}" if r else "-")
        print(f"| {t} | {ef} | " + " | ".join(cells) + " |")
print()
s = meta["exact_scan"]
print("Exact scan (ibex, one core) against a streaming read of a 1 GiB buffer (one core), same run:")
print()
print("| vectors/s per core | scan GB/s | streaming read GB/s | fraction of bandwidth |")
print("|---|---|---|---|")
print(f"| {s['vectors_per_second_per_core']:,.0f} | {s['scan_bytes_per_second'] / 1e9:.2f} | "
      f"{s['streaming_read_bytes_per_second'] / 1e9:.2f} | {s['fraction_of_bandwidth']:.2f} |")

here = os.path.dirname(os.path.abspath(__file__))
cpu_class = subprocess.run(["bash", os.path.join(here, "cpu_class.sh")], capture_output=True, text=True).stdout.strip()
with open(os.path.join(here, "results", "ann.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["date", "source", "cpu_class", "threads", "engine", "ef", "recall", "qps"])
    for r in points:
        writer.writerow([datetime.date.today().isoformat(), "bench/ann.sh", cpu_class, r["threads"],
                         r["engine"], r["ef"], f"{r['recall']:.4f}", f"{r['qps']:.1f}"])
