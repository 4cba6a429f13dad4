"""Reciprocal rank fusion on hand-made rankings: the arithmetic can be checked by hand."""

import pytest

from sme_qa.fusion import convex, minmax, rrf


def test_rrf_scores_are_the_sum_of_reciprocal_ranks():
    fused = rrf({"dense": ["a", "b", "c"], "lexical": ["b", "d"]}, k=60)
    scores = {f.key: f.score for f in fused}
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["a"] == pytest.approx(1 / 61)
    assert scores["d"] == pytest.approx(1 / 62)
    assert scores["c"] == pytest.approx(1 / 63)
    assert [f.key for f in fused] == ["b", "a", "d", "c"]
    assert fused[0].ranks == {"dense": 2, "lexical": 1}
    assert fused[1].ranks == {"dense": 1}


def test_weights_and_depth():
    fused = rrf({"dense": ["a", "b"], "lexical": ["b", "a"]}, weights={"dense": 2.0, "lexical": 1.0}, k=0)
    # a: 2/1 + 1/2 = 2.5 ; b: 2/2 + 1/1 = 2.0
    assert [(f.key, f.score) for f in fused] == [("a", 2.5), ("b", 2.0)]
    shallow = rrf({"dense": ["a", "b", "c"], "lexical": ["c"]}, depth=1, k=0)
    assert {f.key for f in shallow} == {"a", "c"}


def test_ties_break_by_best_single_rank_then_deterministically():
    fused = rrf({"dense": ["x", "y"], "lexical": ["y", "x"]}, k=60)
    assert fused[0].score == fused[1].score
    assert [f.key for f in fused] == ["x", "y"]  # equal best rank 1: dense leg first


def test_repeated_key_in_one_leg_counts_once_and_empty_input():
    fused = rrf({"dense": ["a", "a", "b"]}, k=0)
    assert [(f.key, f.score) for f in fused] == [("a", 1.0), ("b", 1 / 3)]
    assert rrf({}) == []
    assert rrf({"dense": []}) == []


def test_minmax_and_convex_by_hand():
    assert minmax({"a": 2.0, "b": 4.0, "c": 3.0}) == {"a": 0.0, "b": 1.0, "c": 0.5}
    assert minmax({"a": 7.0}) == {"a": 1.0}
    assert minmax({}) == {}
    fused = convex(
        {"dense": {"a": 1.0, "b": 0.5}, "lexical": {"b": 1.0, "c": 0.25}},
        {"dense": 0.4, "lexical": 0.6},
    )
    # a: .4 ; b: .2 + .6 = .8 ; c: .15
    assert [f.key for f in fused] == ["b", "a", "c"]
    assert [f.score for f in fused] == pytest.approx([0.8, 0.4, 0.15])
    assert fused[0].ranks == {"dense": 2, "lexical": 1}
    assert fused[2].ranks == {"lexical": 2}


def test_signals_by_hand():
    from sme_qa.fusion import signals

    dense = [("a", 0.90), ("b", 0.85)]
    lexical = [("a", 12.0), ("c", 3.0)]
    s = signals("青岛目前有多少家专精特新“小巨人”企业？", dense, lexical)
    assert not s.english and not s.keyword and not s.traditional and s.agree
    assert s.lexical_margin == pytest.approx(0.75) and s.dense_margin == pytest.approx(0.05)
    assert signals("How many little giants has China cultivated?", dense, []).english
    assert signals("非洲气候带", dense, lexical).keyword  # typed like a search box
    assert signals("陸特和漢斯雷頓開創了哪一地區對梵語的學術研究？", dense, lexical).traditional
    empty = signals("问题？", [], [])
    assert empty.lexical_margin == 0.0 and empty.dense_margin == 0.0 and not empty.agree


def test_dense_weight_follows_the_signals():
    from sme_qa.fusion import Adaptive, Signals, dense_weight

    p = Adaptive(base=0.4, keyword=0.2, traditional=0.1, lexical_margin=0.2, dense_margin=2.0, agree=0.0, english=0.85, lo=0.05, hi=0.95)
    plain = Signals(english=False, keyword=False, traditional=False, lexical_margin=0.5, dense_margin=0.05, agree=True)
    assert dense_weight(plain, p) == pytest.approx(0.4 - 0.1 + 0.1)
    from dataclasses import replace

    assert dense_weight(replace(plain, keyword=True), p) == pytest.approx(0.6)
    assert dense_weight(replace(plain, traditional=True), p) == pytest.approx(0.3)
    assert dense_weight(replace(plain, english=True), p) == 0.85
    assert dense_weight(replace(plain, dense_margin=5.0), p) == 0.95  # clipped
    assert dense_weight(replace(plain, lexical_margin=10.0), p) == 0.05


def test_english_question_is_not_drowned_by_the_lexical_leg():
    """An English question's lexical leg matches only its Latin tokens ("50", a name): it must not
    outvote the dense leg's cross-lingual match, as the fixed 0.4/0.6 fusion let it."""
    from sme_qa.fusion import ADAPTIVE, dense_weight, signals

    dense = [("right", 0.86), ("wrong", 0.83), ("other", 0.80)]
    lexical = [("wrong", 9.0), ("other", 2.0)]
    question = "Which team won Super Bowl 50?"

    def top(w: float) -> str:
        scored = {"dense": minmax(dict(dense)), "lexical": minmax(dict(lexical))}
        return convex(scored, {"dense": w, "lexical": 1 - w})[0].key

    assert top(0.4) == "wrong"
    w = dense_weight(signals(question, dense, lexical))
    assert w == ADAPTIVE.english and top(w) == "right"
