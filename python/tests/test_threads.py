"""The GIL is released while ibex works, and an index is shared safely between threads.

No timing is involved: the switch interval is raised so far that Python never takes the GIL from
a thread by itself; the counting thread then advances during a call only if that call lets go of
the GIL.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import ibex
from conftest import CORPUS


def progress_during(call: Callable[[], object]) -> int:
    """How many times another Python thread ran while `call` was inside ibex."""
    counter = 0
    done = threading.Event()

    def count() -> None:
        nonlocal counter
        while not done.is_set():
            counter += 1
            os.sched_yield()  # lets go of the GIL, so the calling thread gets it back

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    counting = threading.Thread(target=count)
    try:
        counting.start()
        while counter == 0:
            os.sched_yield()
        before = counter
        call()
        during = counter - before
    finally:
        done.set()
        counting.join()
        sys.setswitchinterval(previous)
    return during


def test_indexing_and_searching_release_the_gil(tmp_path) -> None:
    index = ibex.Index.create(tmp_path / "idx")
    assert progress_during(lambda: index.index_corpus(CORPUS, progress=False)) > 0
    assert progress_during(lambda: index.search("a long hybrid search", top_k=50)) > 0
    embedder = ibex.Embedder()
    assert progress_during(lambda: embedder.embed(["text"] * 64)) > 0
    index.close()


def test_threads_share_an_index(quickstart_index: ibex.Index) -> None:
    queries = ["black holes", "espresso sour taste", "plague in Europe", "planets of other stars"] * 4
    expected = {q: [h.id for h in quickstart_index.search(q, mode="bm25")] for q in queries}
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda q: (q, [h.id for h in quickstart_index.search(q, mode="bm25")]), queries))
    for query, ids in results:
        assert ids == expected[query]


def test_writes_from_threads_are_all_committed(tmp_path) -> None:
    with ibex.Index.create(tmp_path / "idx") as index:
        def write(t: int) -> None:
            index.upsert([{"id": f"t{t}-{i}", "text": f"document {i} of thread {t}"} for i in range(5)])

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(write, range(4)))
        assert len(index) == 20
        reopened = ibex.Index.open(index.path)
        assert len(reopened) == 20
        reopened.close()
