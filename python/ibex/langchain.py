"""LangChain integration: a retriever, a vector store and embeddings backed by ibex.

Install with ``pip install "ibex-search[langchain]"``. The search mode (``"hybrid"`` by default,
BM25 + dense) and metadata filters reach the engine, so a chain gets hybrid retrieval over long
documents, each result being a document's best passage with its offsets.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LangChainDocument
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from pydantic import ConfigDict

from . import Embedder, Hit, Index

__all__ = ["IbexRetriever", "IbexVectorStore", "IbexEmbeddings"]


def _filter(filter: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """LangChain's metadata filter dict, passed to the engine as it is: ibex takes the same
    operator syntax (``{"field": value}``, ``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``,
    ``$lte``, ``$in``, ``$nin``, ``$exists``, ``$and``, ``$or``, ``$not``), applied inside
    retrieval. An operator it does not know is refused (``ibex.InvalidInputError``, a
    ``ValueError``), never dropped."""
    if not filter:
        return None
    return dict(filter)


def hit_to_document(hit: Hit) -> LangChainDocument:
    """A hit as a LangChain document: its best passage as ``page_content``; id, score, title,
    passage offsets and the document's metadata in ``metadata``."""
    passage = hit.passages[0] if hit.passages else None
    metadata = dict(hit.metadata)
    metadata.update(
        {
            "id": hit.id,
            "score": hit.score,
            "title": hit.title,
            "start": passage.start if passage else 0,
            "end": passage.end if passage else 0,
        }
    )
    return LangChainDocument(
        id=hit.id, page_content=passage.text if passage else hit.title, metadata=metadata
    )


class IbexRetriever(BaseRetriever):
    """Retrieves documents from an :class:`ibex.Index` (hybrid search by default)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Index
    mode: str = "hybrid"
    top_k: int = 4
    filter: Optional[dict[str, Any]] = None
    alpha: Optional[float] = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> List[LangChainDocument]:
        hits = self.index.search(
            query,
            mode=self.mode,
            top_k=self.top_k,
            filter=_filter(self.filter),
            alpha=self.alpha,
            passages=1,
        )
        return [hit_to_document(h) for h in hits]


class IbexEmbeddings(Embeddings):
    """LangChain embeddings from an ibex embedding model (default all-MiniLM-L6-v2)."""

    def __init__(self, model: Optional[str] = None, device: str = "auto") -> None:
        #: The model as given (``None``: the default), so an index can be created with it.
        self.model = model
        self.embedder = Embedder(model, device)

    def embed_documents(self, texts: List[str]) -> List[List[float]]:
        return self.embedder.embed(texts).tolist()

    def embed_query(self, text: str) -> List[float]:
        return self.embedder.embed_query(text).tolist()


class IbexVectorStore(VectorStore):
    """A LangChain vector store over an ibex index: texts are chunked, embedded and indexed for
    BM25 and dense search; searches run in ``mode`` (hybrid by default)."""

    def __init__(self, index: Index, mode: str = "hybrid") -> None:
        self.index = index
        self.mode = mode

    @property
    def embeddings(self) -> Optional[Embeddings]:
        return None  # the index embeds with its own model

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Optional[List[dict]] = None,
        *,
        ids: Optional[List[str]] = None,
        **kwargs: Any,
    ) -> List[str]:
        texts = list(texts)
        if ids is None:
            import uuid

            ids = [str(uuid.uuid4()) for _ in texts]
        metadatas = metadatas or [{} for _ in texts]
        documents = [
            {"id": i, "text": t, "title": str(m.get("title", "")), "metadata": m}
            for i, t, m in zip(ids, texts, metadatas)
        ]
        self.index.upsert(documents)
        return list(ids)

    def delete(self, ids: Optional[List[str]] = None, **kwargs: Any) -> Optional[bool]:
        if not ids:
            return False
        self.index.delete(ids)
        return True

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Optional[dict[str, Any]] = None, **kwargs: Any
    ) -> List[Tuple[LangChainDocument, float]]:
        hits = self.index.search(query, mode=self.mode, top_k=k, filter=_filter(filter), passages=1)
        return [(hit_to_document(h), h.score) for h in hits]

    def similarity_search(
        self, query: str, k: int = 4, filter: Optional[dict[str, Any]] = None, **kwargs: Any
    ) -> List[LangChainDocument]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    @classmethod
    def from_texts(
        cls,
        texts: List[str],
        embedding: Optional[Embeddings] = None,
        metadatas: Optional[List[dict]] = None,
        *,
        path: Optional[str] = None,
        ids: Optional[List[str]] = None,
        **kwargs: Any,
    ) -> "IbexVectorStore":
        """A new index at ``path`` holding ``texts``. ``embedding`` must be ``None`` or an
        :class:`IbexEmbeddings` (the index embeds with its own model)."""
        if path is None:
            raise ValueError("IbexVectorStore.from_texts needs path=... for the new index")
        if embedding is not None and not isinstance(embedding, IbexEmbeddings):
            raise ValueError("ibex indexes embed with an ibex model: pass IbexEmbeddings or None")
        model = embedding.model if isinstance(embedding, IbexEmbeddings) else None
        store = cls(Index.create(path, model=model))
        store.add_texts(texts, metadatas, ids=ids)
        return store
