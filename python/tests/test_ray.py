"""ibex on a two-node Ray cluster on loopback: Cranfield built into 4 shards on Ray Data, searched
in-process and through Ray Serve, compared with one index holding the same vectors; a shard
replica killed during a burst of queries; a worker node removed while embedding.

Skipped with a notice where Ray cannot be imported, unless IBEX_RAY_TESTS=required (as `.ci/run`
sets it). tests/python.rs runs these after the package is built, never beside a cargo build.
"""

from __future__ import annotations

import glob
import gzip
import json
import math
import os
import pathlib
import subprocess
import threading
import urllib.request

import pytest

import ibex
from ibex.ray import ShardedIndex, read_manifest, reshard

from conftest import REPO, assert_same_ranking, ibex_bin

try:
    import ray
    from ray.cluster_utils import Cluster
except ImportError as e:  # pragma: no cover - depends on the machine
    if os.environ.get("IBEX_RAY_TESTS") == "required":
        raise RuntimeError(f"IBEX_RAY_TESTS=required but Ray cannot be imported: {e}") from e
    pytest.skip(
        f"skipped: Ray is not installed ({e}); pip install 'ray[data,serve]' "
        "(IBEX_RAY_TESTS=required makes this a failure)",
        allow_module_level=True,
    )

CRANFIELD = REPO.parent / "shared" / "data" / "cranfield" / "beir"
MODES = ("bm25", "dense", "hybrid")
OBJECT_STORE = 200 * 1024 * 1024


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node on loopback, 3 logical CPUs each (the machine has 2 cores: the
    nodes share them), object stores capped, the OOM killer off (the suite's other processes
    are not Ray's to kill)."""
    if not CRANFIELD.exists():
        pytest.skip(f"{CRANFIELD} is missing (../shared beside the checkout)")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_memory_monitor_refresh_ms"] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 3, "object_store_memory": OBJECT_STORE, "include_dashboard": False},
    )
    worker = cluster.add_node(num_cpus=3, object_store_memory=OBJECT_STORE)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def cranfield(cluster, tmp_path_factory: pytest.TempPathFactory):
    """Cranfield built into 4 shards on the cluster, and one index rebuilt from their vectors."""
    root = tmp_path_factory.mktemp("ray")
    manifest = ibex.ray.build_sharded_index(
        CRANFIELD, root / "four", shards=4, num_workers=2, threads_per_worker=1, batch_size=64
    )
    reshard(root / "four", root / "one", shards=1)
    one = read_manifest(root / "one")
    return root, manifest, os.path.join(root / "one", one["shards"][0]["path"])


def cranfield_ids() -> set[str]:
    with gzip.open(CRANFIELD / "corpus.jsonl.gz", "rt") as f:
        return {json.loads(line)["_id"] for line in f if line.strip()}


def cranfield_queries() -> list[tuple[str, str]]:
    lines = (CRANFIELD / "queries.jsonl").read_text().splitlines()
    return [(q["_id"], q["text"]) for q in map(json.loads, filter(str.strip, lines))]


