"""A sharded index: shards that are ordinary ibex indexes, a cluster manifest, and the
scatter-gather that makes their search equal to one index's.

Nothing here needs Ray: :class:`ShardedIndex` opens the shards in this process, and the Ray Serve
application (:mod:`ibex.ray.serve`) runs the same :class:`ScatterGather` over deployment handles.
Merging and fusion are the library's own (``_native.rank_shard_lists``), not a second
implementation in Python.

The search of a request, in order:

1. the query is embedded once (dense and hybrid modes), here, not by every shard;
2. BM25 statistics: every shard reports the query terms' document frequencies, its document
   count and its token count; their sums are sent with the search, so every shard scores BM25 as
   the single index would (Elasticsearch's ``dfs_query_then_fetch``). ``stats="local"`` skips
   this round trip and scores with each shard's own counts, which ranks differently (IDF from a
   quarter of the collection is noisier, most for rare terms and small shards);
3. every shard returns its ranked lists (BM25 and/or dense, as deep as the mode needs);
4. the lists are merged and cut at that depth, then fused (hybrid) or cut to ``top_k``;
5. the shard owning each hit returns its passages.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from .. import Embedder, Hit, Index, _hit, _native
from ..errors import IbexError, InvalidInputError

PathLike = Union[str, "os.PathLike[str]"]

#: The cluster manifest's file name in a sharded index's directory.
MANIFEST_NAME = "ibex-cluster.json"
#: Version of the cluster manifest's format.
MANIFEST_FORMAT = 1


class ShardUnavailableError(IbexError):
    """A shard could not answer (no live replica, or its files are missing)."""

    def __init__(self, shards: Sequence[str], reason: str) -> None:
        self.shards = list(shards)
        super().__init__(
            f"shard{'s' if len(self.shards) > 1 else ''} {', '.join(self.shards)} "
            f"did not answer: {reason}. Retry, or send \"allow_partial\": true to accept results "
            "without it"
        )


def shard_of(document_id: str, shards: int) -> int:
    """The shard of a document: the first 8 bytes of the SHA-256 of its id (UTF-8), read as a
    big-endian unsigned integer, modulo the shard count. Stable across processes, machines and
    Python versions (Python's ``hash`` is salted per process), so updates reach the shard that
    holds the document."""
    digest = hashlib.sha256(str(document_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_dir_name(shard: int, build: str) -> str:
    """The directory of a shard built by build ``build``: attempts never share a directory."""
    return f"shard-{shard:05d}.{build}"


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_checksum(path: str) -> str:
    """The SHA-256 of a shard's committed state: its newest ibex manifest (which names every
    vector segment with its own checksum) and tantivy's ``meta.json`` (which names every lexical
    segment). Equal checksums mean the same committed shard, for example after a copy."""
    manifests = sorted(
        (n for n in os.listdir(path) if n.startswith("manifest-") and n.endswith(".json")),
        key=lambda n: int(n[len("manifest-") : -len(".json")]),
    )
    if not manifests:
        raise InvalidInputError(f"{path} holds no ibex manifest: it is not a committed index")
    digest = hashlib.sha256()
    for name in (os.path.join(path, manifests[-1]), os.path.join(path, "lexical", "meta.json")):
        digest.update(_file_sha256(name).encode())
    return digest.hexdigest()


def write_json_atomically(path: str, value: Any) -> None:
    """Writes ``value`` as JSON to ``path`` in one step: a temporary file beside it, fsynced,
    renamed over it, and the directory fsynced, so readers see the old file or the new one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_manifest(directory: PathLike) -> dict[str, Any]:
    """The cluster manifest of a sharded index, checked for what the readers rely on."""
    path = os.path.join(os.fspath(directory), MANIFEST_NAME)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise InvalidInputError(
            f"no sharded ibex index at {directory}: {MANIFEST_NAME} is missing (build one with "
            "ibex.ray.build_sharded_index; a build that did not finish writes no manifest)"
        ) from None
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"{path} is not valid JSON: {e}") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise InvalidInputError(
            f"{path} has format {manifest.get('format')!r}; this ibex reads format {MANIFEST_FORMAT}"
        )
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards:
        raise InvalidInputError(f"{path} lists no shards")
    return manifest


