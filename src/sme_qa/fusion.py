"""Rank fusion: pure functions over ranked lists of keys.

Reciprocal rank fusion (Cormack et al. 2009): score(d) = Σ_leg w_leg / (k + rank_leg(d)).
BM25 and cosine live on different scales, so ranks, not scores, are fused.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Fused:
    key: Hashable
    score: float
    ranks: dict[str, int] = field(default_factory=dict)  # leg → 1-based rank


def rrf(
    rankings: Mapping[str, Sequence[Hashable]],
    weights: Mapping[str, float] | None = None,
    k: float = 60.0,
    depth: int | None = None,
) -> list[Fused]:
    """Fuse ranked lists (best first) by weighted reciprocal rank.

    Only the first ``depth`` items of each list count.  Ties break by the best
    single rank, then by leg order, so the result is deterministic.
    """
    weights = weights or {}
    scores: dict[Hashable, float] = {}
    ranks: dict[Hashable, dict[str, int]] = {}
    for leg, ranked in rankings.items():
        w = weights.get(leg, 1.0)
        seen: set[Hashable] = set()
        for rank, key in enumerate(ranked[:depth] if depth else ranked, start=1):
            if key in seen:  # a leg that repeats a key counts it once, at its best rank
                continue
            seen.add(key)
            scores[key] = scores.get(key, 0.0) + w / (k + rank)
            ranks.setdefault(key, {})[leg] = rank
    order = sorted(scores, key=lambda key: (-scores[key], min(ranks[key].values())))
    return [Fused(key, scores[key], ranks[key]) for key in order]


def minmax(scores: Mapping[Hashable, float]) -> dict[Hashable, float]:
    """Scale to [0, 1] over the list (all equal → all 1)."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    span = hi - lo
    return {key: (s - lo) / span if span > 0 else 1.0 for key, s in scores.items()}


def convex(
    scored: Mapping[str, Mapping[Hashable, float]],
    weights: Mapping[str, float],
    order: Sequence[Hashable] | None = None,
) -> list[Fused]:
    """Weighted sum of per-leg scores already on a common [0, 1] scale (a missing key scores 0).

    ``Fused.ranks`` holds each leg's rank by its own score.  Ties keep ``order`` (or leg order).
    """
    ranks: dict[Hashable, dict[str, int]] = {}
    total: dict[Hashable, float] = {}
    for leg, scores in scored.items():
        w = weights.get(leg, 1.0)
        for rank, key in enumerate(sorted(scores, key=lambda k: -scores[k]), start=1):
            ranks.setdefault(key, {})[leg] = rank
            total[key] = total.get(key, 0.0) + w * scores[key]
    position = {key: i for i, key in enumerate(order or ranks)}
    keys = sorted(total, key=lambda key: (-total[key], position.get(key, len(position))))
    return [Fused(key, total[key], ranks[key]) for key in keys]
