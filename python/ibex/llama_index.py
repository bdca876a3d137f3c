"""LlamaIndex integration: a retriever backed by ibex.

Install with ``pip install "ibex-search[llama-index]"``. Each result is a document's best passage
as a ``TextNode`` (id ``doc_id:start-end``, the document's id, title, offsets and metadata in the
node's metadata) with ibex's score. The search mode (hybrid by default) and metadata filters reach
the engine: LlamaIndex ``MetadataFilters`` (comparison, ``in``/``nin``, ``any``/``all``/``contains``,
``is_empty``; nested, joined by AND, OR or NOT) map onto ibex's filters.
"""

from __future__ import annotations

from typing import Any, List, Optional

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilters

from . import Hit, Index

__all__ = ["IbexRetriever", "hit_to_node"]


# LlamaIndex operators as ibex filter operators. A list-valued field matches an ibex condition
# when any element does, which is what ``contains`` and ``any`` ask.
_OPERATORS = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.ANY: "$in",
    FilterOperator.CONTAINS: "$eq",
}


def _condition(f: Any) -> dict[str, Any]:
    if isinstance(f, MetadataFilters):
        nested = _filter(f)
        return nested if nested is not None else {}
    operator = f.operator
    if operator == FilterOperator.ALL:
        values = f.value if isinstance(f.value, list) else [f.value]
        return {"$and": [{f.key: {"$eq": v}} for v in values]}
    if operator == FilterOperator.IS_EMPTY:
        return {f.key: {"$exists": False}}
    if operator not in _OPERATORS:
        raise ValueError(f"ibex has no filter operator for {operator!r} (key {f.key!r})")
    return {f.key: {_OPERATORS[operator]: f.value}}


def _filter(filters: Optional[MetadataFilters]) -> Optional[dict[str, Any]]:
    """LlamaIndex ``MetadataFilters`` (nested, joined by AND, OR or NOT) as an ibex filter,
    applied inside retrieval; an operator ibex cannot express (text match) is refused."""
    if filters is None or not filters.filters:
        return None
    conditions = [_condition(f) for f in filters.filters]
    condition = getattr(filters.condition, "value", filters.condition)
    if condition in (None, "and"):
        return conditions[0] if len(conditions) == 1 else {"$and": conditions}
    if condition == "or":
        return {"$or": conditions}
    if condition == "not":
        inner = conditions[0] if len(conditions) == 1 else {"$and": conditions}
        return {"$not": inner}
    raise ValueError(f"ibex cannot join filters with {filters.condition!r}")


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
