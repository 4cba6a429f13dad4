"""Rank fusion: pure functions over ranked lists of keys.

Reciprocal rank fusion (Cormack et al. 2009): score(d) = Σ_leg w_leg / (k + rank_leg(d)).
BM25 and cosine live on different scales, so ranks, or min-max normalised scores, are fused
(``convex``).  How much each leg counts depends on the question (``signals``, ``dense_weight``):
English questions and search-box keyword queries lean on the dense leg, questions written with
the passage's own words on the lexical one.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Fused(Generic[K]):
    key: K
    score: float
    ranks: dict[str, int] = field(default_factory=dict)  # leg → 1-based rank


def rrf(
    rankings: Mapping[str, Sequence[K]],
    weights: Mapping[str, float] | None = None,
    k: float = 60.0,
    depth: int | None = None,
) -> list[Fused[K]]:
    """Fuse ranked lists (best first) by weighted reciprocal rank.

    Only the first ``depth`` items of each list count.  Ties break by the best
    single rank, then by leg order, so the result is deterministic.
    """
    weights = weights or {}
    scores: dict[K, float] = {}
    ranks: dict[K, dict[str, int]] = {}
    for leg, ranked in rankings.items():
        w = weights.get(leg, 1.0)
        seen: set[K] = set()
        for rank, key in enumerate(ranked[:depth] if depth else ranked, start=1):
            if key in seen:  # a leg that repeats a key counts it once, at its best rank
                continue
            seen.add(key)
            scores[key] = scores.get(key, 0.0) + w / (k + rank)
            ranks.setdefault(key, {})[leg] = rank
    order = sorted(scores, key=lambda key: (-scores[key], min(ranks[key].values())))
    return [Fused(key, scores[key], ranks[key]) for key in order]


def minmax(scores: Mapping[K, float]) -> dict[K, float]:
    """Scale to [0, 1] over the list (all equal → all 1)."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    span = hi - lo
    return {key: (s - lo) / span if span > 0 else 1.0 for key, s in scores.items()}


def convex(
    scored: Mapping[str, Mapping[K, float]],
    weights: Mapping[str, float],
    order: Sequence[K] | None = None,
) -> list[Fused[K]]:
    """Weighted sum of per-leg scores already on a common [0, 1] scale (a missing key scores 0).

    ``Fused.ranks`` holds each leg's rank by its own score.  Ties keep ``order`` (or leg order).
    """
    ranks: dict[K, dict[str, int]] = {}
    total: dict[K, float] = {}
    for leg, scores in scored.items():
        w = weights.get(leg, 1.0)
        for rank, key in enumerate(sorted(scores, key=lambda k: -scores[k]), start=1):
            ranks.setdefault(key, {})[leg] = rank
            total[key] = total.get(key, 0.0) + w * scores[key]
    position = {key: i for i, key in enumerate(order or ranks)}
    keys = sorted(total, key=lambda key: (-total[key], position.get(key, len(position))))
    return [Fused(key, total[key], ranks[key]) for key in keys]


# ------------------------------------------------------------ query-adaptive weights


@dataclass(frozen=True)
class Signals:
    """What is known about a question at query time, before fusing its two legs."""

    english: bool  # no Han character: only the dense leg can match Chinese text across languages
    keyword: bool  # typed like a search box (「非洲气候带」, 「小米6防水等级」): short, no question mark
    traditional: bool  # traditional characters: the dense leg is weaker on them (drcd_dev), BM25 folds them
    lexical_margin: float  # (BM25 top 1 − top 2) / top 1: how sure the lexical leg is
    dense_margin: float  # cosine top 1 − top 2
    agree: bool  # both legs rank the same key first
    translated: bool = False  # an English question whose lexical leg also searched Chinese words (crosslingual.py)


@dataclass(frozen=True)
class Adaptive:
    """dense weight = base + keyword·[keyword] − traditional·[traditional] − lexical_margin·margin_lex
    + dense_margin·margin_dense + agree·[legs agree], clipped to [lo, hi]; English questions get ``english``."""

    base: float = 0.4
    keyword: float = 0.0
    traditional: float = 0.0
    lexical_margin: float = 0.0
    dense_margin: float = 0.0
    agree: float = 0.0
    english: float = 0.9
    lo: float = 0.05
    hi: float = 0.95


# Fitted by ``bench/tune_fusion.py --fit`` (README "Retrieval quality"): base and keyword on
# cmrc2018_dev + dureader_mix (dureader_demo's search queries among xquad_zh's passages),
# english on the odd-numbered half of xquad_en2zh; xquad_zh, drcd_dev and the other half of
# xquad_en2zh were not looked at.  The margin, agreement and traditional-character signals
# gained under 0.001 (R@5 + MRR@10) on the fit sets, so they stay 0.
# An English question whose lexical leg found Chinese words to search (``translated``) is fused
# like a Chinese question (the same formula, not ``english``): its lexical leg reads Chinese
# words now.  Nothing was fitted for it (the public English set rarely names a glossary term or a
# pinyin name: 7 of xquad_en2zh's 612 questions get Chinese words, Manning → 曼宁 …); xquad_en2zh
# hybrid R@1 / R@5 / MRR@10 were checked not to drop (README "English questions, lexical leg").
ADAPTIVE = Adaptive(base=0.45, keyword=0.3, english=0.85)

_HAN = re.compile(r"[\u3400-\u9fff]")
KEYWORD_CHARS = 16  # a query this short without a question mark is a search-box query


def signals(question: str, dense: Sequence[Sequence[Any]], lexical: Sequence[Sequence[Any]], *, translated: bool = False) -> Signals:
    """Signals from the question and each leg's ranked ``(key, …, score)`` rows, best first."""
    from .text import has_traditional

    def margin(rows: Sequence[Sequence[Any]], relative: bool) -> float:
        if not rows:
            return 0.0
        top = float(rows[0][-1])
        second = float(rows[1][-1]) if len(rows) > 1 else 0.0
        if relative:
            return (top - second) / top if top > 0 else 0.0
        return top - second

    compact = "".join(question.split())
    return Signals(
        english=not _HAN.search(question),
        keyword=len(compact) <= KEYWORD_CHARS and not compact.endswith(("？", "?")),
        traditional=has_traditional(question),
        lexical_margin=margin(lexical, True),
        dense_margin=margin(dense, False),
        agree=bool(dense) and bool(lexical) and dense[0][0] == lexical[0][0],
        translated=translated,
    )


def dense_weight(s: Signals, p: Adaptive = ADAPTIVE) -> float:
    """The dense leg's weight in the convex fusion for a question with signals ``s``."""
    if s.english and not s.translated:
        return p.english
    w = (
        p.base
        + p.keyword * s.keyword
        - p.traditional * s.traditional
        - p.lexical_margin * s.lexical_margin
        + p.dense_margin * s.dense_margin
        + p.agree * s.agree
    )
    return min(p.hi, max(p.lo, w))