def qrels() -> dict[str, dict[str, int]]:
    judged: dict[str, dict[str, int]] = {}
    for line in (CRANFIELD / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        query, doc, grade = line.split("\t")
        judged.setdefault(query, {})[doc] = int(grade)
    return judged


def ndcg_at_10(ranking: list[str], judged: dict[str, int]) -> float:
    """trec_eval's ndcg_cut_10: linear gains, log2 discounts."""
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]))
    ideal = sorted(judged.values(), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def test_shards_hold_every_cranfield_document_once(cranfield) -> None:
    root, manifest, single = cranfield
    assert len(manifest["shards"]) == 4
    ids: list[str] = []
    for entry in manifest["shards"]:
        shard = ibex.Index.open(root / "four" / entry["path"])
        try:
            assert len(shard) == entry["documents"]
            ids += shard._native.ids()
        finally:
            shard.close()
    # Every id exactly once: in a shard, or reported as empty (Cranfield has two documents with
    # neither title nor text, which `ibex index` skips and reports too).
    assert manifest["skipped_empty"] == ["471", "995"]
    assert len(ids) == len(set(ids)) == 1398 == manifest["documents"]
    assert sorted(ids + manifest["skipped_empty"]) == sorted(cranfield_ids())
    # A shard is an ordinary index: the command line searches it.
    out = subprocess.run(
        [ibex_bin(), "search", "--index", str(root / "four" / manifest["shards"][0]["path"]),
         "--mode", "bm25", "--top-k", "3", "--json", "boundary layer"],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["hits"]) == 3


def test_sharded_search_equals_one_index_on_every_query(cranfield) -> None:
    root, _, single_path = cranfield
    judged = qrels()
    sharded = ShardedIndex(root / "four")
    single = ibex.Index.open(single_path)
    try:
        for mode in MODES:
            ndcg_sharded, ndcg_single = [], []
            for qid, text in cranfield_queries():
                got = [(h.id, h.score) for h in sharded.search(text, mode=mode, top_k=10, passages=0)]
                deeper = [(h.id, h.score) for h in single.search(text, mode=mode, top_k=30, passages=0)]
                assert_same_ranking(got, deeper, f"{mode} {qid}")
                expected = deeper[:10]
                if qid in judged:
                    ndcg_sharded.append(ndcg_at_10([d for d, _ in got], judged[qid]))
                    ndcg_single.append(ndcg_at_10([d for d, _ in expected], judged[qid]))
            mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
            assert abs(mean(ndcg_sharded) - mean(ndcg_single)) <= 0.001, mode
            print(f"{mode}: nDCG@10 sharded {mean(ndcg_sharded):.4f} single {mean(ndcg_single):.4f}")
    finally:
        sharded.close()
        single.close()


def test_a_worker_node_lost_while_embedding(cluster, tmp_path: pathlib.Path) -> None:
    head_cluster, worker = cluster
    out = tmp_path / "lost-node"
    result: dict = {}

    def build() -> None:
        try:
            result["manifest"] = ibex.ray.build_sharded_index(
                CRANFIELD, out, shards=4, num_workers=2, threads_per_worker=1, batch_size=16
            )
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = e

    builder = threading.Thread(target=build)
    builder.start()
    # Waits until an embedding actor on the worker node has finished a batch (its progress line
    # names the node), then takes the node away without warning.
    worker_id = worker.node_id
    seen = False
    while not seen and builder.is_alive():
        for path in glob.glob(str(out / ".build-*" / "embed-*.log")):
            with open(path) as f:
                if f"node={worker_id}" in f.read():
                    seen = True
        if not seen:
            os.sched_yield()
    assert seen, f"no batch was embedded on the worker node: {result}"
    assert not (out / "ibex-cluster.json").exists(), "the build ended before the node was removed"
    head_cluster.remove_node(worker, allow_graceful=False)
    builder.join()
    assert "error" not in result, result.get("error")
    manifest = result["manifest"]
    ids: list[str] = []
    for entry in manifest["shards"]:
        shard = ibex.Index.open(out / entry["path"])
        try:
            ids += shard._native.ids()
        finally:
            shard.close()
    assert len(ids) == len(set(ids)) == manifest["documents"]
    assert sorted(ids + manifest["skipped_empty"]) == sorted(cranfield_ids())
    head_cluster.add_node(num_cpus=3, object_store_memory=OBJECT_STORE)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def served(cranfield):
    """The 4 shards on Ray Serve, 2 replicas each, and the router on a loopback port."""
    from ray import serve

    import ibex.ray.serve as ibex_serve

    root, _, _ = cranfield
    port = free_port()
    handle = ibex_serve.run(str(root / "four"), name="cranfield", replicas=2, port=port)
    yield f"http://127.0.0.1:{port}", handle
    serve.shutdown()


def test_the_router_answers_as_ibex_serve(cranfield, served, tmp_path: pathlib.Path) -> None:
    root, _, single_path = cranfield
    url, _ = served
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(single_path, data / "cranfield")
    server = subprocess.Popen(
        [ibex_bin(), "serve", "--addr", "127.0.0.1:0", "--data-dir", str(data)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        first = server.stdout.readline()
        address = first.split(" at ")[1].strip().rstrip("/")
        for mode in MODES:
            body = {"query": "heat transfer in laminar boundary layers", "mode": mode, "top_k": 5}
            routed = post(f"{url}/v1/indexes/cranfield/search", body)
            direct = post(f"{address}/v1/indexes/cranfield/search", body)

            def shape(value):
                if isinstance(value, dict):
                    return {k: shape(v) for k, v in value.items()}
                if isinstance(value, list):
                    return [shape(value[0])] if value else []
                return type(value).__name__ if not isinstance(value, int) or isinstance(value, bool) else "number"

            assert shape(routed) == shape(direct), mode
            assert routed["total"] == direct["total"], mode
            assert [h["id"] for h in routed["hits"]] == [h["id"] for h in direct["hits"]], mode
            for a, b in zip(routed["hits"], direct["hits"]):
                assert a["score"] == pytest.approx(b["score"], rel=1e-5)
                for pa, pb in zip(a["passages"], b["passages"], strict=True):
                    assert pa["score"] == pytest.approx(pb["score"], rel=1e-5)
                    assert {**pa, "score": 0} == {**pb, "score": 0}
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_no_query_fails_when_a_shard_replica_is_killed(served) -> None:
    url, _ = served
    queries = [text for _, text in cranfield_queries()[:60]]
    done = threading.Semaphore(0)
    failures: list[str] = []
    answered = [0]
    lock = threading.Lock()

    def client(offset: int) -> None:
        for i in range(len(queries)):
            text = queries[(i + offset) % len(queries)]
            try:
                answer = post(f"{url}/v1/indexes/cranfield/search", {"query": text, "mode": "hybrid", "top_k": 5})
                assert answer["hits"], text
            except Exception as e:  # noqa: BLE001 - every failure is recorded
                failures.append(f"{text!r}: {e}")
            with lock:
                answered[0] += 1
            done.release()

    threads = [threading.Thread(target=client, args=(n * 15,)) for n in range(4)]
    for t in threads:
        t.start()
    for _ in range(20):  # the burst is under way
        done.acquire()
    # Serve names its replica actors SERVE_REPLICA::<app>#<deployment>#<id>.
    replicas = [
        a for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::") and "#shard-00000#" in a["name"]
    ]
    assert len(replicas) == 2, replicas
    before = answered[0]
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=True)
    for t in threads:
        t.join()
    assert failures == []
    assert answered[0] - before > 100, "most of the burst ran after the kill"


class FlakyHandle:
    """A deployment handle whose first calls land on a replica that died."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.call = self

    def remote(self, method: str, *args: object) -> "FlakyHandle":
        self.calls += 1
        return self

    def result(self, timeout_s: float) -> str:
        if self.calls <= self.failures:
            raise self.error
        return "answer"


def test_a_call_on_a_dead_replica_is_retried_and_a_request_error_is_not() -> None:
    from ray.exceptions import ActorDiedError

    from ibex.ray import ShardUnavailableError
    from ibex.ray.serve import ServeShard

    handle = FlakyHandle(2, ActorDiedError())
    assert ServeShard("shard-00000", handle, timeout_s=30).call("info") == "answer"
    assert handle.calls == 3
    handle = FlakyHandle(1, ibex.InvalidInputError("top_k must be between 1 and 1000"))
    with pytest.raises(ibex.InvalidInputError):
        ServeShard("shard-00000", handle, timeout_s=30).call("info")
    assert handle.calls == 1
    handle = FlakyHandle(10**9, ActorDiedError())
    with pytest.raises(ShardUnavailableError, match="shard-00003"):
        ServeShard("shard-00003", handle, timeout_s=0.3).call("info")
