"""Latency of warm extractive answers: ``Searcher.ask(question, llm=False)``.

The searcher is loaded and warmed on a few questions that are not measured; each measured
question is then asked once (its embedding is computed: "first ask") and once more (the
searcher's query cache answers the embedding: "repeat").  ``compose`` is everything after
retrieval: sentence scoring, the refusal decision, conflicts, the text.

    .venv/bin/python bench/bench_answer.py                      # sample index built in a temp dir
    .venv/bin/python bench/bench_answer.py --vectors DIR --cmrc 500
    .venv/bin/python bench/bench_answer.py --cmrc-index DIR     # cmrc passages as the corpus
    .venv/bin/python bench/bench_answer.py --build-cmrc-index   # build that index first (~1 min of embedding)
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"
WARMUP = ["专精特新企业有什么特点？", "What is a little giant enterprise?", "联想集团做了什么？"]


def run(searcher, rows: list[dict]) -> dict[str, object]:
    """Ask each row's question; ``hold``: answered with a quote holding one of its answers."""
    from sme_qa.text import compact

    first, repeat, retrieve, compose, answered, hold = [], [], [], [], 0, 0
    for row in rows:
        q = row["question"]
        t = time.perf_counter()
        a = searcher.ask(q, llm=False)
        first.append((time.perf_counter() - t) * 1000)
        retrieve.append(a.timings["retrieve_ms"])
        compose.append(a.timings["total_ms"] - a.timings["retrieve_ms"])
        answered += a.answered
        hold += a.answered and any(compact(x) in compact(c.quote) for x in row.get("answers", ()) for c in a.citations)
        t = time.perf_counter()
        searcher.ask(q, llm=False)
        repeat.append((time.perf_counter() - t) * 1000)

    def pct(xs: list[float]) -> str:
        return f"{np.percentile(xs, 50):6.1f} / {np.percentile(xs, 95):6.1f}"

    n = max(len(rows), 1)
    return {
        "n": len(rows),
        "answered": answered / n,
        "hold": hold / n,
        "first": pct(first),
        "repeat": pct(repeat),
        "retrieve": pct(retrieve),
        "compose": pct(compose),
    }


def table(rows: list[tuple[str, dict]]) -> None:
    head = f"{'set':<31}{'n':>5}{'answered':>9}{'quoted':>8}   {'first ask':>15}   {'repeat ask':>15}   {'retrieve':>15}   {'compose':>15}"
    print(head + "\n" + " " * 56 + "  ms p50 / p95" * 4)
    for name, r in rows:
        print(
            f"{name:<31}{r['n']:>5}{r['answered']:>9.1%}{r['hold']:>8.1%}   {r['first']:>15}   {r['repeat']:>15}   "
            f"{r['retrieve']:>15}   {r['compose']:>15}"
        )
    print("answered: share not declined; quoted: share answered with a cited sentence holding an answer string")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vectors", help="an index of the sample corpus (default: build one in a temp dir)")
    ap.add_argument("--cmrc", type=int, default=300, help="how many cmrc2018_dev questions to ask (0 = all)")
    ap.add_argument("--cmrc-index", help="an index built from cmrc2018_dev/passages.jsonl")
    ap.add_argument("--build-cmrc-index", action="store_true", help="build that index in a temp dir first")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from sme_qa.indexing import build_index
    from sme_qa.search import load

    seed = [json.loads(line) for line in (EVAL / "seed_qa.jsonl").read_text(encoding="utf-8").splitlines() if line]
    cmrc = [json.loads(line) for line in (EVAL / "cmrc2018_dev" / "questions.jsonl").open(encoding="utf-8")]
    cmrc = cmrc[: args.cmrc] if args.cmrc else cmrc
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        vectors = args.vectors or str(Path(tmp) / "sample")
        if not args.vectors:
            build_index(ROOT / "corpus", vectors)
        searcher = load(vectors)
        for q in WARMUP:
            searcher.ask(q, llm=False)
        rows.append(("seed questions, sample index", run(searcher, seed)))
        off_corpus = [{"question": r["question"]} for r in cmrc]  # no answer can be right here
        rows.append(("cmrc questions, sample index", run(searcher, off_corpus)))
        cmrc_vectors = args.cmrc_index
        if args.build_cmrc_index:
            cmrc_vectors = str(Path(tmp) / "cmrc")
            started = time.perf_counter()
            build_index(EVAL / "cmrc2018_dev" / "passages.jsonl", cmrc_vectors)
            print(f"built the cmrc index in {time.perf_counter() - started:.0f} s")
        if cmrc_vectors:
            other = load(cmrc_vectors)
            for q in WARMUP:
                other.ask(q, llm=False)
            rows.append(("cmrc questions, cmrc index", run(other, cmrc)))
    table(rows)


if __name__ == "__main__":
    main()
