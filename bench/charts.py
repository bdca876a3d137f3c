"""Draws BENCHMARKS.md's and EVALUATION.md's charts from the CSV files under bench/results.

    python bench/charts.py RESULTS_DIR OUT_DIR

One SVG per figure; a chart whose CSV is missing is skipped with a notice. The SVGs are
deterministic (fixed hash salt, no dates inside) so that an unchanged CSV gives an unchanged file.
"""

import csv
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("svg" if os.environ.get("CHART_FORMAT", "svg") == "svg" else "agg")
matplotlib.rcParams["svg.hashsalt"] = "ibex"
matplotlib.rcParams["svg.fonttype"] = "none"
matplotlib.rcParams["font.size"] = 10
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"ibex": "#c0392b", "onnxruntime": "#2c7fb8", "sentence-transformers": "#7f7f7f",
           "hnswlib": "#2c7fb8", "faiss": "#41ab5d"}


def rows(path):
    if not os.path.exists(path):
        print(f"skipped: no {path}", file=sys.stderr)
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def latest(records, key):
    """The rows of the latest date for each value of `key` (a CSV may hold several runs)."""
    newest = {}
    for r in records:
        k = tuple(r[x] for x in key)
        newest[k] = max(newest.get(k, ""), r["date"])
    return [r for r in records if r["date"] == newest[tuple(r[x] for x in key)]]


def save(fig, out, name):
    # CHART_FORMAT=png previews a chart as a picture (the committed charts are SVG).
    fmt = os.environ.get("CHART_FORMAT", "svg")
    path = os.path.join(out, name.replace(".svg", f".{fmt}"))
    fig.savefig(path, metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


def ann(results, out):
    data = rows(os.path.join(results, "ann.csv"))
    if not data:
        return
    threads = sorted({int(r["threads"]) for r in data})
    fig, axes = plt.subplots(1, len(threads), figsize=(5 * len(threads), 3.6), sharey=True)
    axes = axes if len(threads) > 1 else [axes]
    for ax, t in zip(axes, threads):
        by_engine = defaultdict(list)
        for r in data:
            if int(r["threads"]) == t:
                recall = float(r.get("recall") or r["recall_target"])
                by_engine[r["engine"]].append((recall, float(r["qps"])))
        for engine, points in by_engine.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                    label=engine, color=COLOURS.get(engine))
        ax.set_title(f"{t} thread{'s' if t > 1 else ''}")
        ax.set_xlabel("recall@10")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("queries per second (log)")
    axes[0].legend()
    fig.suptitle("ANN search, 357k all-MiniLM-L6-v2 vectors: QPS against recall@10 (up and right is better)", y=1.03)
    save(fig, out, "ann_recall_qps.svg")


def embed(results, out):
    data = latest(rows(os.path.join(results, "embed.csv")), ("cpu_class", "engine"))
    if not data:
        return
    classes = sorted({r["cpu_class"] for r in data}, reverse=True)
    engines = list(dict.fromkeys(r["engine"] for r in data))
    fig, ax = plt.subplots(figsize=(7, 3.4))
    width = 0.8 / len(engines)
    for i, engine in enumerate(engines):
        values = [next((float(r["tokens_per_s"]) for r in data
                        if r["engine"] == engine and r["cpu_class"] == c), 0) for c in classes]
        xs = [c + (i - (len(engines) - 1) / 2) * width for c in range(len(classes))]
        bars = ax.bar(xs, values, width, label=engine, color=COLOURS.get(engine))
        ax.bar_label(bars, labels=[f"{v:,.0f}" if v else "" for v in values], fontsize=8)
    ax.set_xticks(range(len(classes)), [f"{c} CPU, 2 threads" for c in classes])
    ax.set_ylabel("tokens per second")
    ax.set_title("Embedding all-MiniLM-L6-v2, 2,000 passages (higher is better)")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    save(fig, out, "embed_throughput.svg")