def write_cluster_manifest(
    out_dir: str,
    build: str,
    source: str,
    model: Mapping[str, Any],
    chunking: Mapping[str, int],
    shard_infos: Sequence[Mapping[str, Any]],
    skipped_empty: Sequence[str] = (),
) -> dict[str, Any]:
    """Writes the cluster manifest of a finished build (the step that makes its shards current),
    then removes the shard directories and build scratch folders it does not name."""
    import datetime
    import shutil

    manifest = {
        "format": MANIFEST_FORMAT,
        "build": build,
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "model": dict(model),
        "chunking": dict(chunking),
        "sharding": "sha256(id)[:8] as big-endian u64, modulo the shard count",
        "documents": sum(i["documents"] for i in shard_infos),
        "chunks": sum(i["chunks"] for i in shard_infos),
        "skipped_empty": list(skipped_empty),
        "shards": [
            {
                "name": f"shard-{s:05d}",
                "path": shard_dir_name(s, build),
                "documents": info["documents"],
                "chunks": info["chunks"],
                "generation": info["generation"],
                "checksum": info["checksum"],
            }
            for s, info in enumerate(shard_infos)
        ],
    }
    write_json_atomically(os.path.join(out_dir, MANIFEST_NAME), manifest)
    current = {e["path"] for e in manifest["shards"]}
    for name in os.listdir(out_dir):
        if (name.startswith("shard-") and name not in current) or name.startswith(".build-"):
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
    return manifest


def _source_indexes(source: str) -> list[str]:
    """The index directories of a sharded index, or the one directory of a plain index."""
    if os.path.exists(os.path.join(source, MANIFEST_NAME)):
        return [os.path.join(source, e["path"]) for e in read_manifest(source)["shards"]]
    return [source]


def reshard(source: PathLike, out_dir: PathLike, shards: int, batch: int = 500) -> dict[str, Any]:
    """Writes the documents of ``source`` (a sharded index, or one ibex index) into ``shards``
    new shards under ``out_dir`` with the vectors they already have: nothing is embedded again.
    With ``shards=1`` the result's one shard is a single index equal to the sharded one (what the
    tests compare a sharded search with). Runs in this process; returns the new manifest."""
    import uuid

    if shards < 1:
        raise InvalidInputError(f"shards must be at least 1, not {shards}")
    source = os.path.abspath(os.fspath(source))
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    build = uuid.uuid4().hex[:8]
    inputs = [Index.open(path) for path in _source_indexes(source)]
    try:
        info = inputs[0].info()
        model = {k: info["model"][k] for k in ("id", "source", "dimension")}
        chunking = info["chunking"]
        writers = [
            _native.NativeShardWriter.open_or_create(
                os.path.join(out_dir, shard_dir_name(s, build)),
                json.dumps(model),
                chunking["chunk_tokens"],
                chunking["overlap_tokens"],
            )
            for s in range(shards)
        ]
        for index in inputs:
            ids = sorted(index._native.ids())
            for start in range(0, len(ids), batch):
                docs_json, vectors = index._native.embedded_documents(ids[start : start + batch])
                groups: dict[int, tuple[list, list]] = {}
                for doc, block in zip(json.loads(docs_json), vectors):
                    docs, blocks = groups.setdefault(shard_of(doc["id"], shards), ([], []))
                    docs.append(doc)
                    blocks.append(block)
                for s, (docs, blocks) in groups.items():
                    writers[s].write(model["id"], json.dumps(docs), blocks)
        infos = []
        for s, writer in enumerate(writers):
            shard_info = json.loads(writer.info_json())
            writer.close()
            shard_info["checksum"] = shard_checksum(os.path.join(out_dir, shard_dir_name(s, build)))
            infos.append(shard_info)
    finally:
        for index in inputs:
            index.close()
    return write_cluster_manifest(out_dir, build, source, model, chunking, infos)


