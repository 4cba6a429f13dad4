"""Fit how the sentence ranker and the span reader re-rank the reader's best sentences (``spans.RERANK``, ``RERANK_WEIGHT``, ``RANKER_WEIGHT``); and measure the ranker as a judge of answerability (not shipped).

The span reader (``span_model.py``) was fine-tuned on the gold sentences of cmrc2018_dev and
drcd_dev, except a tenth of their passages held out by ``scripts/train_span.py`` (seed 15).  Its
logits on a sentence it trained on are not what it gives on new text, so the weighing is chosen
on the questions of those held-out passages only: each is asked of its own set's index (hybrid,
top 5, as ``ask`` does), read (``reader.read``), and the span reader reads the first k of the
sentences sharing the best one's scope and shape; the sentence quoted first is the one with the
highest log-odds of the reader's probability + weight × the span's start + end logit + ranker
weight × the sentence ranker's logit (``scripts/train_ranker.py``, which holds out the same
passages).  Printed: the share of questions whose first quoted sentence holds a gold answer inside
a gold passage, for each k and pair of weights (k 1 is the reader alone).

Then the ranker as a judge of answerability: each question is also read with its gold passages
removed from the results ("masked": nothing there should answer it).  With the shipped k and
weights, printed: (1) declining when the ranker's logit for the sentence to be quoted is below a
floor (right answers lost, masked copies still answered, utility right − wrong-answered −
masked-answered); (2) answering a question below the reader's cut when that logit reaches
``sure`` (masked copies answered: the cost).  Neither is shipped: the floor that cost 0.003 of
right answers here (−3.5) declined 0.079 → 0.133 of xquad_zh (correct 0.812 → 0.778), and the
overrule that cost 0.003 of masked copies here (2.5) changed no xquad_zh answer (README).

    .venv/bin/python scripts/fit_rerank.py        # ~9 min on 2 cores once the two indexes exist
    .venv/bin/python scripts/fit_rerank.py --dump scores.json     # keep the scores ...
    .venv/bin/python scripts/fit_rerank.py --from-dump scores.json  # ... and print the tables again in seconds
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

import train_reader as T  # noqa: E402  (after the path set-up, so a checkout runs without install)
import train_span as TS  # noqa: E402

from sme_qa import bundled_st, span_model, spans  # noqa: E402
from sme_qa import reader as R  # noqa: E402
from sme_qa.question import analyse_with  # noqa: E402

KS = (1, 2, 3, 4, 5, 6)
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5)
RANKER_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)


def held_out_groups(eval_dir: Path) -> set[str]:
    """The ``set/pid`` passages ``scripts/train_span.py`` held out (the same examples, the same draw)."""
    from tokenizers import Tokenizer

    return TS.held_out_groups(eval_dir, Tokenizer.from_file(str(bundled_st.materialize() / "tokenizer.json")))


def log_odds(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eval-dir", type=Path, default=ROOT.parent / "shared" / "eval")
    ap.add_argument("--dump", type=Path, help="write every question's scores here (JSON)")
    ap.add_argument("--from-dump", type=Path, help="print the tables from scores written by --dump")
    ap.add_argument("--ranker", type=Path, default=span_model.head_path(span_model.RANKER_FILE), help="a sentence ranker file")
    args = ap.parse_args(argv)
    if args.from_dump:
        dumped = json.loads(args.from_dump.read_text(encoding="utf-8"))
        report(dumped["normal"], dumped["masked"])
        return 0
    t0 = time.perf_counter()
    held = held_out_groups(args.eval_dir)
    reader = span_model.load()
    if reader is None:
        raise SystemExit("the span reader is not available (bundled model or span_reader.safetensors missing)")
    ranker = span_model.ranker_from(args.ranker)
    masked_out: list[dict] = []  # the same with the gold passages removed from the results (no answer there)
    rows_out = []  # per question: (reader scores, span logits, ranker logits, gold flags) of its first max(KS) peers
    for name in T.TRAIN_SETS:
        rows = [json.loads(line) for line in (args.eval_dir / name / "questions.jsonl").open(encoding="utf-8") if line.strip()]
        rows = [r for r in rows if f"{name}/{r['gold_pids'][0]}" in held]
        searcher = T.searcher_for(args.eval_dir, name)
        view = searcher.view()
        searcher.embed_queries([r["question"] for r in rows])
        for row in rows:
            q = analyse_with(view, row["question"])
            hits = searcher.retrieve(q.text, T.DEPTH)
            gold = set(row["gold_pids"])
            for variant, hs in (("normal", hits[: T.K]), ("masked", [h for h in hits if h.doc_id not in gold][: T.K])):
                reading = R.read(q, hs, view)
                peers = reading.candidates[: min(reading.peers, max(KS))]
                if not peers:
                    continue
                flags = [c.hit.doc_id in gold and T.contains(c.quote, row["answers"]) for c in peers]
                ranked, found = reader.rank_and_read(q.text, [c.quote for c in peers], ranker, one_clause=q.kind == "number")
                logits = [f.logit if f is not None else -1e9 for f in found]
                record = {
                    "set": name,
                    "variant": variant,
                    "kind": q.kind,
                    "p": reading.probability,
                    "answerable": reading.answerable,
                    "scores": [c.score for c in peers],
                    "span": logits,
                    "ranker": [x if math.isfinite(x) else -1e9 for x in ranked.tolist()],
                    "flags": flags,
                }
                (rows_out if variant == "normal" else masked_out).append(record)
        print(f"{name}: {len(rows)} held-out questions", flush=True)
    if args.dump:
        args.dump.write_text(json.dumps({"normal": rows_out, "masked": masked_out}), encoding="utf-8")
    print(f"{len(rows_out)} questions, {time.perf_counter() - t0:.0f} s")
    report(rows_out, masked_out)
    return 0


def chosen(row: dict, k: int, w: float, wr: float) -> int:
    """The peer quoted first: highest log-odds + w × span logit + wr × ranker logit of the first k."""
    value = [log_odds(p) + w * z + wr * y for p, z, y in zip(row["scores"][:k], row["span"][:k], row["ranker"][:k])]
    return int(np.argmax(value)) if any(math.isfinite(v) for v in value) else 0


def report(rows_out: list[dict], masked_out: list[dict]) -> None:
    for k in KS:
        print(f"\nk {k}: rows span weight, columns ranker weight")
        print("| span \\ ranker | " + " | ".join(str(r) for r in RANKER_WEIGHTS) + " |")
        print("|---|" + "---|" * len(RANKER_WEIGHTS))
        for w in WEIGHTS:
            cells = [f"{sum(row['flags'][chosen(row, k, w, wr)] for row in rows_out) / len(rows_out):.3f}" for wr in RANKER_WEIGHTS]
            print(f"| {w} | " + " | ".join(cells) + " |")
    k, w, wr = spans.RERANK, spans.RERANK_WEIGHT, spans.RANKER_WEIGHT

    def pick(row: dict) -> tuple[bool, float]:
        """Whether the sentence quoted first holds the answer, and the ranker's logit for it."""
        i = chosen(row, k, w, wr)
        return bool(row["flags"][i]), row["ranker"][i]

    n, m = len(rows_out), len(masked_out)
    right = [(row["answerable"], row["p"], *pick(row)) for row in rows_out]  # (answerable, p, holds it, logit)
    masked = [(row["answerable"], row["p"], pick(row)[1]) for row in masked_out]
    print(f"\nas a floor: decline when the ranker's logit for the quoted sentence < floor (k {k}, weights {w}, {wr}; {n} questions)")
    print("| floor | right | right lost | wrong answered | masked answered | utility |")
    print("|---|---|---|---|---|---|")
    for floor in (-math.inf, -4.0, -3.5, -3.0, -2.5, -2.0, -1.0, 0.0):
        ok = sum(a and r and y >= floor for a, _, r, y in right)
        lost = sum(a and r and y < floor for a, _, r, y in right)
        wrong = sum(a and not r and y >= floor for a, _, r, y in right)
        answered = sum(a and y >= floor for a, _, y in masked)
        print(f"| {floor} | {ok / n:.3f} | {lost / n:.3f} | {wrong / n:.3f} | {answered / m:.3f} | {(ok - wrong - answered) / n:.3f} |")
    threshold = R.shipped_model().threshold
    cut_n = [(r, y) for _, p, r, y in right if p < threshold]
    cut_m = [y for _, p, y in masked if p < threshold]
    print(f"\nas an overrule: answer a question below the reader's cut ({threshold:.2f}) when the ranker's logit reaches sure")
    print(f"(below the cut: {len(cut_n)} of {n} questions, {len(cut_m)} of {m} masked copies; shape and place rules not applied here)")
    print("| sure | right gained | wrong gained | masked answered |")
    print("|---|---|---|---|")
    for sure in (0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5):
        gained = sum(r and y >= sure for r, y in cut_n)
        wrong_gained = sum(not r and y >= sure for r, y in cut_n)
        answered = sum(y >= sure for y in cut_m)
        print(f"| {sure} | {gained / n:.3f} | {wrong_gained / n:.3f} | +{answered / m:.3f} |")


if __name__ == "__main__":
    raise SystemExit(main())
