"""LlamaIndex integration: a retriever backed by ibex.

Install with ``pip install "ibex-search[llama-index]"``. Each result is a document's best passage
as a ``TextNode`` (id ``doc_id:start-end``, the document's id, title, offsets and metadata in the
node's metadata) with ibex's score. The search mode (hybrid by default) and metadata filters reach
the engine: LlamaIndex ``MetadataFilters`` of ``==`` filters joined by AND map onto ibex's filters.
"""

from __future__ import annotations

from typing import Any, List, Optional

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilters

from . import Hit, Index

__all__ = ["IbexRetriever", "hit_to_node"]


def _filter(filters: Optional[MetadataFilters]) -> Optional[dict[str, Any]]:
    if filters is None or not filters.filters:
        return None
    if filters.condition not in (None, FilterCondition.AND):
        raise ValueError("ibex filters are a conjunction of equalities: use FilterCondition.AND")
    out: dict[str, Any] = {}
    for f in filters.filters:
        if isinstance(f, MetadataFilters) or f.operator != FilterOperator.EQ:
            raise ValueError(f"ibex supports == filters, not {getattr(f, 'operator', f)!r}")
        out[f.key] = f.value
    return out


def hit_to_node(hit: Hit) -> NodeWithScore:
    """A hit as a scored LlamaIndex node (its best passage)."""
    passage = hit.passages[0] if hit.passages else None
    start, end = (passage.start, passage.end) if passage else (0, 0)
    metadata = dict(hit.metadata)
    metadata.update({"doc_id": hit.id, "title": hit.title, "start": start, "end": end})
    node = TextNode(
        id_=f"{hit.id}:{start}-{end}",
        text=passage.text if passage else hit.title,
        metadata=metadata,
    )
    return NodeWithScore(node=node, score=hit.score)


class IbexRetriever(BaseRetriever):
    """Retrieves passages from an :class:`ibex.Index` (hybrid search by default)."""

    def __init__(
        self,
        index: Index,
        mode: str = "hybrid",
        top_k: int = 4,
        filters: Optional[MetadataFilters] = None,
        alpha: Optional[float] = None,
        **kwargs: Any,
    ) -> None:
        self._index = index
        self._mode = mode
        self._top_k = top_k
        self._filters = _filter(filters)
        self._alpha = alpha
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> List[NodeWithScore]:
        hits = self._index.search(
            query_bundle.query_str,
            mode=self._mode,
            top_k=self._top_k,
            filter=self._filters,
            alpha=self._alpha,
            passages=1,
        )
        return [hit_to_node(h) for h in hits]
