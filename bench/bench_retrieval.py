"""Warm retrieval latency: real questions on a real index, then synthetic 100k and 1M chunk indexes.

    .venv/bin/python bench/bench_retrieval.py [--sizes 100000,1000000] [--queries 300]

1. Builds (or reuses) the index of ../shared/eval/cmrc2018_dev/passages.jsonl and times
   ``Searcher.retrieve`` (hybrid, k=5) over its 3,219 questions: p50/p95/mean.
2. For each synthetic size: chunk texts are real cmrc sentences recombined, BM25 counts
   are those of real text (tiled), vectors are random unit vectors (embedding 1M chunks
   is out of reach here), written with the real store and searched with the real
   Searcher; queries are real cmrc questions.  Prints one table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval" / "cmrc2018_dev"


def emit(r: tuple) -> None:
    """Print one table row as soon as it is measured."""
    print(f"| {r[0]} | {r[1]:,} | {r[2]} | {r[3]} | {r[4]} | {r[5]:.1f} | {r[6]:.1f} | {r[7]:.1f} |", flush=True)


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ms = sorted(s * 1000 for s in samples)
    return ms[len(ms) // 2], ms[min(len(ms) - 1, int(len(ms) * 0.95))], statistics.fmean(ms)


def time_queries(searcher, questions: list[str], **options) -> list[float]:
    searcher.retrieve(questions[0], 5, **options)  # warm
    out = []
    for q in questions:
        t0 = time.perf_counter()
        searcher.retrieve(q, 5, **options)
        out.append(time.perf_counter() - t0)
    return out


def synthetic_index(size: int, directory: Path, index_type: str) -> float:
    """Write a ``size``-chunk generation with the real store; returns build seconds."""
    import scipy.sparse as sp

    from sme_qa.lexical import TermTable, Tokenizer, count_matrix
    from sme_qa.store import build_faiss, write_generation
    from sme_qa.text import split_sentences

    rng = random.Random(0)
    sentences = [s for line in EVAL.joinpath("passages.jsonl").open() for s in split_sentences(json.loads(line)["text"]) if len(s) > 8]
    base = min(size, 20_000)
    texts = ["".join(rng.choice(sentences) for _ in range(4)) for _ in range(base)]
    table = TermTable()
    tokenizer = Tokenizer()
    tf = count_matrix([tokenizer.tokens(t) for t in texts], table)
    tf = sp.vstack([tf] * (size // base) + ([tf[: size % base]] if size % base else []), format="csr")
    t0 = time.perf_counter()
    vectors = np.random.default_rng(0).standard_normal((size, 384), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = build_faiss(vectors, index_type)
    build = time.perf_counter() - t0
    docs = [{"id": f"d{i}", "title": f"doc {i}", "paragraphs": [], "date": None, "source": None} for i in range(size // 10 + 1)]
    chunks = [
        {
            "id": f"d{i // 10}:p{i % 10 + 1}",
            "doc_id": f"d{i // 10}",
            "text": texts[i % base],
            "paragraphs": [i % 10 + 1] * 2,
            "start": 0,
            "end": 0,
            "hash": str(i),
            "input_hash": str(i),
            "lexical_hash": str(i),
            "title": "",
            "vid": i,
        }
        for i in range(size)
    ]
    manifest = {"config": {"model": "intfloat/multilingual-e5-small"}, "fingerprint": _fingerprint(), "counts": {}}
    lexical = {"terms": table.terms, "vocabulary": [], "k1": 1.2, "b": 0.75}
    write_generation(directory, manifest, index, chunks, docs, tf, lexical)
    return build


def _fingerprint() -> str:
    from sme_qa.bundled import weights_fingerprint

    return weights_fingerprint()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=300, help="questions timed per synthetic size")
    ap.add_argument("--skip-real", action="store_true")
    args = ap.parse_args()

    from sme_qa.indexing import build_index
    from sme_qa.search import load
    from sme_qa.settings import Settings

    questions = [json.loads(l)["question"] for l in EVAL.joinpath("questions.jsonl").open()]
    print("| corpus | chunks | index | mode | index build s | p50 ms | p95 ms | mean ms |")
    print("|---|---|---|---|---|---|---|---|", flush=True)

    if not args.skip_real:
        vectors = Settings.load().cache_dir / "eval" / "bench-cmrc2018_dev"
        build_index(EVAL / "passages.jsonl", vectors)
        searcher = load(vectors)
        searcher.embed_queries(questions)  # time retrieval, not first-time query embedding
        n = searcher.manifest["counts"]["chunks"]
        for mode in ("hybrid", "dense", "lexical"):
            p50, p95, mean = percentiles(time_queries(searcher, questions, mode=mode))
            emit((f"cmrc2018_dev ({len(questions)} q, cached query vectors)", n, "flat", mode, "-", p50, p95, mean))
        cold = load(vectors)
        cold.retrieve(questions[0])
        p50, p95, mean = percentiles(time_queries(cold, questions[:300]))
        emit(("cmrc2018_dev incl. query embedding (300 q)", n, "flat", "hybrid", "-", p50, p95, mean))

    for size in [int(s) for s in args.sizes.split(",") if s]:
        for kind in ["flat"] if size <= 200_000 else ["flat", "ivf"]:
            with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
                build = synthetic_index(size, Path(tmp) / "v", kind)
                searcher = load(Path(tmp) / "v")
                qs = questions[: args.queries]
                searcher.embed_queries(qs)
                p50, p95, mean = percentiles(time_queries(searcher, qs))
                emit((f"synthetic ({len(qs)} q, cached query vectors)", size, kind, "hybrid", f"{build:.1f}", p50, p95, mean))
                del searcher
            print(f"done {size} {kind}", file=sys.stderr)


if __name__ == "__main__":
    main()
