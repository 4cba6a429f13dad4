"""Answer quality of the shipped reader beside the previous hand-weighted heuristics.

For every set the reader never saw in training (it is fitted on cmrc2018_dev + drcd_dev only)
each question is asked through the real pipeline (index, hybrid retrieval, reader, composer)
and scored by the eval README's rule: correct = answered, a citation is a gold passage, the
text holds a gold answer.  Also printed: declined, span exact match / character F1 of the bold
short answer (0 when none is shown), and ask latency.  Sets:

* xquad_zh, xquad_en2zh: their own passages;
* dureader_demo: its 99 passages mixed into xquad_zh's (a corpus of 339);
* seed_qa + seed_unanswerable, and tests/data's near-topic and English questions: the sample corpus (``corpus/``);
* off-corpus: the cmrc2018_dev questions asked of the sample corpus (all should be declined), and
  the English questions of xquad_en2zh asked of it (``offcorpus_en``: the same, in English);
* content-free inputs (emoji, punctuation, SQL, zero-width spaces).

"heuristic" is the reader of v0.1 re-created from the same features: sentence score =
coverage + 0.3·passage score + 0.25·typed − 0.3·short, answered when
σ(−132 + 148·top dense + 8·coverage) > ½ (its constants were fitted by the old
bench/calibrate_refusal.py), no short answer.

    .venv/bin/python bench/bench_reader.py               # all sets (indexes cached under the sme-qa cache dir)
    .venv/bin/python bench/bench_reader.py --limit 200   # the first 200 questions of each set
    .venv/bin/python bench/bench_reader.py --sets seed --readers reader
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

CONTENT_FREE = ["🚀🔥💯🤖", "'; DROP TABLE articles; --", "？！。，、……", "\u200b\u200b\u200b", "   ...   ", "<script>alert(1)</script>"]


def rows_of(path: Path, limit: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    return rows[:limit] if limit else rows


def searcher_for(name: str):
    """The searcher over a public set's cached index (bench/eval_sets.py builds it once)."""
    from eval_sets import ensure_index

    from sme_qa.search import Searcher
    from sme_qa.settings import Settings

    corpus, _, vectors = ensure_index(name)
    return Searcher(Settings.load(corpus=corpus, vectors=vectors))


# ------------------------------------------------------------ the v0.1 heuristic, for comparison


def heuristic_ask(searcher):
    """ask(question) with the v0.1 sentence score and refusal rule, on today's retrieval and composer."""
    from sme_qa import reader as R
    from sme_qa import reading_features as F
    from sme_qa.compose import choose, compose_answer, compose_decline
    from sme_qa.question import analyse_with
    from sme_qa.records import Answer

    def ask(text: str):
        view = searcher.view()
        q = analyse_with(view, text)
        hits = searcher.retrieve(q.text, 5) if q.text else []
        sents = F.sentences(hits)
        if not sents:
            t, near = compose_decline(q, hits)
            return Answer(q.text, t, answered=False, near_misses=near)
        cols = F.sentence_features(q, hits, sents, view.places)
        score = cols["coverage"] + 0.3 * cols["passage_score"] + 0.25 * cols["typed"] - 0.3 * cols["short"]
        order = np.argsort(-score, kind="stable")
        cands = [
            R.Candidate(
                sents[i].hit,
                sents[i].passage,
                sents[i].start,
                sents[i].end,
                sents[i].quote,
                sents[i].paragraph,
                sents[i].index,
                float(cols["coverage"][i]),
                0.0,
                False,
                float(score[i]),
            )
            for i in order
        ]
        dense = max((h.dense_score for h in hits if h.dense_score is not None), default=0.0)
        p = 1 / (1 + np.exp(-(-132 + 148 * dense + 8 * float(cols["coverage"].max()))))
        if p <= 0.5:
            t, near = compose_decline(q, hits)
            return Answer(q.text, t, answered=False, near_misses=near)
        t, citations = compose_answer(q, choose(cands, 0.9))  # v0.1 quoted sentences within 0.9 of the best
        return Answer(q.text, t, citations)

    return ask


# ------------------------------------------------------------ the table


