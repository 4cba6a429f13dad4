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
