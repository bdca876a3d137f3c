"""Distributed batch indexing on Ray Data: read, chunk and embed in an actor pool, write shards.

The pipeline of :func:`build_sharded_index`:

1. Ray Data reads the corpus (a BEIR folder's ``corpus.jsonl``, a JSONL file, or Parquet) in
   parallel blocks; each row becomes an ibex document (``_id``/``id``, ``title``, ``text``,
   ``metadata``) and is assigned to shard :func:`~ibex.ray.shard_of` ``(id, N)``.
2. An actor pool chunks and embeds (``map_batches``): each actor loads the model once, with its
   CPU threads set (``threads_per_worker``) or a GPU (``num_gpus_per_worker``). Ray restarts an
   actor that died and retries its batch, also when a whole node is lost.
3. The driver streams the embedded batches to one writer actor per shard (spread over the
   nodes), each appending to its shard, an ordinary ibex index, with one durable commit per
   batch. A retried write changes nothing (documents are upserted by id and unchanged ones
   skipped), so a retry never loses or duplicates a document.
4. Shards are written into directories named after this build (``shard-00003.<build>``): a
   failed or repeated build never touches a finished one. The cluster manifest
   (``ibex-cluster.json``: shards, model, chunking, counts, checksums) is written last, in one
   atomic rename; that rename makes the new shards current. Directories no manifest names
   (earlier builds, failed attempts) are removed after it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Any, Optional, Union

from .. import _native
from ..errors import InvalidInputError
from ._sharded import shard_checksum, shard_dir_name, shard_of, write_cluster_manifest

PathLike = Union[str, "os.PathLike[str]"]

#: Embedded batches a shard writer may have queued before the driver waits for it.
MAX_PENDING_WRITES = 4


def _read_corpus(source: str):
    """The corpus as a Ray Dataset of rows with one column ``line`` (a JSON document) or the
    Parquet file's columns."""
    import ray.data

    if os.path.isdir(source):
        for name in ("corpus.jsonl", "corpus.jsonl.gz"):
            corpus = os.path.join(source, name)
            if os.path.exists(corpus):
                # pyarrow detects gzip from the name.
                return ray.data.read_text(corpus).rename_columns({"text": "line"})
        parquet = [n for n in os.listdir(source) if n.endswith(".parquet")]
        if parquet:
            return ray.data.read_parquet(source)
        raise InvalidInputError(
            f"cannot read corpus {source}: a folder must be a BEIR folder (with corpus.jsonl or corpus.jsonl.gz) or "
            "hold .parquet files"
        )
    if source.endswith(".parquet"):
        return ray.data.read_parquet(source)
    if source.endswith((".jsonl", ".jsonl.gz", ".json")):
        return ray.data.read_text(source).rename_columns({"text": "line"})
    if not os.path.exists(source):
        raise InvalidInputError(f"cannot read corpus {source}: no such file or folder")
    raise InvalidInputError(
        f"cannot read corpus {source}: give a BEIR folder, a .jsonl (or .jsonl.gz) file or Parquet (.parquet "
        "file or a folder of them)"
    )


def _as_document(row: dict[str, Any]) -> dict[str, Any]:
    """A corpus row as an ibex document (the Rust reader checks it again when embedding)."""
    if "line" in row:
        line = row["line"]
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"corpus line {line[:80]!r}: not valid JSON: {e}") from None
        if not isinstance(value, dict):
            raise InvalidInputError(f"corpus line {line[:80]!r}: expected a JSON object")
        return value
    doc = {k: row[k] for k in ("_id", "id", "title", "text") if k in row and row[k] is not None}
    metadata = row.get("metadata")
    if isinstance(metadata, str) and metadata:
        metadata = json.loads(metadata)
    if isinstance(metadata, dict):
        doc["metadata"] = metadata
    return doc


