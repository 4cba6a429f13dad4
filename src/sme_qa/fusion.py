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
