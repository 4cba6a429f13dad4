"""Optional LLM answers: an OpenAI-compatible chat-completions client, a grounded prompt,
and a check of the ``[n]`` citations the model writes.

The client speaks ``POST {base_url}/chat/completions`` with ``stream=true`` and reads
server-sent events (``data: {...}`` lines, ``data: [DONE]`` at the end); a server that
ignores ``stream`` and answers with one JSON body works too.  Every failure (refused
connection, timeout, HTTP error status, a malformed or error event) is raised as
``LLMError`` so that the caller can fall back to the extractive answer.

``check_citations`` is pure: it drops markers to passages that were not given,
renumbers the rest in order of first use, and measures how well each cited passage
supports the sentence that cites it (share of the sentence's Han bigrams and numbers
found in the passage).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .errors import LLMError
from .records import Hit
from .text import compact, has_han, sentence_spans, to_simplified

log = logging.getLogger(__name__)

DECLINE_ZH = "语料中没有找到能回答这个问题的内容。"
DECLINE_EN = "The corpus contains nothing that answers this question."
# A claim whose best cited passage covers less than this share of its bigrams is flagged.
MIN_SUPPORT = 0.35
PASSAGE_CHARS = 1200  # each passage is cut to this length in the prompt

SYSTEM_PROMPT = (
    "你是一个严格依据资料回答问题的助手。只能使用用户给出的编号资料，不得使用资料以外的知识，不得编造数字。"
    "每一句陈述事实的话后面都要用方括号标注所依据资料的编号，例如[1]或[2][3]，只能使用给出的编号。"
    f"如果资料不能回答这个问题，只回答：「{DECLINE_ZH}」"
    "如果不同资料给出的数字或说法不一致，请分别列出，注明来源和日期，新的在前。回答要简洁。"
)
ENGLISH_NOTE = (
    "The question is in English: answer in English, quote figures and names exactly as the passages give them, "
    f'and if the passages do not answer it, reply only: "{DECLINE_EN}"'
)

_MARKER = re.compile(r"[\[［【]\s*(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*[\]］】]")
_MARKERS_AFTER_END = re.compile(r"([。！？!?；;.])((?:\s*[\[［【]\s*\d{1,3}(?:\s*[,，、]\s*\d{1,3})*\s*[\]］】])+)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_HAN_RUN = re.compile(r"[\u3400-\u9fff]+")


@dataclass(frozen=True)
class LLMConfig:
    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0

    @classmethod
    def from_settings(cls, settings) -> LLMConfig | None:
        """The endpoint named by ``settings`` (``SME_QA_LLM_*``), or None when not configured."""
        if not (settings.llm_base_url and settings.llm_model):
            return None
        return cls(str(settings.llm_base_url), str(settings.llm_model), settings.llm_api_key, float(settings.llm_timeout))


def grounded_messages(question: str, hits: Sequence[Hit], *, english: bool = False) -> list[dict[str, str]]:
    """Chat messages: the rules, then the numbered passages and the question."""
    blocks = []
    for i, hit in enumerate(hits, 1):
        meta = "，".join(x for x in (hit.source, hit.date) if x)
        head = f"[{i}] 《{hit.title}》" + (f"（{meta}）" if meta else "")
        body = hit.text if len(hit.text) <= PASSAGE_CHARS else hit.text[:PASSAGE_CHARS] + "…"
        blocks.append(f"{head}\n{body}")
    system = SYSTEM_PROMPT + ("\n" + ENGLISH_NOTE if english else "")
    user = "资料：\n\n" + "\n\n".join(blocks) + f"\n\n问题：{question}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def stream_chat(config: LLMConfig, messages: list[dict[str, str]]) -> Iterator[str]:
    """Yield the answer's text as the endpoint streams it; raise ``LLMError`` on any failure.

    ``config.timeout`` bounds connecting and each wait for the next bytes.
    """
    import httpx

    url = config.base_url.rstrip("/") + "/chat/completions"
    headers = {"Accept": "text/event-stream"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    body = {"model": config.model, "messages": messages, "stream": True, "temperature": 0.1}
    try:
        with httpx.stream("POST", url, json=body, headers=headers, timeout=httpx.Timeout(config.timeout)) as response:
            if response.status_code != 200:
                detail = response.read()[:300].decode("utf-8", "replace")
                raise LLMError(f"the LLM endpoint {url} answered HTTP {response.status_code}: {detail}")
            if "text/event-stream" not in response.headers.get("content-type", ""):
                response.read()
                yield _message_text(_json(response.text))
                return
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # comments, event names, keep-alives
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                token = _delta_text(_json(data))
                if token:
                    yield token
    except httpx.TimeoutException as exc:
        raise LLMError(f"the LLM endpoint {url} did not answer within {config.timeout:g} s") from exc
    except httpx.HTTPError as exc:
        raise LLMError(f"the LLM endpoint {url} failed: {exc.__class__.__name__}: {exc}") from exc


def _json(data: str) -> dict:
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise LLMError(f"the LLM endpoint sent something that is not JSON: {data[:120]!r}") from exc
    if not isinstance(obj, dict):
        raise LLMError(f"the LLM endpoint sent an unexpected event: {data[:120]!r}")
    if obj.get("error"):
        raise LLMError(f"the LLM endpoint reported an error: {obj['error']}")
    return obj


def _delta_text(event: dict) -> str:
    choices = event.get("choices") or [{}]
    delta = choices[0].get("delta") or choices[0].get("message") or {}
    return delta.get("content") or ""


def _message_text(body: dict) -> str:
    choices = body.get("choices") or [{}]
    return (choices[0].get("message") or {}).get("content") or ""


# ------------------------------------------------------------ citation check


@dataclass(frozen=True)
class Claim:
    text: str  # one sentence of the answer, markers removed
    passages: tuple[int, ...]  # 1-based numbers of the passages it cites (as given to the model)
    support: float  # best share of its bigrams/numbers found in a cited passage


@dataclass(frozen=True)
class CitationCheck:
    text: str  # the answer with invalid markers removed and the rest renumbered
    order: tuple[int, ...]  # passage numbers in order of first use: order[i] became [i+1]
    dropped: tuple[int, ...]  # marker numbers that named no given passage
    claims: tuple[Claim, ...]

    @property
    def unsupported(self) -> tuple[Claim, ...]:
        return tuple(c for c in self.claims if c.passages and c.support < MIN_SUPPORT)

    def claims_citing(self, passage: int) -> list[str]:
        return [c.text for c in self.claims if passage in c.passages]


def _numbers(marker_body: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", marker_body)]


def check_citations(answer: str, passages: Sequence[str]) -> CitationCheck:
    """Validate the ``[n]`` markers of ``answer`` against the ``passages`` the model was given."""
    given = len(passages)
    order: list[int] = []
    dropped: list[int] = []

    def rewrite(match: re.Match) -> str:
        out = []
        for n in _numbers(match.group(1)):
            if not 1 <= n <= given:
                dropped.append(n)
                continue
            if n not in order:
                order.append(n)
            out.append(f"[{order.index(n) + 1}]")
        return "".join(dict.fromkeys(out))

    text = _MARKER.sub(rewrite, answer)
    text = re.sub(r"[ \t]+([。，；！？.,;!?])", r"\1", text).strip()
    claims = []
    # markers written after the full stop belong to the sentence before it
    analysed = _MARKERS_AFTER_END.sub(lambda m: m.group(2) + m.group(1), answer)
    for a, b in sentence_spans(analysed):
        sentence = analysed[a:b]
        cited = [n for m in _MARKER.finditer(sentence) for n in _numbers(m.group(1)) if 1 <= n <= given]
        plain = _MARKER.sub("", sentence).strip()
        if not plain:
            continue
        cited = list(dict.fromkeys(cited))
        best = max((support(plain, passages[n - 1]) for n in cited), default=0.0)
        claims.append(Claim(plain, tuple(cited), best))
    return CitationCheck(text, tuple(order), tuple(dict.fromkeys(dropped)), tuple(claims))


def support(claim: str, passage: str) -> float:
    """Share of the claim's Han bigrams and numbers that occur in ``passage`` (1.0 when it has none)."""
    c, p = compact(to_simplified(claim)), compact(to_simplified(passage))
    units = [run[i : i + 2] for run in _HAN_RUN.findall(c) for i in range(max(len(run) - 1, 0))]
    units += _NUMBER.findall(c)
    if not units:
        return 1.0
    found = sum(1 for u in units if u in p)
    score = found / len(units)
    if not has_han(c):  # an English sentence about Chinese text: only its figures can be checked
        numbers = _NUMBER.findall(c)
        score = 1.0 if all(n in p for n in numbers) else 0.0
    return score


def is_decline(answer: str) -> bool:
    """True when the model used the declining sentence it was told to use."""
    flat = compact(answer)
    return compact(DECLINE_ZH)[:12] in flat or compact(DECLINE_EN)[:30] in flat
