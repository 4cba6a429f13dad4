"""Answers on the real sample index: the seed questions, refusals, scope, conflicts, the golden scores.

The seed sets live in ../shared/eval; under CI they are required (a missing file fails).
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

import pytest

from sme_qa.answer import evidence
from sme_qa.compose import CONFLICT_ZH, CONTENT_FREE_ZH, NEAR_EN, NEAR_ZH
from sme_qa.errors import QueryError
from sme_qa.evaluate import answer_correct, answer_metrics
from sme_qa.llm import DECLINE_EN, DECLINE_ZH
from sme_qa.reader import shipped_model

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
DATA = Path(__file__).resolve().parent / "data"


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing: CI runs with ../shared beside the checkout")
        pytest.skip(f"{path} not found")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def seed_answers(sample_searcher):
    return [(row, sample_searcher.ask(row["question"], llm=False)) for row in _rows(EVAL / "seed_qa.jsonl")]


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
    assert checked >= 12


def test_every_fact_and_conflict_seed_question_is_answered_correctly(seed_answers):
    # The paraphrased seed question is answered with a sentence that does not hold its answer and
    # the English one is declined (the reader is not sure enough of it): reported by
    # bench/bench_reader.py, not hidden here.
    answerable = [(row, a) for row, a in seed_answers if row["kind"] in ("fact", "conflict")]
    assert len(answerable) >= 13
    wrong = [(row["qid"], a.text[:120]) for row, a in answerable if not answer_correct(row, a)]
    assert wrong == []
    for _, a in answerable:
        assert a.mode == "extractive" and not a.near_misses
        assert set(a.timings) == {"retrieve_ms", "compose_ms", "total_ms"}


def test_short_answer_leads_in_bold(seed_answers):
    by_id = {row["qid"]: a for row, a in seed_answers}
    first = by_id["p01"]
    assert first.short == "8997家" and first.text.startswith("**8997家**")
    assert "金壮龙表示" in first.citations[0].quote  # the quote keeps who said it


def test_unanswerable_seed_question_is_declined_with_near_misses(seed_answers):
    declined = [a for row, a in seed_answers if row["kind"] == "unanswerable"]
    assert declined
    for answer in declined:
        assert not answer.answered and not answer.citations
        assert answer.text.startswith(DECLINE_ZH) and NEAR_ZH in answer.text
        assert 1 <= len(answer.near_misses) <= 3
        assert not re.search(r"\[\d+\]", answer.text)  # near misses are never cited as answers


@pytest.mark.parametrize(
    "path", [EVAL / "seed_unanswerable.jsonl", DATA / "near_topic_unanswerable.jsonl"], ids=["seed_unanswerable", "near_topic_written_here"]
)
def test_near_topic_questions_the_corpus_does_not_answer_are_declined(sample_searcher, path):
    rows = _rows(path)
    answered = [(r["question"], a.citations[0].quote[:60]) for r in rows if (a := sample_searcher.ask(r["question"], llm=False)).answered]
    # The aim is 14 of 15; the shipped reader declines 12 of 15 and 14 of 16
    # (bench/bench_reader.py, README): this guards that level, the closing note of issue #15 says
    # what is missing.
    assert len(rows) >= 15 and len(answered) <= len(rows) // 5, answered


def test_english_questions_about_anything_else_are_declined_and_the_corpus_questions_answered(sample_searcher):
    """General-knowledge English questions asked of the sample corpus (written here) are declined
    by the relevance floor (``reader.CROSS_FLOOR``): 4 of 50 answered (20 without the floor)."""
    rows = _rows(DATA / "english_offcorpus.jsonl")
    answered = [(r["question"], a.citations[0].quote[:40]) for r in rows if (a := sample_searcher.ask(r["question"], llm=False)).answered]
    assert len(rows) >= 50 and len(answered) <= len(rows) // 10, answered
    chairman = sample_searcher.ask("Who is the chairman of Haichuanghui?", llm=False)
    assert chairman.answered and "刘长文" in chairman.citations[0].quote


def test_an_english_questions_chinese_words_pick_the_figure_of_a_list(sample_searcher):
    """「…5家上市公司、7家独角兽、102家瞪羚企业…」: "listed companies" is 上市公司 (the glossary), so
    the short answer is 5家, not the list's largest figure."""
    answer = sample_searcher.ask("How many listed companies has Haichuanghui incubated?", llm=False)
    assert answer.answered and answer.short == "5家" and "5家上市公司" in answer.citations[0].quote


