"""The LLM path against a real chat-completions server on 127.0.0.1 (http.server in a thread).

The server speaks the OpenAI protocol: ``POST /v1/chat/completions`` with ``stream=true``
answers ``text/event-stream`` with one ``data: {...}`` event per token and ``data: [DONE]``.
What it answers depends on the first path segment of the base URL (/good, /cite7, /sleep,
/fail, /plain, /decline) or, for the base URL /switch/v1 that the searcher uses, on
``server.behaviour``: one server and one searcher serve every test.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sme_qa.errors import LLMError
from sme_qa.llm import DECLINE_ZH, LLMConfig, check_citations, grounded_messages, stream_chat, support
from sme_qa.records import Hit
from sme_qa.search import Searcher

# {n} becomes the number of the passage that holds 8997, as a grounded model would cite it.
GOOD = "我国已培育8997家专精特新“小巨人”企业。[{n}] 这一数字由工信部部长金壮龙表示[{n}]。"
CITES_7 = "我国已培育8997家专精特新“小巨人”企业[7]，中小企业创新力大幅提升[{n}]。"


def _tokens(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:  # http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body))  # type: ignore[attr-defined]
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            self._answer(body)

    def _answer(self, body: dict) -> None:
        behaviour = self.path.strip("/").split("/")[0]
        if behaviour == "switch":
            behaviour = self.server.behaviour  # type: ignore[attr-defined]
        if behaviour == "fail":
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "model crashed"}}')
            return
        if behaviour == "sleep":
            time.sleep(1.5)
        prompt = body["messages"][-1]["content"] if body.get("messages") else ""
        n = next((b.split("]")[0] for b in prompt.split("\n\n[")[1:] if "8997" in b), "1")
        text = {"good": GOOD, "sleep": GOOD, "cite7": CITES_7, "plain": GOOD, "decline": DECLINE_ZH}[behaviour]
        text = text.replace("{n}", n)
        if behaviour == "plain" or not body.get("stream"):
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b": keep-alive comment\n\n")
        for token in _tokens(text):
            event = {"choices": [{"index": 0, "delta": {"content": token}}]}
            self.wfile.write(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests = []  # type: ignore[attr-defined]
    httpd.behaviour = "good"  # type: ignore[attr-defined]
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(server, behaviour: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{behaviour}/v1"


@pytest.fixture(scope="module")
def llm_searcher(sample_searcher, server) -> Searcher:
    """A searcher over the sample index whose LLM is the test server (timeout 1 s)."""
    settings = replace(sample_searcher.settings, llm_base_url=_url(server, "switch"), llm_model="test-model", llm_timeout=1.0)
    return Searcher(settings)


@pytest.fixture
def behave(server):
    def set_behaviour(name: str) -> None:
        server.behaviour = name

    yield set_behaviour
    server.behaviour = "good"


Q = "我国已培育了多少家专精特新“小巨人”企业？"


# ------------------------------------------------------------ client


def test_stream_chat_yields_tokens_and_sends_the_protocol(server):
    config = LLMConfig(_url(server, "good"), "test-model", api_key="secret", timeout=5)
    tokens = list(stream_chat(config, [{"role": "user", "content": "hi"}]))
    assert "".join(tokens) == GOOD.replace("{n}", "1") and len(tokens) > 3
    path, body = server.requests[-1]
    assert path == "/good/v1/chat/completions"
    assert body["stream"] is True and body["model"] == "test-model" and body["messages"][0]["content"] == "hi"


def test_stream_chat_reads_a_plain_json_answer(server):
    config = LLMConfig(_url(server, "plain"), "m", timeout=5)
    assert "".join(stream_chat(config, [])) == GOOD.replace("{n}", "1")


def test_errors_become_llm_errors(server):
    with pytest.raises(LLMError, match="HTTP 500"):
        list(stream_chat(LLMConfig(_url(server, "fail"), "m", timeout=5), []))
    with pytest.raises(LLMError, match="did not answer within"):
        list(stream_chat(LLMConfig(_url(server, "sleep"), "m", timeout=0.3), []))
    with pytest.raises(LLMError):  # nothing listens on port 9 (discard)
        list(stream_chat(LLMConfig("http://127.0.0.1:9/v1", "m", timeout=2), []))


# ------------------------------------------------------------ pure checks


def _hit(text: str, n: int = 1) -> Hit:
    return Hit(f"d{n}", f"d{n}:p1", text, 1.0, f"T{n}", "2022-01-01", "S", None, f"/articles/d{n}#p1", (1, 1), 0, len(text))


def test_check_citations_drops_unknown_markers_and_renumbers_by_first_use():
    passages = ["甲公司去年营收10亿元。", "乙公司有300名员工。"]
    check = check_citations("乙公司有300名员工[2]。甲公司营收10亿元[1][9]。", passages)
    assert check.text == "乙公司有300名员工[1]。甲公司营收10亿元[2]。"
    assert check.order == (2, 1) and check.dropped == (9,)
    assert [c.passages for c in check.claims] == [(2,), (1,)]
    assert not check.unsupported


def test_markers_after_the_full_stop_belong_to_the_sentence_before():
    check = check_citations("甲公司营收10亿元。[1] 乙公司有300名员工。[2]", ["甲公司去年营收10亿元。", "乙公司有300名员工。"])
    assert [c.passages for c in check.claims] == [(1,), (2,)]
    assert check.text == "甲公司营收10亿元。[1] 乙公司有300名员工。[2]"


def test_unsupported_claims_are_flagged():
    check = check_citations("丙公司明年将在火星建厂[1]。", ["甲公司去年营收10亿元。"])
    assert check.unsupported and check.unsupported[0].support < 0.35
    assert support("营收10亿元", "甲公司去年营收10亿元。") == 1.0
    assert support("revenue was 12 billion", "营收10亿元") == 0.0  # English: its figures must appear
    assert support("revenue was 10", "营收10亿元") == 1.0


def test_grounded_prompt_numbers_the_passages_and_asks_for_citations():
    messages = grounded_messages("问题？", [_hit("甲。"), _hit("乙。", 2)], english=True)
    assert "[n]" not in messages[0]["content"] and "[1]" in messages[0]["content"]
    assert DECLINE_ZH in messages[0]["content"] and "English" in messages[0]["content"]
    assert "[1] 《T1》（S，2022-01-01）\n甲。" in messages[1]["content"]
    assert messages[1]["content"].endswith("问题：问题？")


# ------------------------------------------------------------ through Searcher.ask


def test_good_llm_answer_with_valid_citations(sample_searcher, llm_searcher, behave):
    behave("good")
    answer = llm_searcher.ask(Q)
    assert answer.mode == "llm" and answer.answered and answer.notice is None
    assert "[1]" in answer.text and "8997" in answer.text
    assert len(answer.citations) == 1
    c = answer.citations[0]
    article = sample_searcher.article(c.hit.doc_id)
    assert article.text[c.start : c.end] == c.quote and "8997" in c.quote
    assert {"retrieve_ms", "compose_ms", "llm_ms", "total_ms"} <= set(answer.timings)


def test_marker_to_a_passage_not_given_is_removed(llm_searcher, behave):
    behave("cite7")
    answer = llm_searcher.ask(Q, k=5)
    assert "[7]" not in answer.text and "[1]" in answer.text
    assert [c.number for c in answer.citations] == [1]
    assert "[7]" in answer.notice


def test_timeout_falls_back_to_the_extractive_answer(llm_searcher, behave):
    behave("sleep")
    answer = llm_searcher.ask(Q)
    assert answer.mode == "extractive" and answer.answered
    assert "LLM unavailable" in answer.notice and "within 1 s" in answer.notice
    assert any("8997" in c.quote for c in answer.citations)


def test_http_500_falls_back_to_the_extractive_answer(llm_searcher, behave):
    behave("fail")
    answer = llm_searcher.ask(Q)
    assert answer.mode == "extractive" and "HTTP 500" in answer.notice and answer.citations


def test_llm_false_and_unconfigured(sample_searcher, llm_searcher):
    assert llm_searcher.ask(Q, llm=False).mode == "extractive"
    answer = sample_searcher.ask(Q, llm=True)
    assert answer.mode == "extractive" and "No LLM is configured" in answer.notice


def test_stream_yields_partial_answers_before_the_final(llm_searcher, behave):
    behave("good")
    parts = list(llm_searcher.ask_stream(Q))
    assert len(parts) > 4
    texts = [p.text for p in parts[:-1]]
    assert all(len(a) < len(b) for a, b in itertools.pairwise(texts))  # growing
    assert all(not p.citations for p in parts[:-1]) and parts[-1].citations
    assert parts[-1].timings and parts[-1].mode == "llm"


def test_llm_decline_is_a_decline_with_near_misses(llm_searcher, behave):
    behave("decline")
    answer = llm_searcher.ask(Q)
    assert not answer.answered and answer.mode == "llm" and answer.near_misses and not answer.citations


def test_unanswerable_question_never_reaches_the_llm(llm_searcher, server, behave):
    behave("good")
    before = len(server.requests)
    answer = llm_searcher.ask("上海市有多少家专精特新“小巨人”企业？")
    assert not answer.answered and len(server.requests) == before