def measure(name: str, rows: list[dict], ask) -> dict:
    from sme_qa.evaluate import answer_metrics

    for r in rows[:3]:  # warm caches (jieba, model, tags) outside the timings
        ask(r["question"])
    return answer_metrics(rows, ask)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, help="first N questions of each benchmark set")
    ap.add_argument("--sets", default="xquad_zh,dureader,xquad_en2zh,seed,offcorpus,offcorpus_en,contentfree")
    ap.add_argument("--readers", default="reader,heuristic")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from sme_qa.indexing import build_index
    from sme_qa.search import Searcher
    from sme_qa.settings import Settings

    sets = args.sets.split(",")
    readers = args.readers.split(",")
    results: list[tuple[str, str, dict]] = []
    sample_dir = Path(tempfile.mkdtemp(prefix="sme-qa-bench-reader-"))
    sample = None
    if {"seed", "offcorpus", "offcorpus_en", "contentfree"} & set(sets):
        build_index(ROOT / "corpus", sample_dir / "vectors")
        sample = Searcher(Settings.load(corpus=ROOT / "corpus", vectors=sample_dir / "vectors"))
    jobs = []
    if "xquad_zh" in sets:
        jobs.append(("xquad_zh", lambda: searcher_for("xquad_zh"), rows_of(EVAL / "xquad_zh" / "questions.jsonl", args.limit)))
    if "dureader" in sets:
        jobs.append(
            (
                "dureader_demo (in xquad_zh)",
                lambda: searcher_for("dureader_mix"),
                rows_of(EVAL / "dureader_demo" / "questions.jsonl", args.limit),
            )
        )
    if "xquad_en2zh" in sets:
        jobs.append(("xquad_en2zh", lambda: searcher_for("xquad_en2zh"), rows_of(EVAL / "xquad_en2zh" / "questions.jsonl", args.limit)))
    if "seed" in sets:
        jobs.append(("seed_qa", lambda: sample, rows_of(EVAL / "seed_qa.jsonl")))
        jobs.append(("seed_unanswerable", lambda: sample, rows_of(EVAL / "seed_unanswerable.jsonl")))
        near = ROOT / "tests" / "data" / "near_topic_unanswerable.jsonl"
        if near.is_file():
            jobs.append(("near-topic (tests/data)", lambda: sample, rows_of(near)))
        english = ROOT / "tests" / "data" / "english_sample.jsonl"
        if english.is_file():
            jobs.append(("English (tests/data)", lambda: sample, rows_of(english)))
    if "offcorpus" in sets:
        off = [replace_row(r) for r in rows_of(EVAL / "cmrc2018_dev" / "questions.jsonl", args.limit)]
        jobs.append(("cmrc2018_dev off-corpus", lambda: sample, off))
    if "offcorpus_en" in sets:
        off_en = [replace_row(r) for r in rows_of(EVAL / "xquad_en2zh" / "questions.jsonl", args.limit)]
        jobs.append(("xquad_en2zh off-corpus", lambda: sample, off_en))
    if "contentfree" in sets:
        jobs.append(("content-free inputs", lambda: sample, [{"question": q} for q in CONTENT_FREE]))
    for name, make, rows in jobs:
        searcher = make()
        for reader in readers:
            ask = (lambda q, s=searcher: s.ask(q, llm=False)) if reader == "reader" else heuristic_ask(searcher)
            t = time.perf_counter()
            m = measure(name, rows, ask)
            m["seconds"] = round(time.perf_counter() - t, 1)
            results.append((name, reader, m))
            print_row(name, reader, m, header=len(results) == 1)
    if args.json:
        print(json.dumps([{"set": s, "reader": r, **m} for s, r, m in results], ensure_ascii=False))
    return 0


def replace_row(row: dict) -> dict:
    """A benchmark question as an off-corpus one: no gold passage in the sample corpus."""
    return {"qid": row.get("qid"), "question": row["question"], "answers": [], "docs": []}


def print_row(name: str, reader: str, m: dict, header: bool) -> None:
    if header:
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(
            f"{'set':<30}{'reader':<11}{'n':>6}{'correct':>9}{'declined':>10}{'span EM':>9}{'span F1':>9}"
            f"{'unans. declined':>17}{'ask p50/p95 ms':>17}"
        )
    un = f"{m['unanswerable_declined']:.3f} of {m['unanswerable']}" if m["unanswerable"] else "-"
    print(
        f"{name:<30}{reader:<11}{m['n']:>6}{m['correct']:>9.3f}{m['declined']:>10.3f}{m['span_em']:>9.3f}"
        f"{m['span_f1']:>9.3f}{un:>17}{m['ask_p50_ms']:>8} / {m['ask_p95_ms']:<7}",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
