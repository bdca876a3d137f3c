"""`Index.ask` and `Index.recommend` through the same LLM configuration as the CLI: here an
OpenAI-compatible server on loopback (IBEX_LLM_URL), which records the prompts it receives."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

import ibex

# What the fake server answers; a test may change it (the fixture restores it).
REPLY = {"text": "A black hole [1]."}


@pytest.fixture
def llm_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict]]:
    """A chat-completions server answering every request with one fixed answer."""
    prompts: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("content-length", 0))
            prompts.append(json.loads(self.rfile.read(length)))
            body = json.dumps({
                "choices": [{"message": {"role": "assistant", "content": REPLY["text"]},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 42, "completion_tokens": 5},
            }).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("IBEX_LLM_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    monkeypatch.setenv("IBEX_LLM_MODEL", "fake")
    monkeypatch.setenv("IBEX_LLM_MAX_RETRIES", "0")
    yield prompts
    server.shutdown()
    REPLY["text"] = "A black hole [1]."


def test_ask_sends_the_retrieved_context_and_checks_citations(
    quickstart_index: ibex.Index, llm_server: list[dict]
) -> None:
    question = "What forms when a massive star collapses?"
    answer = quickstart_index.ask(question, top_k=3)
    assert answer["answer"] == "A black hole [1]."
    assert answer["model"] == "fake"
    assert [c["number"] for c in answer["citations"]] == [1]
    cited = answer["citations"][0]["doc_id"]
    assert cited == answer["context"][0]["doc_id"]
    prompt = json.dumps(llm_server[0]["messages"])
    assert question in prompt and answer["context"][0]["text"][:40] in prompt
    whole = quickstart_index.ask(question, top_k=3, compress=False)
    assert whole["tokens"]["after_compression"] == whole["tokens"]["before_compression"]
    assert answer["supported"] is True and answer["unsupported"] == []
    assert "reason" not in answer


def test_an_answer_the_passages_do_not_hold_is_flagged(
    quickstart_index: ibex.Index, llm_server: list[dict]
) -> None:
    REPLY["text"] = "A study at Stanford found 42 black holes [1]."
    answer = quickstart_index.ask("What forms when a massive star collapses?", top_k=3)
    assert answer["supported"] is False
    assert answer["unsupported"] == ["42", "Stanford"]
    assert "Stanford" in answer["reason"]


def test_recommend_returns_real_unseen_items(
    quickstart_index: ibex.Index, llm_server: list[dict]
) -> None:
    history = ["astro-exoplanet-transit"]
    result = quickstart_index.recommend(history, k=3, candidates=6, reasons=False)
    ids = [item["id"] for item in result["items"]]
    assert len(ids) == 3 and not set(ids) & set(history)
    assert all(i in quickstart_index for i in ids)
    # The fake's answer names no candidate: the candidate ranking stands in, and says so.
    assert result["errors"]["fell_back"]
    # By default (LLM weight 0) the LLM is shown only the final picks: the first candidates.
    offered = json.dumps(llm_server[-1]["messages"])
    candidate_ids = [c["id"] for c in result["candidates"]]
    assert ids == candidate_ids[:3]
    assert all(c in offered for c in candidate_ids[:3])
    assert not any(c in offered for c in candidate_ids[3:])
    with pytest.raises(ValueError, match="llm_weight"):
        quickstart_index.recommend(history, k=3, llm_weight=-1)