def test_what_an_english_question_names_in_chinese_vouches_for_its_sentence(sample_searcher):
    """The English answerability alone rates "How many little giants has China cultivated?" far
    below its cut; its Chinese words (小巨人, 我国) all standing in the sentence vouch for it."""
    assert sample_searcher.term_groups("How many little giants are there in Qingdao?") == (("小巨人",), ("青岛",))
    assert sample_searcher.term_groups("Who is the chairman of Tesla?") == ()  # Tesla spells nothing known
    assert sample_searcher.term_groups("海创汇的董事长是谁？") == ()
    answer = sample_searcher.ask("How many little giants has China cultivated?", llm=False)
    assert answer.answered and answer.short == "8997家" and "8997家" in answer.citations[0].quote
    assert evidence(sample_searcher, "How many little giants has China cultivated?").reading.probability < shipped_model().threshold_cross
    # every word must stand in the sentence, and a count needs a written figure (not 「一批瞪羚」)
    gazelles = sample_searcher.ask("How many gazelle enterprises has Haichuanghui incubated?", llm=False)
    assert not gazelles.answered or "102家" in gazelles.text
    assert not sample_searcher.ask("How many little giants does Tesla have?", llm=False).answered


def test_content_free_input_is_declined_with_a_hint(sample_searcher):
    # "hello" and "thanks" were answered with a citation (the English reader's cosine is high for any short text)
    for text in (
        "🚀🔥💯🤖",
        "'; DROP TABLE articles; --",
        "？！。，、……",
        "\u200b\u200b\u200b",
        "<img src=x onerror=alert(1)>",
        "hello",
        "thanks",
        "你好",
    ):
        answer = sample_searcher.ask(text, llm=False)
        assert not answer.answered and not answer.citations and not answer.near_misses, text
        assert answer.text in (CONTENT_FREE_ZH,) or "Ask in words" in answer.text


def test_scope_word_is_respected(sample_searcher):
    answer = sample_searcher.ask("全国一共有几家专精特新小巨人企业", llm=False)
    assert answer.answered and "8997" in answer.citations[0].quote and "8997家" in answer.text.split("\n")[0]


def test_figures_about_different_subjects_are_not_a_conflict(sample_searcher):
    answer = sample_searcher.ask("目前有专精特新“小巨人”多少家？", llm=False)
    assert not answer.text.startswith(CONFLICT_ZH)


def test_conflicting_figures_are_shown_with_sources_and_dates_newest_first(seed_answers):
    conflict = [a for row, a in seed_answers if row["kind"] == "conflict"]
    assert conflict
    for answer in conflict:
        assert answer.text.startswith(CONFLICT_ZH)
        assert "71家" in answer.text and "38家" in answer.text
        dates = [c.hit.date for c in answer.citations]
        assert dates == sorted(dates, reverse=True) and len({c.hit.doc_id for c in answer.citations}) >= 2
        for c in answer.citations:
            assert c.hit.date in answer.text and c.hit.source in answer.text


def test_english_question_gets_english_framing_and_off_corpus_english_is_declined(sample_searcher):
    answer = sample_searcher.ask("How many municipal little giant enterprises does Beijing have?", llm=False)
    assert answer.answered and answer.short and "1141" in answer.short and "According to 《" in answer.text
    assert "市级专精特新“小巨人”企业1141家" in answer.citations[0].quote
    assert "embedding only" in answer.notice  # cross-language evidence is weak: said so
    declined = sample_searcher.ask("Who won the football world cup in 1998?", llm=False)
    assert not declined.answered and declined.text.startswith(DECLINE_EN)
    assert NEAR_EN in declined.text and 1 <= len(declined.near_misses) <= 3
    # a year the question names must stand in a passage, as in Chinese (「2023年…」)
    assert sample_searcher.ask("What did Qingdao issue in 2012?", llm=False).answered
    assert not sample_searcher.ask("What did Qingdao issue in 2031?", llm=False).answered


def test_shipped_weights_reproduce_the_model_card_on_the_seed_sets(sample_searcher):
    """Golden: the seed scores written into the model when it was trained are what it gives now."""
    meta = json.loads(resources.files("sme_qa").joinpath("models", "reader.json").read_text(encoding="utf-8"))["meta"]
    golden = meta["golden"]
    for name in ("seed_qa", "seed_unanswerable"):
        m = answer_metrics(_rows(EVAL / f"{name}.jsonl"), lambda q: sample_searcher.ask(q, llm=False))
        if m["n"]:
            assert round(m["correct"], 4) == golden[f"{name}_correct"], name
        if m["unanswerable"]:
            assert round(m["unanswerable_declined"], 4) == golden[f"{name}_unanswerable_declined"], name


def test_empty_and_huge_questions(sample_searcher):
    for bad in ("", "   \n\t "):
        with pytest.raises(QueryError):
            sample_searcher.ask(bad)
    huge = "海创汇首创的是什么创业模式？" + "专精特新中小企业发展" * 1000
    assert len(huge) > 10_000
    answer = sample_searcher.ask(huge, llm=False)
    assert answer.question == huge.strip()
    assert answer.answered and any("有根创业" in c.quote for c in answer.citations)  # the head is what is asked


def test_extractive_stream_ends_with_the_answer(sample_searcher):
    parts = list(sample_searcher.ask_stream("海创汇首创的是什么创业模式？", llm=False))
    assert parts and parts[-1].answered and "有根创业" in parts[-1].citations[0].quote
