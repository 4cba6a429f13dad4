"""Where the answers that are not correct are lost: retrieval, the reader's sentence order, or the decline.

For every answerable question of a public set (asked through the real pipeline, as
``bench_reader.py`` does) the first cause that applies is counted:

* correct: the eval README's rule (answered, cites a gold passage, the text holds a gold answer);
* gold not retrieved: no gold passage among the top 5;
* no sentence holds it: a gold passage is retrieved but none of the reader's sentences of it holds a
  gold answer string (the answer crosses a sentence, or is written another way);
* declined, and why: the reader's probability below the model's cut, the best sentence cannot hold
  the answer's shape, a title or figure the question pins is in no passage, or (English) no passage
  is near enough by embedding; with the rank of the best sentence that holds the answer;
* answered wrong: quoted, but not a sentence holding the answer.

Ranks are the reader's order before the span reader re-reads its best three (``spans.reread``).

    .venv/bin/python bench/bench_losses.py                       # xquad_zh, dureader (mixed), xquad_en2zh
    .venv/bin/python bench/bench_losses.py --sets xquad_zh --limit 300
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_reader import EVAL, rows_of, searcher_for  # noqa: E402

# set → (its cached index, its questions)
SETS = {
    "xquad_zh": ("xquad_zh", "xquad_zh"),
    "dureader": ("dureader_mix", "dureader_demo"),
    "xquad_en2zh": ("xquad_en2zh", "xquad_en2zh"),
}
RANKS = 3  # ranks shown one by one; beyond, "> RANKS"


def cause(searcher, row: dict) -> str:
    """The first cause of the list above that applies to one question."""
    from sme_qa import answer as A
    from sme_qa.evaluate import answer_correct
    from sme_qa.reader import CROSS_FLOOR, shape_ok, shipped_model
    from sme_qa.text import compact

    gold = set(row.get("gold_pids") or row.get("docs") or ())
    answers = [compact(a) for a in row.get("answers", ())]
    ev = A.evidence(searcher, row["question"])
    reply = A.extractive(ev)
    if answer_correct(row, reply):
        return "correct"
    if not any(h.doc_id in gold for h in ev.hits):
        return "gold not retrieved"
    cands = ev.reading.candidates
    good = next((i for i, c in enumerate(cands) if c.hit.doc_id in gold and any(a in compact(c.quote) for a in answers)), None)
    if good is None:
        return "no sentence holds it"
    rank = f"rank {good + 1}" if good < RANKS else f"rank > {RANKS}"
    if reply.answered:
        return f"answered wrong, the sentence at {rank}"
    model = shipped_model()
    q, reading = ev.question, ev.reading
    if ev.missing:
        why = "pinned title/figure missing"
    elif cands and not shape_ok(q, cands[0]):
        why = "shape"
    elif q.english and reading.evidence.get("dense_top", math.nan) < CROSS_FLOOR:
        why = "English floor"
    else:
        cut = model.threshold_cross if q.english else model.threshold
        why = f"below the cut {cut:.2f}"
    return f"declined ({why}), the sentence at {rank}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--limit", type=int, help="first N questions of each set")
    args = ap.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    for name in args.sets.split(","):
        index, questions = SETS[name]
        searcher = searcher_for(index)
        rows = [r for r in rows_of(EVAL / questions / "questions.jsonl", args.limit) if r.get("gold_pids") or r.get("docs")]
        counts = collections.Counter(cause(searcher, r) for r in rows)
        print(f"\n{name}: {len(rows)} answerable questions")
        print(f"| {'cause':<64} | {'n':>5} | {'share':>6} |")
        print(f"|{'-' * 66}|{'-' * 7}|{'-' * 8}|")
        for what, n in sorted(counts.items(), key=lambda kv: (kv[0] != "correct", -kv[1])):
            print(f"| {what:<64} | {n:>5} | {n / len(rows):>6.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
