"""Every error is an ibex exception of the right class, with ibex's message; nothing is lost."""

from __future__ import annotations

import fcntl
import pathlib

import pytest

import ibex


def test_missing_index() -> None:
    with pytest.raises(ibex.IndexNotFoundError, match="no ibex index") as error:
        ibex.Index.open("/no/such/index")
    assert isinstance(error.value, FileNotFoundError)


def test_missing_document(empty_index: ibex.Index) -> None:
    assert empty_index.get("nope") is None
    with pytest.raises(ibex.DocumentNotFoundError) as error:
        empty_index["nope"]
    assert isinstance(error.value, KeyError) and "nope" in str(error.value)


def test_invalid_documents_name_the_document_and_write_nothing(empty_index: ibex.Index) -> None:
    empty_index.upsert([{"id": "ok", "text": "fine"}])
    with pytest.raises(ibex.InvalidInputError, match="document 1") as error:
        empty_index.upsert([{"id": "a", "text": "good"}, {"title": "no id", "text": "x"}])
    assert isinstance(error.value, ValueError)
    with pytest.raises(ibex.InvalidInputError, match="has no text"):
        empty_index.upsert([{"id": "empty", "text": ""}])
    assert len(empty_index) == 1


def test_a_malformed_corpus_line_is_named_and_nothing_is_written(
    empty_index: ibex.Index, tmp_path: pathlib.Path
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "a", "text": "fine"}\n{"_id": "b", "text": \n')
    with pytest.raises(ibex.InvalidInputError, match=r"corpus.jsonl:2:"):
        empty_index.index_corpus(corpus, progress=False)
    assert len(empty_index) == 0


def test_invalid_settings_and_requests(tmp_path: pathlib.Path, empty_index: ibex.Index) -> None:
    with pytest.raises(ibex.InvalidInputError, match="chunk"):
        ibex.Index.create(tmp_path / "bad", chunk_tokens=10, overlap=10)
    with pytest.raises(ibex.InvalidInputError, match="bm25, dense or hybrid"):
        empty_index.search("x", mode="fuzzy")
    with pytest.raises(ibex.InvalidInputError, match="top_k"):
        empty_index.search("x", top_k=0)
    with pytest.raises(ibex.InvalidInputError, match="filter"):
        empty_index.search("x", filter={"tags": ["a", "b"]})
    with pytest.raises(ibex.IbexError, match="dimensions"):
        empty_index.search(mode="dense", vector=[0.1, 0.2])
    with pytest.raises(ibex.InvalidInputError, match="unknown device"):
        ibex.Embedder(device="tpu")


def test_another_model_is_a_model_mismatch(empty_index: ibex.Index, model_copy: str) -> None:
    with pytest.raises(ibex.ModelMismatchError, match="another-minilm"):
        ibex.Index.open(empty_index.path, model=model_copy)


def test_a_locked_index_says_so(empty_index: ibex.Index) -> None:
    lock_path = pathlib.Path(empty_index.path) / "lexical" / ".tantivy-writer.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another writer process would
        with pytest.raises(ibex.IndexLockedError, match="being written by another process"):
            empty_index.upsert([{"id": "a", "text": "blocked"}])
    empty_index.upsert([{"id": "a", "text": "free again"}])
    assert len(empty_index) == 1


def test_a_closed_index_says_so(tmp_path: pathlib.Path) -> None:
    index = ibex.Index.create(tmp_path / "idx")
    index.close()
    index.close()
    with pytest.raises(ibex.IndexClosedError, match="closed"):
        index.search("x")
    with pytest.raises(ibex.IndexClosedError):
        len(index)
