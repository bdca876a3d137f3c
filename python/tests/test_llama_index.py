"""The LlamaIndex retriever with the real llama-index-core."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters

import ibex
from ibex.llama_index import IbexRetriever


def test_retriever_returns_the_same_documents_as_search(quickstart_index: ibex.Index) -> None:
    query = "what killed a third of Europe in the middle ages"
    nodes = IbexRetriever(quickstart_index, top_k=3).retrieve(query)
    hits = quickstart_index.search(query, top_k=3)
    assert [n.node.metadata["doc_id"] for n in nodes] == [h.id for h in hits]
    assert [n.score for n in nodes] == pytest.approx([h.score for h in hits])
    assert nodes[0].node.get_content() == hits[0].passages[0].text


def test_filters_reach_the_engine(tmp_path) -> None:
    with ibex.Index.create(tmp_path / "idx") as index:
        index.upsert([
            {"id": "en", "text": "Yeast makes dough rise.", "metadata": {"lang": "en", "year": 2019}},
            {"id": "fr", "text": "La levure fait lever la pâte.", "metadata": {"lang": "fr", "year": 2023}},
        ])

        def ids(filters: MetadataFilters) -> list[str]:
            nodes = IbexRetriever(index, filters=filters).retrieve("yeast dough")
            return sorted(n.node.metadata["doc_id"] for n in nodes)

        assert ids(MetadataFilters(filters=[MetadataFilter(key="lang", value="fr")])) == ["fr"]
        assert ids(MetadataFilters(filters=[
            MetadataFilter(key="lang", value="fr", operator=FilterOperator.NE)])) == ["en"]
        assert ids(MetadataFilters(filters=[
            MetadataFilter(key="year", value=2020, operator=FilterOperator.GTE)])) == ["fr"]
        assert ids(MetadataFilters(filters=[
            MetadataFilter(key="year", value=2020, operator=FilterOperator.GTE),
            MetadataFilter(key="lang", value="en")], condition="or")) == ["en", "fr"]
        with pytest.raises(ValueError, match="text_match"):
            IbexRetriever(index, filters=MetadataFilters(filters=[
                MetadataFilter(key="lang", value="fr", operator=FilterOperator.TEXT_MATCH)]))