@dataclass
class SearchOutcome:
    """What a sharded search returns: the hits, and the shards that did not answer (only when
    the request allowed a partial answer)."""

    hits: list[Hit]
    missing_shards: list[str] = field(default_factory=list)
    #: How many documents the search found in all shards, as ``ibex serve`` states it:
    #: ``{"value": n, "relation": "eq" | "gte"}`` (``gte`` also when shards were missing).
    total: dict[str, Any] = field(default_factory=lambda: {"value": 0, "relation": "eq"})


class ShardClient:
    """How the scatter-gather reaches one shard: in this process (:class:`LocalShard`) or through
    a Ray Serve deployment. ``call`` raises :class:`ShardUnavailableError` when the shard cannot
    answer; other errors (a bad request) propagate as they are."""

    name: str

    def call(self, method: str, *args: Any) -> Any:
        raise NotImplementedError


class LocalShard(ShardClient):
    """A shard opened in this process."""

    def __init__(self, name: str, index: Index) -> None:
        self.name = name
        self.index = index

    def call(self, method: str, *args: Any) -> Any:
        return shard_method(self.index, method, *args)


def shard_method(index: Index, method: str, *args: Any) -> Any:
    """Runs one of the shard calls the scatter-gather makes on an open index (the Serve shard
    deployment answers with this too)."""
    native = index._native
    if method == "term_statistics":
        (query,) = args
        return native.term_statistics(query)
    if method == "ranked_lists":
        request, min_generation = args
        native.refresh_to(min_generation)
        return native.ranked_lists(request)
    if method == "hits":
        request, ranked, min_generation = args
        native.refresh_to(min_generation)
        return native.hits(request, ranked)
    if method == "upsert":
        (documents,) = args
        return native.upsert_json(documents)
    if method == "delete":
        (ids,) = args
        return native.delete(list(ids))
    if method == "get":
        id, min_generation = args
        native.refresh_to(min_generation)
        return native.get_json(id)
    if method == "info":
        return native.info_json()
    raise InvalidInputError(f"unknown shard call {method!r}")


