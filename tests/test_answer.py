"""Extractive answers: the pure parts on hand-made hits, then the seed questions on the real sample index."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from sme_qa.answer import (
    CONFLICT_ZH,
    NEAR_EN,
    NEAR_ZH,
    Candidate,
    Question,
    compose_answer,
    coverage,
    find_conflict,
    passage_sentences,
    quantities,
    question_kind,
    strip_question_words,
)
from sme_qa.errors import QueryError
from sme_qa.llm import DECLINE_EN, DECLINE_ZH
from sme_qa.records import Hit
from sme_qa.text import compact

SEED = Path(__file__).resolve().parents[2] / "shared" / "eval" / "seed_qa.jsonl"


def _hit(text: str, doc: str = "d1", start: int = 0, paragraphs=(1, 1), date: str | None = "2022-01-01") -> Hit:
    return Hit(doc, f"{doc}:p{paragraphs[0]}", text, 1.0, f"标题{doc}", date, "来源", None,
               f"/articles/{doc}#p{paragraphs[0]}", paragraphs, start, start + len(text))


def _candidate(hit: Hit, quote: str, cov: float = 1.0, score: float = 1.5) -> Candidate:
    start = hit.start + hit.text.index(quote)
    return Candidate(hit, 0, start, start + len(quote), quote, hit.paragraphs[0], cov, cov, True, score)


# ------------------------------------------------------------ pure parts


def test_passage_sentences_give_article_offsets_and_paragraphs():
    article = "第一段。\n\n甲公司营收10亿元。 乙公司有300名员工！\n\n标题行"
    chunk_start = article.index("甲")
    hit = _hit(article[chunk_start:], start=chunk_start, paragraphs=(2, 3))
    spans = passage_sentences(hit)
    assert [(s[2], s[3]) for s in spans] == [(2, "甲公司营收10亿元。"), (2, "乙公司有300名员工！"), (3, "标题行")]
    for start, end, _, quote in spans:
        assert article[start:end] == quote


def test_question_kinds():
    assert question_kind("青岛是哪一年印发的？") == "date"
    assert question_kind("即刻路演小程序是什么时候上线的？") == "date"
    assert question_kind("一共有多少个？") == "number"
    assert question_kind("How many enterprises?") == "number"
    assert question_kind("谁发布了目录？") == "who"
    assert question_kind("为什么犹豫不前？") == "reason"
    assert question_kind("海创汇首创的是什么模式？") == "name"
    assert question_kind("介绍一下海创汇") is None
    assert "多少" not in strip_question_words("一共有多少家？") and "一共" not in strip_question_words("一共有多少家？")


def test_coverage_is_idf_weighted_and_context_counts_half():
    terms = (("上海市", 3.0), ("企业", 1.0))
    assert coverage(terms, "上海市的企业") == 1.0
    assert coverage(terms, "企业") == 0.25
    assert coverage(terms, "企业", frozenset({"上海市"})) == pytest.approx((1.0 + 1.5) / 4)
    assert coverage((), "anything") == 0.0


def test_quantities_know_what_they_count():
    terms = (("孵化", 1.8), ("小巨人", 1.6), ("企业", 0.1))
    found = quantities("已孵化出5家上市公司、102家瞪羚企业、71家专精特新“小巨人”企业。", terms)
    assert [(v, u) for v, u, _, _ in found] == [("5", "家"), ("102", "家"), ("71", "家")]
    assert found[2][2] == {"小巨人", "企业"} and found[0][2] == frozenset()
    # an amount at the end of a clause is about what precedes it
    assert quantities("目前有专精特新“小巨人”97家，全国排名第八", terms)[0][2] == {"小巨人"}
    assert quantities("已服务4000多家中小企业", (("中小企业", 1.0),))[0][:2] == ("4000", "家")


def _q(text: str, terms, kind="number", english=False) -> Question:
    return Question(text, english, kind, tuple(terms))


def test_conflict_needs_different_figures_for_the_same_thing_in_different_articles():
    from sme_qa.answer import analyse, strip_question_words
    from sme_qa.lexical import Tokenizer

    question = "海创汇孵化了多少家小巨人企业？"
    weights = {"创汇": 1.9, "孵化": 1.8, "小巨人": 1.6, "企业": 0.1}
    tokens = Tokenizer(["小巨人", "海创汇"]).tokens(strip_question_words(question))
    q = analyse(question, tokens, lambda w: weights.get(w, 1.0))
    assert q.unit == "家" and {t for t, _ in q.target} == {"小巨人", "企业"}
    old = _hit("海创汇已孵化出38家专精特新“小巨人”企业。", "old", date="2022-05-19")
    new = _hit("海创汇成功孵化出5家上市公司、71家专精特新“小巨人”企业。", "new", date="2022-09-14")
    other = _hit("海创汇孵化出102家瞪羚企业。", "other", date="2022-10-01")
    cands = [_candidate(old, old.text), _candidate(new, new.text), _candidate(other, other.text)]
    offers = find_conflict(q, cands)
    assert [(c.hit.doc_id, figure) for c, figure in offers] == [("new", "71家"), ("old", "38家")]
    same = _hit("海创汇已孵化出38家专精特新“小巨人”企业。", "same", date="2022-06-01")
    assert find_conflict(q, [cands[0], _candidate(same, same.text)]) == []  # agreeing sources
    assert find_conflict(replace(q, kind="who"), cands) == []
    weak = _candidate(new, new.text, cov=0.3)  # does not answer the same question
    assert find_conflict(q, [cands[0], weak]) == []


def test_compose_answer_frames_by_language():
    hit = _hit("甲公司营收10亿元。乙公司有300名员工。")
    chosen = [_candidate(hit, "甲公司营收10亿元。"), _candidate(hit, "乙公司有300名员工。")]
    text, cites = compose_answer(_q("甲公司营收多少？", []), chosen)
    assert text == "据《标题d1》（来源，2022-01-01）：「甲公司营收10亿元。」[1]「乙公司有300名员工。」[2]"
    assert [c.number for c in cites] == [1, 2] and cites[1].link == "/articles/d1?hl=10-21#p1"
    text, _ = compose_answer(_q("How much?", [], english=True), chosen[:1])
    assert text == "According to 《标题d1》 (来源, 2022-01-01): “甲公司营收10亿元。” [1]"


# ------------------------------------------------------------ the real sample index


def _seed() -> list[dict]:
    if not SEED.exists():
        pytest.skip(f"{SEED} not found")
    return [json.loads(line) for line in SEED.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def seed_answers(sample_searcher):
    return [(row, sample_searcher.ask(row["question"], llm=False)) for row in _seed()]


def _paragraph_of(article, offset: int) -> int:
    return next(p.number for p in article.paragraphs if p.start <= offset < p.end)


def test_citations_quote_the_article_exactly_and_link_the_right_paragraph(sample_searcher, seed_answers):
    checked = 0
    for _, answer in seed_answers:
        assert [c.number for c in answer.citations] == list(range(1, len(answer.citations) + 1))
        for c in answer.citations:
            article = sample_searcher.article(c.hit.doc_id)
            assert article.text[c.start : c.end] == c.quote
            assert c.link == f"/articles/{c.hit.doc_id}?hl={c.start}-{c.end}#p{_paragraph_of(article, c.start)}"
            assert f"[{c.number}]" in answer.text
            checked += 1
    assert checked >= 15


def test_answerable_seed_questions_are_answered_with_a_quote_holding_the_answer(seed_answers):
    for row, answer in seed_answers:
        if row["kind"] == "unanswerable":
            continue
        assert answer.answered, (row["qid"], answer.text)
        assert answer.mode == "extractive" and not answer.near_misses
        quotes = [compact(c.quote) for c in answer.citations if c.hit.doc_id in row["docs"]]
        assert any(compact(a) in q for a in row["answers"] for q in quotes), (row["qid"], answer.text)
        assert set(answer.timings) == {"retrieve_ms", "compose_ms", "total_ms"}


def test_unanswerable_seed_question_is_declined_with_near_misses(seed_answers):
    for row, answer in seed_answers:
        if row["kind"] != "unanswerable":
            continue
        assert not answer.answered and not answer.citations
        assert answer.text.startswith(DECLINE_ZH) and NEAR_ZH in answer.text
        assert 1 <= len(answer.near_misses) <= 3
        assert not re.search(r"\[\d+\]", answer.text)  # near misses are never cited as answers


def test_conflicting_figures_are_shown_with_sources_and_dates_newest_first(seed_answers):
    for row, answer in seed_answers:
        if row["kind"] != "conflict":
            continue
        assert answer.text.startswith(CONFLICT_ZH)
        assert "71家" in answer.text and "38家" in answer.text
        dates = [c.hit.date for c in answer.citations]
        assert dates == sorted(dates, reverse=True) and len(set(c.hit.doc_id for c in answer.citations)) >= 2
        figures = {c.hit.date: c.quote for c in answer.citations}
        assert "71家" in figures[dates[0]] and any("38家" in q for q in figures.values())
        for c in answer.citations:
            assert c.hit.date in answer.text and c.hit.source in answer.text


def test_english_question_gets_english_framing(seed_answers, sample_searcher):
    english = [(row, a) for row, a in seed_answers if row["kind"] == "crosslingual"]
    assert english
    for _, answer in english:
        assert answer.answered and answer.text.startswith("According to ")
        assert "embedding only" in answer.notice  # cross-language evidence is weak: said so
    declined = sample_searcher.ask("Who won the football world cup in 1998?", llm=False)
    assert not declined.answered and declined.text.startswith(DECLINE_EN)
    assert NEAR_EN in declined.text or not declined.near_misses


def test_empty_and_huge_questions(sample_searcher):
    for bad in ("", "   \n\t "):
        with pytest.raises(QueryError):
            sample_searcher.ask(bad)
    huge = "海创汇孵化了多少家企业？" + "专精特新中小企业发展" * 1000
    assert len(huge) > 10_000
    answer = sample_searcher.ask(huge, llm=False)
    assert answer.question == huge.strip() and answer.timings["total_ms"] > 0


def test_extractive_stream_ends_with_the_answer(sample_searcher):
    question = "海创汇首创的是什么创业模式？"
    parts = list(sample_searcher.ask_stream(question, llm=False))
    assert parts and parts[-1].answered and "有根创业" in parts[-1].citations[0].quote