def http(results, out):
    data = latest(rows(os.path.join(results, "http_load.csv")), ("mode", "concurrency"))
    if not data:
        return
    modes = list(dict.fromkeys(r["mode"] for r in data))
    fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 3.6))
    axes = axes if len(modes) > 1 else [axes]
    for ax, mode in zip(axes, modes):
        points = sorted((int(r["concurrency"]), r) for r in data if r["mode"] == mode)
        xs = [p[0] for p in points]
        ax.plot(xs, [float(p[1]["http_p50_ms"]) for p in points], marker="o", label="HTTP p50", color="#c0392b")
        ax.plot(xs, [float(p[1]["http_p99_ms"]) for p in points], marker="o", linestyle="--", label="HTTP p99", color="#c0392b")
        ax.plot(xs, [float(p[1]["inprocess_p50_ms"]) for p in points], marker="s", label="in-process p50", color="#7f7f7f")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_yscale("log")
        ax.set_xlabel("concurrent requests")
        ax.set_title(f"{mode} search")
        ax.grid(True, which="both", alpha=0.3)
        for x, (_, r) in zip(xs, points):
            ax.annotate(f"{float(r['http_qps']):,.0f} QPS", (x, float(r["http_p99_ms"])),
                        textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    axes[0].set_ylabel("latency ms (log)")
    axes[0].legend(fontsize=8)
    fig.suptitle("HTTP search latency against concurrency, Cranfield (2 cores shared with the load generator)", y=1.03)
    save(fig, out, "http_latency.svg")


def compression(results, out):
    data = rows(os.path.join(results, "compression.csv"))
    if not data:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4))
    names = {"ib": "IB selector (ibex)", "top_sentences": "top sentences by similarity (RECOMP-style)",
             "random_sentences": "random sentences", "top1_passage": "top-1 passage", "keep_all": "keep all"}
    colours = {"ib": "#c0392b", "top_sentences": "#2c7fb8", "random_sentences": "#7f7f7f",
               "top1_passage": "#41ab5d", "keep_all": "#000000"}
    for method in ["ib", "top_sentences", "random_sentences", "top1_passage"]:
        points = sorted((float(r["compression"]), float(r["retention"]), r["budget"])
                        for r in data if r["method"] == method)
        if not points:
            continue
        single = method == "top1_passage"
        ax.plot([100 * p[0] for p in points], [100 * p[1] for p in points],
                marker="o", linestyle="none" if single else "-", label=names[method], color=colours[method])
        if method == "ib":
            for c, r, b in points:
                ax.annotate(f"{b} tok", (100 * c, 100 * r), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.axvline(5, color="#999999", linestyle=":", linewidth=1)
    ax.axhline(90, color="#999999", linestyle=":", linewidth=1)
    ax.text(5.15, 30, "goal: <= 5% of tokens\n(left of the dotted line),\n>= 90% retention (above it)", fontsize=7, color="#555555")
    ax.set_xlabel("tokens kept (% of the context)")
    ax.set_ylabel("answers retained (%)")
    questions = data[0]["questions"]
    ax.set_title(f"Context compression on NQ-open ({questions} questions, gold + 9 distractors)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, alpha=0.3)
    save(fig, out, "compression_retention.svg")


def python_overhead(results, out):
    data = rows(os.path.join(results, "python_overhead.csv"))
    if not data:
        return
    last = {}
    for r in data:  # the last run of each measure
        last[r["measure"]] = r
    labels = {"search-bm25-1": "BM25 search QPS\n1 thread", "search-hybrid-1": "hybrid search QPS\n1 thread",
              "embed-tokens-per-s": "embedding tokens/s\n2 threads", "bm25-python-threads-1-2": "BM25 QPS, 2 Python\nthreads / 1 thread"}
    fig, ax = plt.subplots(figsize=(7, 3.4))
    names, ratios = [], []
    for key in ["search-bm25-1", "search-hybrid-1", "embed-tokens-per-s", "bm25-python-threads-1-2"]:
        if key in last:
            names.append(labels[key])
            ratios.append(float(last[key]["python"]) / float(last[key]["rust"]))
    bars = ax.bar(range(len(names)), ratios, color=["#c0392b"] * 3 + ["#2c7fb8"])
    ax.bar_label(bars, labels=[f"{r:.2f}" for r in ratios], fontsize=8)
    ax.axhline(1.0, color="#999999", linewidth=1)
    ax.axhline(0.9, color="#999999", linestyle=":", linewidth=1, label="goal for search: >= 0.90")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel("Python / Rust (red), 2 threads / 1 (blue)")
    ax.set_title("The Python package against the Rust library, same run (higher is better)")
    ax.grid(True, axis="y", alpha=0.3)
    save(fig, out, "python_overhead.svg")


def main():
    results, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for chart in (ann, embed, http, compression, python_overhead):
        chart(results, out)


if __name__ == "__main__":
    main()
