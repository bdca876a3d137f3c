"""Embedding throughput peers for bench/embed.sh, all-MiniLM-L6-v2 on CPU.

  embed_peers.py passages MODEL_DIR OUT.jsonl [--count 2000] [--seed 7]
      Cuts passages of 100-200 tokens (the model's own tokenizer, uniformly drawn lengths) from
      the shared collections (cranfield, cacm, qmsum-val, NQ-open passages), in a fixed order.
  embed_peers.py run MODEL_DIR PASSAGES.jsonl WORK_DIR --threads 2 [--ibex-vectors F.f32]
      onnxruntime on an fp32 ONNX export of the same weights (exported once into WORK_DIR with
      torch.onnx.export) and sentence-transformers (PyTorch), both with the given threads. Both
      are timed from strings to normalized vectors, as ibex is: tokenization, length-sorted
      batches of 32 padded to their longest text (sentence-transformers sorts the same way
      itself), mean pooling, L2 normalization. Best of --rounds. Prints one JSON line per
      engine, with the cosine of each engine's vectors to ibex's when --ibex-vectors is given.
"""

import argparse
import gzip
import json
import os
import random
import time

import numpy as np

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
BATCH = 32


def shared_texts():
    for name in ("cranfield", "cacm", "qmsum-val"):
        with gzip.open(os.path.join(SHARED, name, "beir", "corpus.jsonl.gz"), "rt") as f:
            for line in f:
                if line.strip():
                    d = json.loads(line)
                    yield (d.get("title", "") + " " + d.get("text", "")).strip()
    with gzip.open(os.path.join(SHARED, "nq-open-oracle-dev", "nq-open-oracle.dev-split.jsonl.gz"), "rt") as f:
        for line in f:
            for ctx in json.loads(line).get("ctxs", []):
                yield (ctx.get("title", "") + " " + ctx.get("text", "")).strip()


def make_passages(model_dir, out, count, seed):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    rng = random.Random(seed)
    passages = []
    for text in shared_texts():
        enc = tokenizer.encode(text, add_special_tokens=False)
        offsets = enc.offsets
        start = 0
        while len(passages) < count:
            length = rng.randint(100, 200)
            if start + length > len(offsets):
                break
            passage = text[offsets[start][0]:offsets[start + length - 1][1]]
            # Re-tokenizing a cut can differ by a token or two; keep only passages in range.
            n = len(tokenizer.encode(passage, add_special_tokens=False).ids)
            if 100 <= n <= 200:
                passages.append(passage)
            start += length
        if len(passages) >= count:
            break
    with open(out, "w") as f:
        for p in passages:
            f.write(json.dumps({"text": p}) + "\n")
    print(f"{len(passages)} passages written to {out}")


def batches_by_length(lengths):
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + BATCH] for i in range(0, len(order), BATCH)]


def export_onnx(model_dir, path):
    import torch
    from transformers import AutoModel

    class Encoder(torch.nn.Module):
        """The transformer's last hidden state, with the three inputs by name."""

        def __init__(self):
            super().__init__()
            self.model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    model = Encoder().eval()
    ids = torch.ones((2, 16), dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(
            model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), path,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")},
            opset_version=17, dynamo=False)


def onnxruntime_session(model_dir, work, threads):
    """The ONNX export's session (exported once into `work`) and the model's tokenizer."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    path = os.path.join(work, "all-MiniLM-L6-v2.fp32.onnx")
    if not os.path.exists(path):
        export_onnx(model_dir, path + ".tmp")
        os.replace(path + ".tmp", path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(256)
    return ort, session, tokenizer


def run_onnxruntime(model_dir, texts, work, threads, rounds):
    ort, session, tokenizer = onnxruntime_session(model_dir, work, threads)

    def embed(texts):
        encodings = tokenizer.encode_batch(texts)
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for batch in batches_by_length([len(e.ids) for e in encodings]):
            width = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            hidden = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
            out[batch] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return out

    embed(texts[:64])
    best, vectors = float("inf"), None
    for _ in range(rounds):
        t = time.perf_counter()
        vectors = embed(texts)
        best = min(best, time.perf_counter() - t)
    return f"onnxruntime {ort.__version__} (fp32 ONNX export)", best, vectors


def onnxruntime_query_latency(model_dir, texts, work, threads, rounds):
    """One text at a time, as a search embeds its query: p50 and p99 of one call in ms."""
    ort, session, tokenizer = onnxruntime_session(model_dir, work, threads)

    def embed_one(text):
        t = time.perf_counter()
        ids = np.asarray([tokenizer.encode(text).ids], dtype=np.int64)
        mask = np.ones_like(ids)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        pooled = hidden.mean(1)
        _ = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return (time.perf_counter() - t) * 1000.0

    for text in texts:
        embed_one(text)
    latencies = sorted(embed_one(text) for _ in range(max(rounds, 1)) for text in texts)
    at = lambda q: latencies[round((len(latencies) - 1) * q)]
    return f"onnxruntime {ort.__version__} (fp32 ONNX export)", at(0.5), at(0.99), len(latencies)


def run_sentence_transformers(model_dir, texts, threads, rounds):
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 256
    model.encode(texts[:64], batch_size=BATCH)
    best, vectors = float("inf"), None
    for _ in range(rounds):
        t = time.perf_counter()
        vectors = model.encode(texts, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)
        best = min(best, time.perf_counter() - t)
    return f"sentence-transformers {sentence_transformers.__version__} (torch {torch.__version__})", best, vectors


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("passages")
    p.add_argument("model_dir")
    p.add_argument("out")
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--seed", type=int, default=7)
    r = sub.add_parser("run")
    r.add_argument("model_dir")
    r.add_argument("passages")
    r.add_argument("work")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--ibex-vectors")
    r.add_argument("--engines", default="onnxruntime,sentence-transformers")
    q = sub.add_parser("queries")
    q.add_argument("model_dir")
    q.add_argument("queries")
    q.add_argument("work")
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.command == "queries":
        texts = [json.loads(line)["text"] for line in open(args.queries) if line.strip()]
        name, p50, p99, calls = onnxruntime_query_latency(args.model_dir, texts, args.work, args.threads, args.rounds)
        print(json.dumps({"engine": name, "mode": "queries", "queries": len(texts), "calls": calls,
                          "p50_ms": p50, "p99_ms": p99}), flush=True)
        return
    if args.command == "passages":
        make_passages(args.model_dir, args.out, args.count, args.seed)
        return
    from tokenizers import Tokenizer

    texts = [json.loads(line)["text"] for line in open(args.passages) if line.strip()]
    tokenizer = Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(256)
    tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts))
    reference = None
    if args.ibex_vectors:
        reference = np.fromfile(args.ibex_vectors, dtype="<f4").reshape(len(texts), -1)
    for engine in args.engines.split(","):
        if engine == "onnxruntime":
            name, seconds, vectors = run_onnxruntime(args.model_dir, texts, args.work, args.threads, args.rounds)
        else:
            name, seconds, vectors = run_sentence_transformers(args.model_dir, texts, args.threads, args.rounds)
        row = {"engine": name, "sentences": len(texts), "tokens": tokens, "seconds": seconds,
               "sentences_per_s": len(texts) / seconds, "tokens_per_s": tokens / seconds}
        if reference is not None:
            cosines = (np.asarray(vectors) * reference).sum(1)
            row["min_cosine_to_ibex"] = float(cosines.min())
            row["mean_cosine_to_ibex"] = float(cosines.mean())
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
