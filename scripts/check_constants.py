"""Where the reader's remaining hand-set constants stand on the training sets (cmrc2018_dev, drcd_dev only).

* ``question.FUNCTION_WEIGHT``: the weight of function words (adverbs, pronouns, numerals, time
  words…) in the question's idf-weighted terms.  Printed: how often the sentence of the gold
  passage with the highest coverage of the terms (``reading_features.coverage``) holds a gold
  answer, at several weights (coverage alone, not the fitted reader: the reader's weights were
  fitted on features computed with the shipped value).
* ``reading_features.SHORT_SENTENCE``: sentences shorter than this are not quoted alone.
  Printed: the share of answer sentences that short.
* ``spans.MAX_WORDS`` / ``spans.MAX_CHARS`` (the feature span model's candidates, used only when
  the span reader is unavailable): the share of gold answers within that many jieba words /
  characters.

    .venv/bin/python scripts/check_constants.py      # ~2 min once the two training indexes exist
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

import train_reader as T  # noqa: E402  (after the path set-up, so a checkout runs without install)

from sme_qa import question as Q  # noqa: E402
from sme_qa import spans as S  # noqa: E402
from sme_qa.reading_features import SHORT_SENTENCE, coverage  # noqa: E402
from sme_qa.text import compact, split_sentences  # noqa: E402

WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0)


def main() -> int:
    eval_dir = ROOT.parent / "shared" / "eval"
    shipped = Q.FUNCTION_WEIGHT
    for name in T.TRAIN_SETS:
        folder = eval_dir / name
        text = {}
        for line in (folder / "passages.jsonl").open(encoding="utf-8"):
            if line.strip():
                row = json.loads(line)
                text[row["pid"]] = row["text"]
        rows = [json.loads(line) for line in (folder / "questions.jsonl").open(encoding="utf-8") if line.strip()]
        view = T.searcher_for(eval_dir, name).view()
        top1 = dict.fromkeys(WEIGHTS, 0)
        asked = short = in_words = in_chars = 0
        for row in rows:
            answers_c = [compact(a) for a in row["answers"]]
            sents = [s for pid in row["gold_pids"] for s in split_sentences(text.get(pid, ""))]
            gold = [any(a in compact(s) for a in answers_c) for s in sents]
            if not any(gold):
                continue
            asked += 1
            short += any(g and len(Q.match_form(s)) < SHORT_SENTENCE for s, g in zip(sents, gold))
            forms = [Q.match_form(s) for s in sents]
            for w in WEIGHTS:
                Q.FUNCTION_WEIGHT = w
                q = Q.analyse_with(view, row["question"])
                scores = [coverage(q.terms, f) for f in forms]
                top1[w] += gold[int(np.argmax(scores))]
            Q.FUNCTION_WEIGHT = shipped
            answer = row["answers"][0]
            in_words += len(view.words(answer)) <= S.MAX_WORDS
            in_chars += len(answer) <= S.MAX_CHARS
        print(f"{name}: {asked} questions with an answer sentence in the gold passage")
        print(
            "  FUNCTION_WEIGHT → coverage top-1: "
            + ", ".join(f"{w}{' (shipped)' if w == shipped else ''}: {top1[w] / asked:.4f}" for w in WEIGHTS)
        )
        print(f"  answer sentences shorter than SHORT_SENTENCE={SHORT_SENTENCE}: {short / asked:.4f}")
        print(
            f"  gold answers within MAX_WORDS={S.MAX_WORDS} words: {in_words / asked:.4f}, "
            f"within MAX_CHARS={S.MAX_CHARS} characters: {in_chars / asked:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
