"""Fit how the span reader re-ranks the reader's best sentences (``spans.RERANK``, ``RERANK_WEIGHT``).

The span reader (``span_model.py``) was fine-tuned on the gold sentences of cmrc2018_dev and
drcd_dev, except a tenth of their passages held out by ``scripts/train_span.py`` (seed 15).  Its
logits on a sentence it trained on are not what it gives on new text, so the weighing is chosen
on the questions of those held-out passages only: each is asked of its own set's index (hybrid,
top 5, as ``ask`` does), read (``reader.read``), and the span reader reads the first k of the
sentences sharing the best one's scope and shape; the sentence quoted first is the one with the
highest log-odds of the reader's probability + weight × the span's start + end logit.  Printed:
the share of questions whose first quoted sentence holds a gold answer inside a gold passage,
for each k and weight (k 1 is the reader alone).  Nothing else is fitted here.

    .venv/bin/python scripts/fit_rerank.py        # ~2 min on 2 cores once the two indexes exist
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

from sme_qa import bundled_st, span_model  # noqa: E402
from sme_qa import reader as R  # noqa: E402
from sme_qa.question import analyse_with  # noqa: E402

KS = (1, 2, 3, 4)
WEIGHTS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def held_out_groups(eval_dir: Path) -> set[str]:
    """The ``set/pid`` passages ``scripts/train_span.py`` held out (the same examples, the same draw)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(bundled_st.materialize() / "tokenizer.json"))
    data = [x for name in TS.TRAIN_SETS for x in TS.examples(eval_dir, name, tokenizer, None)]
    groups = sorted({x.group for x in data})
    rng = np.random.default_rng(TS.SEED)
    return set(rng.choice(groups, size=max(1, int(TS.HOLD_OUT * len(groups))), replace=False).tolist())


def log_odds(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eval-dir", type=Path, default=ROOT.parent / "shared" / "eval")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    held = held_out_groups(args.eval_dir)
    reader = span_model.load()
    if reader is None:
        raise SystemExit("the span reader is not available (bundled model or span_reader.safetensors missing)")
    rows_out = []  # per question: (reader scores, span logits, gold flags) of its first max(KS) peers
    for name in T.TRAIN_SETS:
        rows = [json.loads(line) for line in (args.eval_dir / name / "questions.jsonl").open(encoding="utf-8") if line.strip()]
        rows = [r for r in rows if f"{name}/{r['gold_pids'][0]}" in held]
        searcher = T.searcher_for(args.eval_dir, name)
        view = searcher.view()
        searcher.embed_queries([r["question"] for r in rows])
        for row in rows:
            q = analyse_with(view, row["question"])
            reading = R.read(q, searcher.retrieve(q.text, T.K), view)
            peers = reading.candidates[: min(reading.peers, max(KS))]
            if not peers:
                continue
            gold = set(row["gold_pids"])
            flags = [c.hit.doc_id in gold and T.contains(c.quote, row["answers"]) for c in peers]
            found = [reader.find(q.text, c.quote, one_clause=q.kind == "number") for c in peers]
            logits = [f.logit if f is not None else -math.inf for f in found]
            rows_out.append(([c.score for c in peers], logits, flags))
        print(f"{name}: {len(rows)} held-out questions", flush=True)
    print(f"{len(rows_out)} questions, {time.perf_counter() - t0:.0f} s")
    print("| k | " + " | ".join(f"weight {w}" for w in WEIGHTS) + " |")
    print("|---|" + "---|" * len(WEIGHTS))
    for k in KS:
        cells = []
        for w in WEIGHTS:
            right = 0
            for scores, logits, flags in rows_out:
                value = [log_odds(p) + w * z for p, z in zip(scores[:k], logits[:k])]
                right += flags[int(np.argmax(value))] if any(math.isfinite(v) for v in value) else flags[0]
            cells.append(f"{right / len(rows_out):.3f}")
        print(f"| {k} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
