"""The Index API against the engine: writes, reads, search, persistence, and the CLI's results."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import ibex
from conftest import CORPUS, QUERIES, run_cli

DOCS = [
    {"id": "hole", "title": "Black holes", "text": "A black hole forms when a massive star collapses under its own gravity.", "metadata": {"lang": "en", "year": 1970}},
    {"id": "bread", "title": "Bread", "text": "Yeast ferments the dough and makes it rise before baking.", "metadata": {"lang": "en", "year": 1990}},
    {"id": "pain", "title": "Pain", "text": "La levure fait lever la pâte avant la cuisson.", "metadata": {"lang": "fr", "year": 1990}},
]


def test_create_upsert_search_delete_and_reopen(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "idx"
    with ibex.Index.create(path) as index:
        report = index.upsert(DOCS)
        assert (report["added"], report["documents"]) == (3, 3)
        assert len(index) == 3 and "hole" in index and "nothing" not in index
        assert index.upsert(DOCS[:1])["unchanged"] == 1
        hits = index.search("what happens when a star collapses", top_k=2)
        assert hits[0].id == "hole"
        assert hits[0].passages[0].text.startswith("A black hole")
        assert index.search("yeast dough", mode="bm25")[0].id == "bread"
        only_fr = index.search("yeast dough bread", filter={"lang": "fr"})
        assert [h.id for h in only_fr] == ["pain"]
        assert [h.id for h in index.search("baking", filter={"year": 1970})] == ["hole"]
        document = index["bread"]
        assert document.metadata == {"lang": "en", "year": 1990}
        assert document.chunks and document.chunks[0][0] == 0
        assert index.delete(["bread", "unknown"])["deleted"] == 1
        assert index.get("bread") is None
        assert index.info()["documents"] == 2
    assert index.closed
    with ibex.Index.open(path) as again:
        assert len(again) == 2
        assert again.search("collapsing star")[0].id == "hole"


def test_hits_equal_the_command_lines(quickstart_index: ibex.Index) -> None:
    queries = [json.loads(line)["query"] for line in QUERIES.read_text().splitlines()][:4]
    for mode in ("bm25", "dense", "hybrid"):
        for query in queries:
            ours = quickstart_index.search(query, mode=mode, top_k=10, passages=1)
            cli = json.loads(
                run_cli("search", "--index", quickstart_index.path, "--mode", mode, "--top-k", "10",
                        "--passages", "1", "--json", query)
            )
            assert [h.id for h in ours] == [h["id"] for h in cli["hits"]], (mode, query)
            for hit, expected in zip(ours, cli["hits"]):
                assert abs(hit.score - expected["score"]) <= 1e-6
                assert hit.passages[0].start == expected["passages"][0]["start"]


def test_pages_totals_groups_and_facets_equal_the_command_line(quickstart_index: ibex.Index) -> None:
    query = "how do stars and planets form"
    for mode in ("bm25", "hybrid"):
        whole = quickstart_index.search(query, mode=mode, top_k=9)
        page = quickstart_index.search(query, mode=mode, top_k=3, offset=3, facets=["topic"])
        assert isinstance(page, ibex.Results) and page.offset == 3
        assert [h.id for h in page] == [h.id for h in whole[3:6]], mode
        cli = json.loads(
            run_cli("search", "--index", quickstart_index.path, "--mode", mode, "--top-k", "3",
                    "--offset", "3", "--facet", "topic", "--json", query)
        )
        assert [h.id for h in page] == [h["id"] for h in cli["hits"]]
        assert page.total == cli["total"] and page.total["relation"] == "eq"
        assert page.facets == cli["facets"]
        assert page.facets["topic"]["counted_over"] == ("matches" if mode == "bm25" else "candidates")
    grouped = quickstart_index.search(query, mode="dense", top_k=4, group_by="topic", per_group=2)
    values = [group["value"] for group in grouped.groups]
    assert len(values) == len(set(values)) == 4
    assert all(len(group["ids"]) <= 2 for group in grouped.groups)
    assert [h.id for h in grouped] == [i for group in grouped.groups for i in group["ids"]]
    expanded = quickstart_index.search(query, mode="bm25", top_k=5, feedback={"documents": 3})
    cli = json.loads(run_cli("search", "--index", quickstart_index.path, "--mode", "bm25", "--top-k", "5",
                             "--prf", "--prf-docs", "3", "--json", query))
    assert [h.id for h in expanded] == [h["id"] for h in cli["hits"]]
    with pytest.raises(ibex.InvalidInputError, match="own` or `fused"):
        quickstart_index.search(query, feedback={"from": "elsewhere"})
    diverse = quickstart_index.search(query, mode="dense", top_k=5, mmr={"lambda": 0.5, "fetch_k": 20})
    assert len(diverse) == 5
    strong = quickstart_index.search(query, mode="dense", top_k=50, min_score=0.3)
    assert strong and all(h.score >= 0.3 for h in strong)
    with pytest.raises(ibex.InvalidInputError, match="reciprocal rank fusion"):
        quickstart_index.search(query, min_score=0.3)
    with pytest.raises(ibex.InvalidInputError, match="per_group needs group_by"):
        quickstart_index.search(query, per_group=2)


def test_the_corpus_indexed_from_python_is_the_clis_index(quickstart_index: ibex.Index) -> None:
    lines = CORPUS.read_text().splitlines()
    assert len(quickstart_index) == len(lines)
    info = json.loads(json.dumps(quickstart_index.info()))
    assert info["model"]["id"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_embeddings_equal_ibex_embed() -> None:
    texts = ["A black hole forms when a massive star collapses.", "Sourdough needs a starter."]
    embedder = ibex.Embedder()
    vectors = embedder.embed(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (2, embedder.dimension)
    cli = [json.loads(line) for line in run_cli("embed", stdin="\n".join(texts) + "\n").splitlines()]
    assert np.allclose(vectors, np.array(cli, dtype=np.float32), atol=1e-6)
    query = embedder.embed_query("star collapse")
    assert query.shape == (embedder.dimension,)
    assert abs(float(np.linalg.norm(query)) - 1.0) < 1e-5


def test_search_by_vector_equals_search_by_query(quickstart_index: ibex.Index) -> None:
    query = "how do scientists find planets orbiting distant stars"
    vector = ibex.Embedder().embed_query(query)
    by_text = quickstart_index.search(query, mode="dense", top_k=5)
    by_vector = quickstart_index.search(mode="dense", top_k=5, vector=vector)
    assert [h.id for h in by_vector] == [h.id for h in by_text]


def test_compress_keeps_what_the_question_needs() -> None:
    passages = [
        "The Eiffel Tower was built in 1889 for the World's Fair. Sourdough uses wild yeast.",
        {"doc_id": "bread", "text": "Long fermentation gives the loaf its tang.", "offset": 10},
    ]
    result = ibex.compress("When was the Eiffel Tower built?", passages, budget=20)
    assert "1889" in result["text"]
    assert result["kept_tokens"] <= 20 < result["total_tokens"]
    with pytest.raises(ibex.InvalidInputError, match="no \"text\""):
        ibex.compress("q", [{"doc_id": "x"}])


def test_quantized_vector_storage_ranks_and_scores_as_full_precision(
    tmp_path: pathlib.Path, quickstart_index: ibex.Index
) -> None:
    queries = [json.loads(line)["query"] for line in QUERIES.read_text().splitlines()][:4]
    with ibex.Index.create(tmp_path / "idx") as index:
        index.index_corpus(CORPUS, progress=False, vector_storage="binary")
        info = index.info()
        assert info["vector_storage"] == "binary"
        assert 0 < info["vector_memory"]["vectors"] < quickstart_index.info()["vector_memory"]["vectors"]
        for query in queries:
            ours = index.search(query, mode="dense", top_k=5)
            full = quickstart_index.search(query, mode="dense", top_k=5)
            assert [h.id for h in ours] == [h.id for h in full], query
            for hit, expected in zip(ours, full):
                assert abs(hit.score - expected.score) <= 1e-6
        with pytest.raises(ibex.InvalidInputError, match="int8"):
            index.index_corpus(CORPUS, progress=False, vector_storage="int4")
        assert index.info()["vector_storage"] == "binary"
