"""How the fusion defaults were chosen: every variant on every eval set, one table.

    .venv/bin/python bench/tune_fusion.py [SET ...]      (default: the three benchmark sets)

Each leg is run once per question (top 50 with scores); the variants are then
computed from those lists, so trying a fusion costs no retrieval.  The indexes are the
ones ``sme-qa eval`` builds (in the user cache), built here if missing.
"""

from __future__ import annotations

import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"
DEPTH = 50


def legs_for(set_name: str):
    from sme_qa.evaluate import _resolve, read_questions
    from sme_qa.indexing import build_index
    from sme_qa.search import Searcher
    from sme_qa.settings import Settings

    qpath = EVAL / set_name / "questions.jsonl"
    corpus, vectors = _resolve(qpath, None, None, True)
    build_index(corpus, vectors)
    searcher = Searcher(Settings.load(corpus=corpus, vectors=vectors))
    questions = read_questions(qpath)
    searcher.embed_queries([q["question"] for q in questions])
    chunks = searcher.state.generation.chunks
    out = []
    for q in questions:
        legs = {}
        for mode in ("dense", "lexical"):
            hits = searcher.retrieve(q["question"], DEPTH, mode=mode)
            legs[mode] = [(h.chunk_id, h.doc_id, h.dense_score if mode == "dense" else h.lexical_score) for h in hits]
        out.append((set(q["gold_pids"]), legs))
    return out, len(chunks)


def rrf(legs, w_dense=1.0, w_lex=1.0, k=60):
    scores: dict[str, float] = {}
    doc = {}
    for leg, w in (("dense", w_dense), ("lexical", w_lex)):
        for r, (cid, did, _) in enumerate(legs[leg], 1):
            scores[cid] = scores.get(cid, 0) + w / (k + r)
            doc[cid] = did
    return [doc[c] for c in sorted(scores, key=lambda c: -scores[c])]


def convex(legs, alpha=0.4):
    """alpha·minmax(cosine) + (1-alpha)·minmax(BM25) over the union: the library's fusion."""
    from sme_qa.fusion import convex as fuse, minmax

    doc = {c: d for leg in legs.values() for c, d, _ in leg}
    scored = {leg: minmax({c: s for c, _, s in hits}) for leg, hits in legs.items()}
    return [doc[f.key] for f in fuse(scored, {"dense": alpha, "lexical": 1 - alpha})]


def single(legs, leg):
    return [d for _, d, _ in legs[leg]]


def metrics(runs):
    r1 = r5 = mrr = 0.0
    for gold, docs in runs:
        rank = next((i for i, d in enumerate(docs[:10], 1) if d in gold), None)
        r1 += rank == 1
        r5 += rank is not None and rank <= 5
        mrr += 1 / rank if rank else 0
    n = len(runs)
    return r1 / n, r5 / n, mrr / n


VARIANTS = {
    "dense": lambda l: single(l, "dense"),
    "lexical": lambda l: single(l, "lexical"),
    "rrf k=60 1:1": lambda l: rrf(l),
    "rrf k=60 1:2": lambda l: rrf(l, 1, 2),
    "rrf k=10 1:2": lambda l: rrf(l, 1, 2, 10),
    "rrf k=60 1:1.5": lambda l: rrf(l, 1, 1.5),
    "convex 0.3 dense + 0.7 lexical": lambda l: convex(l, 0.3),
    "convex 0.4 + 0.6 (default)": lambda l: convex(l, 0.4),
    "convex 0.5 + 0.5": lambda l: convex(l, 0.5),
}


def main() -> None:
    sets = sys.argv[1:] or ["cmrc2018_dev", "xquad_zh", "drcd_dev"]
    table = {}
    for s in sets:
        data, _ = legs_for(s)
        table[s] = {name: metrics([(g, fn(l)) for g, l in data]) for name, fn in VARIANTS.items()}
    print("| variant | " + " | ".join(f"{s} R@1 / R@5 / MRR@10" for s in sets) + " |")
    print("|---|" + "---|" * len(sets))
    for name in VARIANTS:
        print(f"| {name} | " + " | ".join("{:.3f} / {:.3f} / {:.3f}".format(*table[s][name]) for s in sets) + " |")


if __name__ == "__main__":
    main()
