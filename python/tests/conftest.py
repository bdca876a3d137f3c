"""Shared fixtures: the quickstart corpus indexed once, and the `ibex` binary to compare with.

`tests/python.rs` (run by `cargo test --workspace`) builds the package into a virtualenv and runs
these tests with IBEX_BIN set to the `ibex` binary of the same build.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

import ibex

REPO = pathlib.Path(__file__).resolve().parents[2]
CORPUS = REPO / "examples" / "quickstart" / "documents.jsonl"
QUERIES = REPO / "examples" / "quickstart" / "queries.jsonl"


def ibex_bin() -> str:
    """The `ibex` command line of this checkout's build."""
    path = os.environ.get("IBEX_BIN") or str(REPO / "target" / "debug" / "ibex")
    if not os.path.exists(path):
        pytest.skip(f"no ibex binary at {path} (set IBEX_BIN)")
    return path


def run_cli(*args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [ibex_bin(), *args], input=stdin, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="session")
def quickstart_index(tmp_path_factory: pytest.TempPathFactory) -> ibex.Index:
    """The quickstart corpus indexed through Python, shared read-only by the tests."""
    path = tmp_path_factory.mktemp("quickstart") / "idx"
    index = ibex.Index.create(path)
    index.index_corpus(CORPUS, progress=False)
    return index


@pytest.fixture
def empty_index(tmp_path: pathlib.Path) -> ibex.Index:
    index = ibex.Index.create(tmp_path / "idx")
    yield index
    index.close()


def default_model_dir() -> pathlib.Path:
    """Where ibex keeps the default model once fetched (see ibex-fetch's ibex_home)."""
    home = os.environ.get("IBEX_HOME")
    if home:
        base = pathlib.Path(home)
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
        base = pathlib.Path(cache) / "ibex"
    return base / "models" / "all-MiniLM-L6-v2"


@pytest.fixture
def model_copy(tmp_path: pathlib.Path) -> str:
    """The default model's files under another folder name: another model id, same dimension."""
    ibex.Embedder()  # fetches the model when the cache lacks it
    copy = tmp_path / "another-minilm"
    shutil.copytree(default_model_dir(), copy)
    return str(copy)


def assert_same_ranking(got: list, deeper: list, mode: str = "") -> None:
    """``got`` (``(id, score)``, best first) ranks as ``deeper``, the expected ranking fetched
    deeper than ``got``: scores equal rank by rank (1e-5 relative), and documents equal except
    within runs of equal scores (equal within 1e-5: the order of a float sum may move the last
    bit), which are compared as sets; a run cut by the end of ``got`` must hold the documents
    that made the cut."""
    expected = deeper[: len(got)]
    assert len(got) == len(expected), (mode, got, expected)
    for (gid, gscore), (eid, escore) in zip(got, expected):
        assert gscore == pytest.approx(escore, rel=1e-5), (mode, gid, eid)
    start = 0
    for end in range(1, len(deeper) + 1):
        if end < len(deeper) and deeper[end][1] == pytest.approx(deeper[start][1], rel=1e-5):
            continue
        if start >= len(got):
            break
        got_ids = {id for id, _ in got[start:end]}
        run_ids = {id for id, _ in deeper[start:end]}
        if end <= len(got):
            assert got_ids == run_ids, (mode, start, got_ids, run_ids)
        else:
            assert got_ids <= run_ids, (mode, start, got_ids, run_ids)
        start = end
