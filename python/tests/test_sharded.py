"""The sharded index without Ray: shards made by resharding one index (same vectors), searched by
the scatter-gather in this process, compared with the single index; updates routed to shards;
the REST layer the Serve router runs."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

import ibex
from ibex.ray import ShardedIndex, read_manifest, reshard, shard_of
from ibex.ray.serve import Limits, RestApi, parse_api_keys

from conftest import QUERIES, assert_same_ranking

MODES = ("bm25", "dense", "hybrid")


@pytest.fixture(scope="module")
def sharded(quickstart_index: ibex.Index, tmp_path_factory: pytest.TempPathFactory):
    """The quickstart index in 3 shards, and a single index rebuilt from those shards."""
    root = tmp_path_factory.mktemp("sharded")
    reshard(quickstart_index.path, root / "three", shards=3)
    reshard(root / "three", root / "one", shards=1)
    single = ibex.Index.open(read_shard_path(root / "one"))
    index = ShardedIndex(root / "three")
    yield index, single
    index.close()
    single.close()


def read_shard_path(directory: pathlib.Path) -> str:
    manifest = read_manifest(directory)
    return os.path.join(directory, manifest["shards"][0]["path"])


def queries() -> list[str]:
    return [json.loads(line)["query"] for line in QUERIES.read_text().splitlines() if line.strip()]


def test_shard_of_is_stable_and_spreads() -> None:
    # Fixed values: the assignment must never change between versions or machines.
    assert [shard_of(i, 4) for i in ("1", "2", "3", "doc-42")] == [1, 2, 3, 2]
    assert shard_of("1", 4) == int.from_bytes(__import__("hashlib").sha256(b"1").digest()[:8], "big") % 4
    counts = [0] * 4
    for i in range(4000):
        counts[shard_of(str(i), 4)] += 1
    assert min(counts) > 900, counts


def test_reshard_keeps_every_document_once(quickstart_index: ibex.Index, sharded) -> None:
    index, single = sharded
    manifest = index.manifest
    assert manifest["documents"] == len(quickstart_index) == len(single) == len(index)
    assert [s["name"] for s in manifest["shards"]] == ["shard-00000", "shard-00001", "shard-00002"]
    for s, path in enumerate(index.shard_paths):
        shard = ibex.Index.open(path)
        try:
            assert all(shard_of(id, 3) == s for id in shard._native.ids())
        finally:
            shard.close()
    assert index.verify() == []


@pytest.mark.parametrize("mode", MODES)
def test_sharded_search_equals_the_single_index(sharded, mode: str) -> None:
    index, single = sharded
    for query in queries():
        expected = single.search(query, mode=mode, top_k=15, passages=2)
        got = index.search(query, mode=mode, top_k=5, passages=2)
        assert_same_ranking([(h.id, h.score) for h in got], [(h.id, h.score) for h in expected], mode)
        passages = {h.id: [(p.start, p.end, p.text) for p in h.passages] for h in expected}
        for hit in got:
            assert [(p.start, p.end, p.text) for p in hit.passages] == passages[hit.id], (mode, query)


def test_local_statistics_score_with_each_shards_own_counts(sharded) -> None:
    index, single = sharded
    query = queries()[0]
    global_scores = {h.id: h.score for h in index.search(query, mode="bm25", top_k=3)}
    local_scores = {h.id: h.score for h in index.search(query, mode="bm25", top_k=3, stats="local")}
    assert global_scores == pytest.approx({h.id: h.score for h in single.search(query, mode="bm25", top_k=3)}, rel=1e-5)
    shared = set(global_scores) & set(local_scores)
    assert shared and any(abs(global_scores[i] - local_scores[i]) > 1e-4 for i in shared)


def test_updates_reach_the_documents_shard(sharded, tmp_path: pathlib.Path) -> None:
    index, _ = sharded
    # A private copy: the module's shards stay as built.
    reshard(index.directory, tmp_path / "copy", shards=3)
    copy = ShardedIndex(tmp_path / "copy")
    try:
        report = copy.upsert(
            [{"id": "zebra-1", "title": "Zebras", "text": "Zebras have black and white stripes."}]
        )
        assert report["added"] == 1
        assert report["shards"] == [f"shard-{shard_of('zebra-1', 3):05d}"]
        assert copy.search("striped zebras", mode="bm25", top_k=1)[0].id == "zebra-1"
        assert copy.get("zebra-1")["title"] == "Zebras"
        assert copy.verify() == [f"shard-{shard_of('zebra-1', 3):05d}"]
        assert copy.delete("zebra-1")["deleted"] == 1
        assert copy.get("zebra-1") is None
        with pytest.raises(ibex.InvalidInputError, match="id"):
            copy.upsert([{"text": "no id"}])
    finally:
        copy.close()


def test_a_bad_request_is_refused_before_any_shard_is_asked(sharded) -> None:
    index, _ = sharded
    with pytest.raises(ibex.InvalidInputError, match="top_k"):
        index.search("wings", top_k=0)
    with pytest.raises(ibex.InvalidInputError, match="stats"):
        index.search("wings", stats="sometimes")
    with pytest.raises(ibex.InvalidInputError, match="mode"):
        index.search("wings", mode="fuzzy")


def test_a_missing_manifest_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ibex.InvalidInputError, match="ibex-cluster.json is missing"):
        ShardedIndex(tmp_path)


def test_rest_api_answers_as_ibex_serve(sharded) -> None:
    index, single = sharded
    keys = "r" * 16 + ":read," + "w" * 16 + ":write"
    api = RestApi("docs", index._router, keys, Limits(max_top_k=50))
    query = queries()[1]
    read = {"authorization": "Bearer " + "r" * 16}
    status, answer = api.respond(
        "POST", "/v1/indexes/docs/search", read, json.dumps({"query": query, "mode": "bm25", "top_k": 3}).encode()
    )
    assert status == 200, answer
    assert set(answer) == {"query", "mode", "hits", "offset", "total", "took_ms"}
    assert answer["total"] == single.search(query, mode="bm25", top_k=3).total
    assert set(answer["hits"][0]) == {"id", "score", "title", "metadata", "passages"}
    assert set(answer["hits"][0]["passages"][0]) == {"text", "start", "end", "score", "highlights"}
    assert [h["id"] for h in answer["hits"]] == [h.id for h in single.search(query, mode="bm25", top_k=3)]

    def status_of(method: str, path: str, headers: dict, body: object) -> tuple[int, str]:
        code, answer = api.respond(method, path, headers, json.dumps(body).encode())
        return code, answer.get("error", {}).get("code", "")

    assert status_of("POST", "/v1/indexes/docs/search", {}, {"query": "x"}) == (401, "missing_api_key")
    bad = {"authorization": "Bearer " + "x" * 16}
    assert status_of("POST", "/v1/indexes/docs/search", bad, {"query": "x"}) == (401, "invalid_api_key")
    assert status_of("POST", "/v1/indexes/docs/documents", read, []) == (403, "insufficient_scope")
    assert status_of("POST", "/v1/indexes/other/search", read, {"query": "x"}) == (404, "index_not_found")
    assert status_of("POST", "/v1/indexes/docs/search", read, {"query": "x", "top_k": 51})[0] == 422
    assert status_of("POST", "/v1/indexes/docs/search", read, {"query": "x" * 2001}) == (422, "query_too_long")
    assert status_of("POST", "/v1/indexes/docs/search", read, {"query": "x", "colour": 1}) == (422, "invalid_field")
    code, answer = api.respond("POST", "/v1/indexes/docs/search", read, b"{not json")
    assert (code, answer["error"]["code"]) == (400, "malformed_body")
    write = {"authorization": "Bearer " + "w" * 16}
    too_many = [{"id": str(i), "text": "t"} for i in range(1001)]
    assert status_of("POST", "/v1/indexes/docs/documents", write, too_many) == (413, "batch_too_large")


def test_api_keys_parse_like_ibex_serve() -> None:
    assert len(parse_api_keys("a" * 16 + ", " + "b" * 16 + ":read")) == 2
    with pytest.raises(ibex.InvalidInputError, match="16 characters"):
        parse_api_keys("short")
    with pytest.raises(ibex.InvalidInputError, match="scope"):
        parse_api_keys("a" * 16 + ":admin")


class DeadShard:
    """A shard with no live replica."""

    def __init__(self, name: str) -> None:
        self.name = name

    def call(self, method: str, *args: object) -> object:
        from ibex.ray import ShardUnavailableError

        raise ShardUnavailableError([self.name], "no live replica within 30 s")


def test_a_shard_without_replicas_is_a_503_naming_it_unless_partial_answers_are_allowed(sharded) -> None:
    from ibex.ray import ScatterGather

    index, single = sharded
    shards = list(index._router.shards)
    shards[1] = DeadShard(shards[1].name)
    router = ScatterGather(shards, index.embedder.embed_query)
    api = RestApi("docs", router)
    try:
        query = queries()[0]
        status, answer = api.respond("POST", "/v1/indexes/docs/search", {}, json.dumps({"query": query}).encode())
        assert status == 503, answer
        assert answer["error"]["code"] == "shard_unavailable"
        assert "shard-00001" in answer["error"]["message"]
        body = {"query": query, "mode": "bm25", "allow_partial": True}
        status, answer = api.respond("POST", "/v1/indexes/docs/search", {}, json.dumps(body).encode())
        assert status == 200, answer
        assert answer["missing_shards"] == ["shard-00001"]
        assert all(shard_of(h["id"], 3) != 1 for h in answer["hits"])
        assert answer["hits"]
    finally:
        router.close()


def test_shard_writer_refuses_what_does_not_fit(tmp_path: pathlib.Path) -> None:
    from ibex import _native

    model = json.dumps({"id": "test/synthetic-4", "source": "test", "dimension": 4})
    writer = _native.NativeShardWriter.open_or_create(str(tmp_path / "s"), model, 200, 50)
    good = struct_vectors([0.5] * 4)
    doc = {"id": "a", "text": "alpha beta", "spans": [[0, 10]]}
    assert json.loads(writer.write("test/synthetic-4", json.dumps([doc]), [good]))["added"] == 1
    # Written twice (a retried task): nothing changes.
    assert json.loads(writer.write("test/synthetic-4", json.dumps([doc]), [good]))["unchanged"] == 1
    with pytest.raises(ibex.ModelMismatchError, match="other/model"):
        writer.write("other/model", json.dumps([doc]), [good])
    with pytest.raises(ibex.InvalidInputError, match="outside its text"):
        writer.write("test/synthetic-4", json.dumps([{**doc, "id": "b", "spans": [[0, 99]]}]), [good])
    with pytest.raises(ibex.InvalidInputError, match="one block per document"):
        writer.write("test/synthetic-4", json.dumps([doc]), [])
    with pytest.raises(ibex.InvalidInputError, match="whole float32"):
        writer.write("test/synthetic-4", json.dumps([{**doc, "id": "c"}]), [b"\x00" * 5])
    writer.close()
    other = json.dumps({"id": "other/model", "source": "x", "dimension": 4})
    with pytest.raises(ibex.ModelMismatchError):
        _native.NativeShardWriter.open_or_create(str(tmp_path / "s"), other, 200, 50)


def struct_vectors(values: list[float]) -> bytes:
    import struct

    return struct.pack(f"<{len(values)}f", *values)
