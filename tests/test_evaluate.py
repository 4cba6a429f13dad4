"""Retrieval evaluation: reading question sets, what counts as a hit, and a run on a benchmark-format set."""

from __future__ import annotations

import json

import pytest

from sme_qa.errors import SmeQaError
from sme_qa.evaluate import format_report, is_hit, read_questions, run_eval


def test_read_questions_skips_blank_lines_limits_and_names_bad_lines(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "一"}\n\n{"question": "二"}\n{"question": "三"}\n', encoding="utf-8")
    assert [r["question"] for r in read_questions(path)] == ["一", "二", "三"]
    assert [r["question"] for r in read_questions(path, limit=2)] == ["一", "二"]
    path.write_text('{"question": "一"}\n{"q": "二"}\n', encoding="utf-8")
    with pytest.raises(SmeQaError, match=r"q\.jsonl:2: no 'question' field"):
        read_questions(path)


def test_a_seed_hit_needs_the_document_and_the_answer_after_nfkc():
    q = {"question": "?", "answers": ["99.5%"], "docs": ["a"]}
    assert is_hit(q, "a", "良品率达到 99．5％ 以上")  # full-width digits and white space
    assert not is_hit(q, "b", "良品率达到99.5%")  # right text, wrong document
    assert not is_hit(q, "a", "良品率达到98%")
    assert is_hit({"question": "?", "gold_pids": ["p1"]}, "p1", "anything")
    assert not is_hit({"question": "?", "gold_pids": ["p1"]}, "p2", "anything")


PASSAGES = [
    {"pid": "p1", "title": "星河精工", "text": "星河精工的伺服电机年产能达到7531台，位居行业前列。"},
    {"pid": "p2", "title": "云帆传感", "text": "云帆传感近日宣布完成新一轮融资，融资金额为4286万元。"},
    {"pid": "p3", "title": "琪琪格", "text": "琪琪格精密机械公司研发的谐波减速器良品率达到了97.3%。"},
]
QUESTIONS = [
    {"qid": "q1", "question": "星河精工的伺服电机年产能是多少台？", "gold_pids": ["p1"]},
    {"qid": "q2", "question": "云帆传感融资金额是多少？", "gold_pids": ["p2"]},
    {"qid": "q3", "question": "谐波减速器良品率是多少？", "gold_pids": ["p3"]},
]


def test_benchmark_set_is_indexed_beside_the_cache_and_scored(tmp_path, model_cache):
    bench = tmp_path / "tiny_set"
    bench.mkdir()
    (bench / "passages.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in PASSAGES), "utf-8")
    (bench / "questions.jsonl").write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QUESTIONS), "utf-8")
    stages: list[str] = []
    report = run_eval(
        bench / "questions.jsonl", ks=(1, 3), modes=("lexical", "hybrid"), progress=lambda stage, done, total: stages.append(stage)
    )
    assert report["corpus"] == str(bench / "passages.jsonl")
    assert report["vectors"].startswith(str(model_cache / "eval" / "tiny_set-"))  # SME_QA_CACHE, not vectors/
    assert (report["n"], report["unanswerable"]) == (3, 0)
    assert report["index"]["articles_added"] == 3
    for mode in ("lexical", "hybrid"):
        assert report["modes"][mode]["recall"] == {"1": 1.0, "3": 1.0}
        assert report["modes"][mode]["mrr@10"] == 1.0 and report["modes"][mode]["misses@5"] == []
    assert {"lexical", "hybrid"} <= set(stages)
    table = format_report(report).splitlines()
    assert table[0] == f"{bench / 'questions.jsonl'}: 3 answerable questions"
    assert table[3].startswith("| lexical | 1.000 | 1.000 | 1.000 |")
    again = run_eval(bench / "questions.jsonl", ks=(1,), modes=("dense",))
    assert again["index"]["written"] is False  # the cached eval index is reused
