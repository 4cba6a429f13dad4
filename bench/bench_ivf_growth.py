"""How far an IVF store may grow past the vectors it was trained on before it is re-trained.

    .venv/bin/python bench/bench_ivf_growth.py [--base 250000] [--factors 1,1.05,1.1,1.25,1.5,2,3] [--queries 200]

The store (``FaissStore`` as the indexer builds it: IVF, 8-bit codes, ~2·√n lists, 1/16 of
them probed) is trained on ``--base`` synthetic vectors (unit vectors near 2,000 random
centres, as in bench_scale.py), then vectors are added in place up to each growth factor,
with no re-training, as ``sme-qa index`` does between re-trainings.  Two kinds of growth:

* ``same``: the new vectors are drawn like the old ones (more articles on the same topics);
* ``shifted``: half of them come from 500 centres the training never saw (new topics).

For each factor it prints recall@10 against exact inner-product search (numpy, over the
vectors as made) for queries drawn like the new vectors, one-query search p50 in ms, the
codes a search scans (the probed lists' lengths), the share of the vectors added that the
store's rule counts as misfits (``FaissStore.misfits``) and whether its rule
(``can_update``) would still add in place, and the same for a store re-trained at that
size, with the training time a re-training costs.  ``faiss_store.RETRAIN_GROWTH`` is the
factor this bench supports: recall held and the search cost grown no more than that factor.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from bench_scale import synthetic_vectors  # beside this file

from sme_qa.faiss_store import FaissStore


def exact_top10(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    best_s = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 10), dtype=np.int64)
    for lo in range(0, len(vectors), 100_000):
        s = queries @ vectors[lo : lo + 100_000].T
        both_s = np.concatenate([best_s, s], axis=1)
        both_i = np.concatenate([best_i, np.broadcast_to(np.arange(lo, lo + s.shape[1]), s.shape)], axis=1)
        top = np.argsort(-both_s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(both_s, top, 1), np.take_along_axis(both_i, top, 1)
    return best_i


def measure(store: FaissStore, queries: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """(recall@10, one-query search p50 ms, codes scanned per search)."""
    got = store.search(queries, 10)[1]
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), truth.tolist())]))
    times = []
    for q in queries[:100]:
        t0 = time.perf_counter()
        store.search(q[None, :], 10)
        times.append(time.perf_counter() - t0)
    index = store.index
    sizes = np.array([index.invlists.list_size(i) for i in range(index.nlist)])
    # the lists a query probes are its nearest centroids: the scanned codes follow the data
    _, probed = index.quantizer.search(queries, index.nprobe)
    scanned = float(sizes[probed].sum(axis=1).mean())
    return recall, float(np.percentile(times, 50)) * 1000, scanned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=int, default=250_000, help="vectors the store is trained on")
    ap.add_argument("--factors", default="1,1.05,1.1,1.25,1.5,2,3")
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    factors = [float(f) for f in args.factors.split(",")]
    total = int(args.base * max(factors))
    centres = synthetic_vectors(2000, "random", 1)
    unseen = synthetic_vectors(500, "random", 5)
    print(f"IVF growth without re-training: trained on {args.base:,} vectors, load {os.getloadavg()[0]:.1f}")
    print(
        "| growth | new vectors | n | misfits / trained | kept by the rule | recall@10 | search p50 ms | codes scanned"
        " | re-trained: recall@10 | p50 ms | codes scanned | train+add s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for mode in ("same", "shifted"):
        base = synthetic_vectors(args.base, "clustered", 2, centres)
        extra = synthetic_vectors(total - args.base, "clustered", 4, centres)
        if mode == "shifted":
            half = len(extra) // 2
            extra[:half] = synthetic_vectors(half, "clustered", 6, unseen)
            np.random.default_rng(7).shuffle(extra)
        vectors = np.concatenate([base, extra])
        del base, extra
        store = FaissStore.build(384, "ivf", vectors[: args.base], np.arange(args.base, dtype=np.int64))
        have = args.base
        rng = np.random.default_rng(3)
        for f in factors:
            n = int(args.base * f)
            if n > have:
                store.misfit_count += store.misfits(vectors[have:n])  # as the indexer counts them
                store.add(np.arange(have, n, dtype=np.int64), vectors[have:n])
                have = n
            # queries drawn like what the store now holds
            pick = vectors[rng.integers(0, n, args.queries)]
            queries = pick + 0.05 * rng.standard_normal(pick.shape, dtype=np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            truth = exact_top10(queries, vectors[:n])
            recall, p50, scanned = measure(store, queries, truth)
            t0 = time.perf_counter()
            fresh = FaissStore.build(384, "ivf", vectors[:n], np.arange(n, dtype=np.int64))
            build = time.perf_counter() - t0
            r2, p2, s2 = measure(fresh, queries, truth)
            del fresh
            share = store.misfit_count / store.trained_on
            kept = "yes" if store.can_update(n) else "no: re-train"
            print(
                f"| {f:g}× | {mode} | {n:,} | {share:.3f} | {kept} | {recall:.3f} | {p50:.1f} | {scanned:,.0f}"
                f" | {r2:.3f} | {p2:.1f} | {s2:,.0f} | {build:.1f} |"
            )
            sys.stdout.flush()
        del store, vectors


if __name__ == "__main__":
    main()