def _assign_shards(batch: dict[str, Any], shards: int) -> dict[str, Any]:
    """Ray Data batch function: JSON documents and their shards."""
    columns = list(batch.keys())
    n = len(batch[columns[0]]) if columns else 0
    docs, ids, assigned, empty = [], [], [], []
    for i in range(n):
        row = {c: _plain(batch[c][i]) for c in columns}
        doc = _as_document(row)
        id = doc.get("_id", doc.get("id"))
        if id is None or str(id) == "":
            raise InvalidInputError(f"a corpus document has no \"_id\" (or \"id\"): {str(doc)[:120]}")
        ids.append(str(id))
        docs.append(json.dumps(doc))
        assigned.append(shard_of(str(id), shards))
        # Neither title nor text: nothing to index. Skipped and reported, as `ibex index` does
        # (real collections have some: Cranfield has two).
        blank = [doc.get(k) for k in ("title", "text")]
        empty.append(all(v is None or (isinstance(v, str) and not v.strip()) for v in blank))
    return {"id": ids, "doc": docs, "shard": assigned, "empty": empty}


def _plain(value: Any) -> Any:
    """A NumPy scalar or array cell as a plain Python value."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


class _Embed:
    """The embedding actor: loads the model once, then chunks and embeds batches."""

    def __init__(
        self, model: Optional[str], device: str, chunk_tokens: int, overlap: int, progress_dir: str
    ) -> None:
        import ray

        self.embedder = _native.NativeEmbedder(model, device)
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        node = ray.get_runtime_context().get_node_id()
        os.makedirs(progress_dir, exist_ok=True)
        self.progress_path = os.path.join(progress_dir, f"embed-{node[:12]}-{os.getpid()}.log")
        self.node = node
        self.done = 0

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        docs = [_plain(d) for d in batch["doc"]]
        empty = [bool(e) for e in batch["empty"]]
        texts = [d for d, blank in zip(docs, empty) if not blank]
        results = iter(
            self.embedder.embed_documents("[" + ",".join(texts) + "]", self.chunk_tokens, self.overlap)
        )
        embedded = [("[]", b"") if blank else next(results) for blank in empty]
        self.done += len(docs)
        # One line per batch, so a long build can be followed (and a test can see where work
        # runs): the node, and the documents this actor has embedded.
        with open(self.progress_path, "a") as f:
            f.write(f"node={self.node} documents={self.done}\n")
        return {
            "id": [_plain(i) for i in batch["id"]],
            "doc": docs,
            "shard": [int(s) for s in batch["shard"]],
            "empty": empty,
            "spans": [spans for spans, _ in embedded],
            "vectors": [bytes(v) for _, v in embedded],
            "model_id": [self.embedder.model_id] * len(docs),
            "dimension": [self.embedder.dimension] * len(docs),
        }


class _ShardWriter:
    """One shard's writer (a Ray actor): appends embedded batches to its ibex index."""

    def __init__(self, path: str, model_json: str, chunk_tokens: int, overlap: int) -> None:
        self.path = path
        self.writer = _native.NativeShardWriter.open_or_create(path, model_json, chunk_tokens, overlap)

    def write(self, model_id: str, docs_json: str, vectors: list[bytes]) -> str:
        return self.writer.write(model_id, docs_json, vectors)

    def finish(self) -> dict[str, Any]:
        info = json.loads(self.writer.info_json())
        self.writer.close()
        info["checksum"] = shard_checksum(self.path)
        return info


