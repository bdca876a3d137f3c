"""Writes the corpus of bench/index_throughput.sh: every document of the shared collections
(cranfield, cacm and qmsum-val, whose long meeting transcripts are cut into many chunks, and the
NQ-open passages), then entries of Debian's wamerican-huge word list as one-line documents until
the corpus reaches --chunks chunks (estimated at 200-token chunks with 50 of overlap, with the
model's tokenizer; the index reports the real count). Real text is what costs embedding time;
the short entries add the document and chunk count (per-document work: parsing, BM25, stored
fields, vector rows) that a 50k-chunk corpus has, without hours of embedding on 2 cores.

  index_corpus.py MODEL_DIR OUT.jsonl [--chunks 50000]
"""

import argparse
import gzip
import json
import os

from tokenizers import Tokenizer

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("out")
    parser.add_argument("--chunks", type=int, default=50_000)
    args = parser.parse_args()
    tokenizer = Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    chunks = 0
    docs = 0
    with open(args.out, "w") as out:
        def emit(doc_id, title, text):
            nonlocal chunks, docs
            if not (title.strip() or text.strip()):
                return
            tokens = len(tokenizer.encode(text, add_special_tokens=False).ids)
            chunks += 1 if tokens <= 200 else 1 + -(-(tokens - 200) // 150)
            docs += 1
            out.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")

        for name in ("cranfield", "cacm", "qmsum-val"):
            with gzip.open(os.path.join(SHARED, name, "beir", "corpus.jsonl.gz"), "rt") as f:
                for line in f:
                    if line.strip():
                        d = json.loads(line)
                        emit(f"{name}/{d['_id']}", d.get("title", ""), d.get("text", ""))
        with gzip.open(os.path.join(SHARED, "nq-open-oracle-dev", "nq-open-oracle.dev-split.jsonl.gz"), "rt") as f:
            seen = set()
            for line in f:
                for ctx in json.loads(line).get("ctxs", []):
                    key = (ctx.get("title", ""), ctx.get("text", ""))
                    if key not in seen:
                        seen.add(key)
                        emit(f"nq/{len(seen)}", *key)
        real = docs
        with open("/usr/share/dict/american-english-huge", encoding="utf-8", errors="replace") as f:
            for i, word in enumerate(sorted({w.strip() for w in f if w.strip()})):
                if chunks >= args.chunks:
                    break
                emit(f"word/{i}", "", word)
    print(f"{docs} documents ({real} from the shared collections, {docs - real} word-list entries), about {chunks} chunks -> {args.out}")


if __name__ == "__main__":
    main()
