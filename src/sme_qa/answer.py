"""Cited answers: the orchestration of one question.

1. analyse the question (``question.py``): kind, content words, scope, language, or nothing
   to look up at all (emoji, punctuation, code → declined with a hint);
2. retrieve the top passages (``Searcher.retrieve``);
3. read them (``reader.py``): every sentence scored by the learned reader, and the
   probability that the best one answers; below the model's threshold, or when the question
   names a title (《…》, “…”) or a figure (2023年, 第二批) no passage mentions, the question is declined;
4. compose (``compose.py``): the span reader (``span_model.py``) reads the reader's best five
   sentences and the one it and the reader rate highest is quoted first (``spans.reread``), its short
   answer in bold, then the quoted sentence(s) with [n] markers; or, when articles give different figures for the same measure
   of the same subject, each figure with its source and date, newest first; or the refusal with
   near misses labelled as such;
5. with an LLM configured, it writes the answer from the same passages and its citations are
   checked (``llm.py``); any failure falls back to the extractive answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from . import span_model
from .compose import choose, compose_answer, compose_conflict, compose_decline, find_conflict
from .errors import LLMError, QueryError
from .question import Question, analyse_with, match_form
from .reader import Reading, read, shipped_model
from .reading_features import passage_sentences
from .records import Answer, Citation, Hit, article_link
from .spans import reread

log = logging.getLogger(__name__)

CROSS_NOTICE = "English question matched to Chinese text by embedding only: check the quoted sentence."


@dataclass(frozen=True)
class Evidence:
    """Everything an answer is composed from (what the benches read)."""

    view: Any  # the index generation it was read from (reader.CorpusView)
    asked: str  # the question as typed (white space stripped)
    question: Question  # its analysis (invisible characters removed, cut to MAX_QUESTION_CHARS)
    hits: tuple[Hit, ...]
    reading: Reading
    missing: tuple[str, ...]  # titles and figures of the question (``Question.required``) no retrieved passage mentions
    retrieve_ms: float
    translated: tuple[str, ...] = ()  # an English question's Chinese words (``Searcher.chinese_terms``)


def _check(question: Any) -> str:
    if not isinstance(question, str) or not question.strip():
        raise QueryError("the question is empty: type a question, e.g. 我国已培育了多少家专精特新“小巨人”企业？")
    return question.strip()


def evidence(
    searcher: Any,
    question: str,
    *,
    k: int = 5,
    mode: str = "hybrid",
    date_from: str | None = None,
    date_to: str | None = None,
    sources: Sequence[str] | None = None,
) -> Evidence:
    """Analyse the question, retrieve, and read the passages."""
    view = searcher.view()
    asked = _check(question)
    q = analyse_with(view, asked)
    if q.content_free or not q.text:
        return Evidence(view, asked, replace(q, content_free=True), (), Reading((), 0.0, False), (), 0.0)
    span_model.preload()  # the short answer's model loads while retrieval runs
    t0 = time.perf_counter()
    hits = tuple(searcher.retrieve(q.text, k, mode=mode, date_from=date_from, date_to=date_to, sources=sources))
    retrieve_ms = (time.perf_counter() - t0) * 1000
    reading = read(q, hits, view, terms=searcher.term_groups(q.text))  # () for a Chinese question
    passages = [match_form(h.text) for h in hits]
    # Only what the question quotes or pins is a hard requirement.  The places, organisations and
    # people jieba's dictionary tags are evidence the reader already weighs (names_missing…): the
    # dictionary tags common words too (东西, 城市, 古老 as names), and a translated name is often
    # spelled another way in the text.  Measured by scripts/train_reader.py (``rule_table``, in the
    # model card) on the cmrc2018_dev + drcd_dev retrievals: see the "v0.3 names rule" rows.
    missing = tuple(n for n in q.required if not any(n in p for p in passages))
    if missing and reading.answerable:
        reading = replace(reading, answerable=False)
    translated = tuple(searcher.chinese_terms(q.text)) if q.english else ()
    return Evidence(view, asked, q, hits, reading, missing, retrieve_ms, translated)


def extractive(ev: Evidence) -> Answer:
    """The extractive answer for a reading (no timings, no I/O beyond the view's caches)."""
    q, hits, reading, view = ev.question, ev.hits, ev.reading, ev.view
    if not reading.answerable:
        text, near = compose_decline(q, hits)
        return Answer(ev.asked, text, answered=False, near_misses=near)
    notice = CROSS_NOTICE if q.english else None
    offers = find_conflict(q, reading.candidates, view.places)
    if offers:
        text, citations = compose_conflict(q, offers)
        return Answer(ev.asked, text, citations, notice=notice)
    model = shipped_model()
    peers = reading.candidates[: reading.peers]
    # An English question's Chinese words go to the span reader with it, so the figure next to
    # 上市公司 answers "listed companies" (the written English questions: short answers matching
    # 11 → 12 of 34 answered, character F1 sum 10.8 → 12.2; xquad_en2zh span F1 unchanged, 0.253).
    asked = replace(q, text=f"{q.text} {' '.join(ev.translated)}") if ev.translated else q
    i, span = reread(asked, [c.quote for c in peers], [c.score for c in peers], view.words, model)
    ranked = (reading.candidates[i], *reading.candidates[:i], *reading.candidates[i + 1 :])
    quotes = choose(ranked, model.extra_ratio)
    text, citations = compose_answer(q, quotes, span.text if span else None)
    return Answer(ev.asked, text, citations, notice=notice, short=span.text if span else None)


def _finish(answer: Answer, t_start: float, retrieve_ms: float, t_compose: float, **extra: float) -> Answer:
    now = time.perf_counter()
    timings = {"retrieve_ms": round(retrieve_ms, 2), "compose_ms": round((now - t_compose) * 1000, 2)}
    timings.update({k: round(v, 2) for k, v in extra.items()})
    timings["total_ms"] = round((now - t_start) * 1000, 2)
    return replace(answer, timings=timings)


def answer(searcher: Any, question: str, **options: Any) -> Answer:
    """A cited answer to ``question``; the last item of ``answer_stream``."""
    final: Answer | None = None
    for final in answer_stream(searcher, question, **options):
        pass
    if final is None:  # answer_stream always yields; this keeps the type honest
        raise QueryError("no answer was produced")
    return final


def answer_stream(
    searcher: Any,
    question: str,
    *,
    k: int = 5,
    mode: str = "hybrid",
    llm: bool | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    sources: Sequence[str] | None = None,
) -> Iterator[Answer]:
    """Partial answers as they grow (LLM tokens), the complete answer last.

    ``llm``: None uses the LLM when ``SME_QA_LLM_BASE_URL`` and ``SME_QA_LLM_MODEL`` are set,
    False never does, True requires it (an unconfigured LLM is reported in ``notice``)."""
    t_start = time.perf_counter()
    ev = evidence(searcher, question, k=k, mode=mode, date_from=date_from, date_to=date_to, sources=sources)
    t_compose = time.perf_counter()
    log.debug("reading p=%.3f answerable=%s for %r", ev.reading.probability, ev.reading.answerable, ev.question.text[:80])
    extract = extractive(ev)
    from .llm import LLMConfig

    config = LLMConfig.from_settings(searcher.settings) if llm is not False else None
    if llm and config is None:
        extract = replace(extract, notice="No LLM is configured (SME_QA_LLM_BASE_URL, SME_QA_LLM_MODEL): extractive answer.")
    if config is None or not ev.reading.answerable:
        yield _finish(extract, t_start, ev.retrieve_ms, t_compose)
        return
    yield from _llm_answers(ev.question, ev.hits, extract, config, t_start, ev.retrieve_ms, t_compose)


def _llm_answers(
    q: Question, hits: Sequence[Hit], extract: Answer, config: Any, t_start: float, retrieve_ms: float, t_compose: float
) -> Iterator[Answer]:
    from .llm import grounded_messages, stream_chat

    t_llm = time.perf_counter()
    parts: list[str] = []
    try:
        for token in stream_chat(config, grounded_messages(q.text, hits, english=q.english)):
            parts.append(token)
            yield Answer(q.text, "".join(parts), mode="llm")
    except LLMError as exc:
        log.warning("LLM failed, extractive fallback: %s", exc)
        notice = f"LLM unavailable, fell back to the extractive answer: {exc}"
        yield _finish(replace(extract, notice=notice), t_start, retrieve_ms, t_compose)
        return
    llm_ms = (time.perf_counter() - t_llm) * 1000
    yield _finish(llm_final(q, hits, "".join(parts), extract), t_start, retrieve_ms, t_compose, llm_ms=llm_ms)


def llm_final(q: Question, hits: Sequence[Hit], raw: str, extract: Answer) -> Answer:
    """The checked LLM answer: markers to passages not given removed, the rest renumbered in
    order of first use, each citation quoting the cited passage's best-supporting sentence;
    unsupported claims are named in ``notice``.  An answer citing nothing falls back to ``extract``."""
    from .llm import check_citations, is_decline, support

    if is_decline(raw):
        text, near = compose_decline(q, hits)
        return Answer(q.text, text, answered=False, mode="llm", near_misses=near)
    check = check_citations(raw, [h.text for h in hits])
    if not check.order:
        return replace(extract, notice="The LLM answer cited no passage, so the extractive answer is shown.")
    citations = []
    for number, passage in enumerate(check.order, 1):
        hit = hits[passage - 1]
        claims = check.claims_citing(passage) or [q.text]
        start, end, paragraph, quote = max(passage_sentences(hit), key=lambda s: sum(support(c, s[3]) for c in claims))
        link = article_link(hit.doc_id, paragraph, hl=(start, end))
        citations.append(Citation(number, hit, quote, start, end, link))
    notes = []
    if check.dropped:
        notes.append("Removed citation markers to passages that were not given: " + ", ".join(f"[{n}]" for n in check.dropped) + ".")
    for claim in check.unsupported:
        cited = ", ".join(f"[{check.order.index(n) + 1}]" for n in claim.passages)
        notes.append(f"Not supported by the cited passage {cited} (overlap {claim.support:.0%}): “{claim.text[:80]}”")
    return Answer(q.text, check.text, tuple(citations), mode="llm", notice=" ".join(notes) or None)