class ScatterGather:
    """Searches and writes a set of shards as one index.

    ``shards`` are the shards in manifest order (document ``id`` lives in shard
    ``shard_of(id, len(shards))``); ``embed_query`` embeds a query with the shards' model.
    Calls to different shards run in parallel on a thread pool (the native calls release the
    GIL). The latest commit generation each shard acknowledged for a write is sent with later
    searches, so a replica that has not seen that write catches up first: a client reads its own
    writes whichever replica answers.
    """

    def __init__(
        self,
        shards: Sequence[ShardClient],
        embed_query: Callable[[str], Sequence[float]],
        threads: Optional[int] = None,
    ) -> None:
        self.shards = list(shards)
        self._embed_query = embed_query
        self._pool = ThreadPoolExecutor(max_workers=threads or max(4, 2 * len(self.shards)))
        self._acknowledged = [0] * len(self.shards)
        # One write at a time per shard from this router: two replicas of a shard writing at
        # once would contend for the shard's write lock (one would fail with IndexLockedError).
        self._write_locks = [threading.Lock() for _ in self.shards]

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _gather(
        self, calls: Sequence[tuple[int, str, tuple]], allow_partial: bool
    ) -> tuple[dict[int, Any], list[str]]:
        """Runs ``(shard, method, args)`` calls in parallel; returns answers by shard and the
        names of the shards that did not answer (an error unless ``allow_partial``)."""
        futures = {
            shard: self._pool.submit(self.shards[shard].call, method, *args)
            for shard, method, args in calls
        }
        answers: dict[int, Any] = {}
        missing: list[str] = []
        reasons: list[str] = []
        for shard, future in futures.items():
            try:
                answers[shard] = future.result()
            except ShardUnavailableError as e:
                missing.append(self.shards[shard].name)
                reasons.append(str(e))
        if missing and not allow_partial:
            raise ShardUnavailableError(missing, "; ".join(reasons))
        return answers, missing

    def search(
        self,
        query: str = "",
        mode: str = "hybrid",
        top_k: int = 10,
        filter: Optional[Mapping[str, Any]] = None,
        alpha: Optional[float] = None,
        passages: int = 1,
        vector: Optional[Sequence[float]] = None,
        stats: str = "global",
        allow_partial: bool = False,
    ) -> SearchOutcome:
        """Searches every shard and ranks as one index (see the module documentation)."""
        if stats not in ("global", "local"):
            raise InvalidInputError(f"stats must be \"global\" or \"local\", not {stats!r}")
        request: dict[str, Any] = {"query": query, "mode": mode, "top_k": top_k, "passages": passages}
        if filter:
            request["filter"] = dict(filter)
        if alpha is not None:
            request["alpha"] = float(alpha)
        # Checks the request before any shard is asked (ranking no lists ranks nothing).
        _native.rank_shard_lists(json.dumps(request), [])
        mode = mode.lower()
        if vector is not None:
            request["vector"] = [float(x) for x in vector]
        elif mode not in ("bm25", "lexical"):
            request["vector"] = [float(x) for x in self._embed_query(query)]
        everyone = range(len(self.shards))
        missing: list[str] = []
        if stats == "global" and mode not in ("dense", "vector"):
            parts, missing = self._gather(
                [(s, "term_statistics", (query,)) for s in everyone], allow_partial
            )
            request["statistics"] = json.loads(_native.merge_term_statistics(list(parts.values())))
        request_json = json.dumps(request)
        answering = [s for s in everyone if self.shards[s].name not in missing]
        lists, more_missing = self._gather(
            [(s, "ranked_lists", (request_json, self._acknowledged[s])) for s in answering],
            allow_partial,
        )
        missing += more_missing
        owner: dict[str, int] = {}
        matches, allowed, exact = 0, 0, True
        for shard, answer in lists.items():
            parsed = json.loads(answer)
            matches += parsed.get("bm25_matches", 0)
            allowed += parsed.get("allowed_documents", 0)
            exact = exact and parsed.get("bm25_matches_exact", False)
            # The lists hold the ranked entries; their other fields are the shard's counts.
            for key in ("bm25", "dense"):
                for entry in parsed.get(key, []):
                    owner[entry["id"]] = shard
        ranked = _native.rank_shard_lists(request_json, list(lists.values()))
        by_shard: dict[int, list[tuple[str, float]]] = {}
        for id, score in ranked:
            by_shard.setdefault(owner[id], []).append((id, score))
        found, more_missing = self._gather(
            [
                (s, "hits", (request_json, subset, self._acknowledged[s]))
                for s, subset in by_shard.items()
            ],
            allow_partial,
        )
        missing += more_missing
        hits_by_id = {h[0]: h for answer in found.values() for h in answer}
        hits = [_hit(hits_by_id[id]) for id, _ in ranked if id in hits_by_id]
        # The total as one index would count it: BM25 matches (bm25 mode), or every document
        # the filter allows (each has a similarity in dense and hybrid mode).
        if mode in ("bm25", "lexical"):
            total = {"value": matches, "relation": "eq" if exact else "gte"}
        else:
            total = {"value": max(allowed, matches), "relation": "eq"}
        if missing:
            total["relation"] = "gte"
        return SearchOutcome(hits=hits, missing_shards=sorted(set(missing)), total=total)

    def upsert(self, documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Adds or replaces documents, each in its shard; returns the summed write report."""
        groups: dict[int, list[dict[str, Any]]] = {}
        for doc in documents:
            doc = dict(doc)
            id = doc.get("_id", doc.get("id"))
            if id is None or id == "":
                raise InvalidInputError("every document needs an \"id\" (or \"_id\")")
            groups.setdefault(shard_of(str(id), len(self.shards)), []).append(doc)
        return self._write([(s, "upsert", (json.dumps(docs),)) for s, docs in groups.items()])

    def delete(self, ids: Sequence[str]) -> dict[str, Any]:
        """Deletes documents by id from their shards; returns the summed write report."""
        groups: dict[int, list[str]] = {}
        for id in ids:
            groups.setdefault(shard_of(str(id), len(self.shards)), []).append(str(id))
        return self._write([(s, "delete", (group,)) for s, group in groups.items()])

    def get(self, id: str) -> Optional[dict[str, Any]]:
        """The stored document with ``id`` from its shard, or ``None``."""
        shard = shard_of(str(id), len(self.shards))
        raw = self.shards[shard].call("get", str(id), self._acknowledged[shard])
        return None if raw is None else json.loads(raw)

    def _write(self, calls: Sequence[tuple[int, str, tuple]]) -> dict[str, Any]:
        def locked(shard: int, method: str, *args: Any) -> Any:
            with self._write_locks[shard]:
                return self.shards[shard].call(method, *args)

        futures = {s: self._pool.submit(locked, s, m, *a) for s, m, a in calls}
        answers = {}
        missing, reasons = [], []
        for shard, future in futures.items():
            try:
                answers[shard] = future.result()
            except ShardUnavailableError as e:
                missing.append(self.shards[shard].name)
                reasons.append(str(e))
        if missing:
            # The other shards' parts are committed: say which, so the client can retry the rest.
            done = ", ".join(sorted(self.shards[s].name for s in answers)) or "none"
            raise ShardUnavailableError(missing, "; ".join(reasons) + f" (committed on: {done})")
        total: dict[str, Any] = {k: 0 for k in ("added", "replaced", "unchanged", "deleted", "chunks_embedded")}
        for shard, answer in answers.items():
            report = json.loads(answer)
            self._acknowledged[shard] = max(self._acknowledged[shard], report["generation"])
            for key in total:
                total[key] += report[key]
        total["shards"] = sorted(self.shards[s].name for s in answers)
        return total


class ShardedIndex:
    """A sharded index opened in this process: every shard is an ordinary ibex index, searched
    and written through the same scatter-gather as the Ray Serve application.

    >>> index = ibex.ray.ShardedIndex("./cranfield-4")
    >>> index.search("boundary layer transition", mode="bm25", top_k=10)
    """

    def __init__(self, directory: PathLike, device: str = "auto") -> None:
        self.directory = os.fspath(directory)
        self.manifest = read_manifest(self.directory)
        shards = []
        for entry in self.manifest["shards"]:
            path = os.path.join(self.directory, entry["path"])
            shards.append(LocalShard(entry["name"], Index.open(path, device=device)))
        self._shards = shards
        self.embedder = Embedder(self.manifest["model"]["source"], device=device)
        self._router = ScatterGather(shards, self.embedder.embed_query)

    @property
    def shard_paths(self) -> list[str]:
        """The shards' directories, in shard order."""
        return [os.path.join(self.directory, e["path"]) for e in self.manifest["shards"]]

    def search(
        self,
        query: str = "",
        mode: str = "hybrid",
        top_k: int = 10,
        filter: Optional[Mapping[str, Any]] = None,
        alpha: Optional[float] = None,
        passages: int = 1,
        vector: Optional[Sequence[float]] = None,
        stats: str = "global",
    ) -> list[Hit]:
        """Searches all shards; the hits equal those of one index holding every document (with
        ``stats="global"``, the default). Arguments as :meth:`ibex.Index.search`."""
        return self._router.search(
            query, mode, top_k, filter, alpha, passages, vector, stats
        ).hits

    def upsert(self, documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Adds or replaces documents in their shards (each shard commits durably)."""
        return self._router.upsert(documents)

    def delete(self, ids: Union[str, Sequence[str]]) -> dict[str, Any]:
        """Deletes documents by id from their shards."""
        return self._router.delete([ids] if isinstance(ids, str) else list(ids))

    def get(self, id: str) -> Optional[dict[str, Any]]:
        """The stored document with ``id``, or ``None``."""
        return self._router.get(id)

    def __len__(self) -> int:
        return sum(len(s.index) for s in self._shards)

    def verify(self) -> list[str]:
        """Compares every shard with the checksum the manifest recorded when it was built;
        returns the shards that differ (changed by updates since, or damaged or mis-copied)."""
        return [
            entry["name"]
            for entry, path in zip(self.manifest["shards"], self.shard_paths)
            if shard_checksum(path) != entry["checksum"]
        ]

    def close(self) -> None:
        """Closes every shard (waiting for writes in progress)."""
        self._router.close()
        for shard in self._shards:
            shard.index.close()

    def __enter__(self) -> "ShardedIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