def build_sharded_index(
    source: PathLike,
    out_dir: PathLike,
    shards: int = 4,
    model: Optional[str] = None,
    chunk_tokens: int = 200,
    overlap: int = 50,
    num_workers: int = 2,
    threads_per_worker: int = 1,
    num_gpus_per_worker: float = 0,
    device: str = "auto",
    batch_size: int = 64,
) -> dict[str, Any]:
    """Indexes a corpus into ``shards`` ordinary ibex indexes under ``out_dir`` on the running
    Ray cluster (``ray.init()`` first; a local one is started otherwise).

    ``source`` is a BEIR folder, a ``.jsonl`` file, or Parquet (a file or a folder of files with
    ``id``/``_id``, ``text``, optional ``title`` and ``metadata`` columns). ``num_workers``
    embedding actors each use ``threads_per_worker`` CPU threads, or ``num_gpus_per_worker``
    GPUs (then ``device`` should be ``"cuda"``). Documents with neither title nor text are
    skipped and listed in the manifest's ``skipped_empty``, as ``ibex index`` reports them; a
    malformed document stops the build (no manifest is written). Returns the cluster manifest, which is also
    written to ``out_dir/ibex-cluster.json`` once every shard has committed. Open the result
    with :class:`ibex.ray.ShardedIndex`, serve it with :func:`ibex.ray.serve.run`, or open one
    shard with ``ibex.Index.open``, the CLI or ``ibex serve``.
    """
    import ray
    import ray.data

    if shards < 1:
        raise InvalidInputError(f"shards must be at least 1, not {shards}")
    if overlap >= chunk_tokens or chunk_tokens < 1:
        raise InvalidInputError(
            f"overlap ({overlap}) must be smaller than the chunk size ({chunk_tokens})"
        )
    source = os.fspath(source)
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    build = uuid.uuid4().hex[:8]
    progress_dir = os.path.join(out_dir, f".build-{build}")
    if not ray.is_initialized():
        ray.init()

    env = {"RAYON_NUM_THREADS": str(threads_per_worker), "OMP_NUM_THREADS": str(threads_per_worker)}
    dataset = _read_corpus(source).map_batches(
        _assign_shards, fn_kwargs={"shards": shards}, batch_format="numpy"
    )
    embedded = dataset.map_batches(
        _Embed,
        fn_constructor_kwargs={
            "model": model,
            "device": device,
            "chunk_tokens": chunk_tokens,
            "overlap": overlap,
            "progress_dir": progress_dir,
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=num_workers),
        num_cpus=threads_per_worker,
        num_gpus=num_gpus_per_worker or None,
        runtime_env={"env_vars": env},
        # Ray Data spreads the pool's actors over the nodes by default (DataContext's
        # scheduling_strategy "SPREAD"): one node's loss costs a share of the pool, not all of it.
    )

    writer_class = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(_ShardWriter)
    writers: list[Any] = []
    pending: list[list[Any]] = [[] for _ in range(shards)]
    model_info: Optional[dict[str, Any]] = None
    skipped_empty: list[str] = []
    for batch in embedded.iter_batches(batch_format="numpy", batch_size=None):
        if not len(batch["id"]):
            continue
        if model_info is None:
            model_id = str(batch["model_id"][0])
            model_info = {
                "id": model_id,
                "source": os.path.abspath(model) if model and os.path.isdir(model) else (model or model_id),
                "dimension": int(batch["dimension"][0]),
            }
            model_json = json.dumps(model_info)
            writers = [
                writer_class.options(scheduling_strategy="SPREAD").remote(
                    os.path.join(out_dir, shard_dir_name(s, build)), model_json, chunk_tokens, overlap
                )
                for s in range(shards)
            ]
        by_shard: dict[int, list[int]] = {}
        for row, shard in enumerate(batch["shard"]):
            if batch["empty"][row]:
                skipped_empty.append(str(batch["id"][row]))
            else:
                by_shard.setdefault(int(shard), []).append(row)
        for shard, rows in by_shard.items():
            docs = []
            for row in rows:
                doc = json.loads(_plain(batch["doc"][row]))
                doc["spans"] = json.loads(_plain(batch["spans"][row]))
                docs.append(doc)
            vectors = [bytes(batch["vectors"][row]) for row in rows]
            queue = pending[shard]
            queue.append(writers[shard].write.remote(model_info["id"], json.dumps(docs), vectors))
            if len(queue) > MAX_PENDING_WRITES:
                ray.get(queue.pop(0))
    if model_info is None:
        shutil.rmtree(progress_dir, ignore_errors=True)
        raise InvalidInputError(f"the corpus {source} holds no documents")
    for queue in pending:
        ray.get(queue)
    infos = ray.get([w.finish.remote() for w in writers])
    for w in writers:
        ray.kill(w)

    return write_cluster_manifest(
        out_dir,
        build,
        os.path.abspath(source),
        model_info,
        {"chunk_tokens": chunk_tokens, "overlap_tokens": overlap},
        infos,
        skipped_empty=sorted(set(skipped_empty)),
    )
