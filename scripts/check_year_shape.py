"""How often the answer sentence of a "which year" question holds a year (``reader._A_YEAR``).

The reader ranks a sentence without a year after every one with it for questions asking which
year (``reader.shape_ok``) and declines when none has one.  This counts, on the training sets
only (cmrc2018_dev, drcd_dev), the questions ``reader._YEAR_QUESTION`` matches whose gold
passages hold a sentence with a gold answer, and how many of those have a year by the rule:
the share that would be wrongly reranked.

    .venv/bin/python scripts/check_year_shape.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sme_qa.question import match_form  # noqa: E402
from sme_qa.reader import _A_YEAR, _YEAR_QUESTION  # noqa: E402
from sme_qa.text import compact, split_sentences  # noqa: E402


def main() -> int:
    for name in ("cmrc2018_dev", "drcd_dev"):
        folder = ROOT.parent / "shared" / "eval" / name
        rows = (json.loads(line) for line in (folder / "passages.jsonl").open(encoding="utf-8") if line.strip())
        text = {r["pid"]: r["text"] for r in rows}
        asked = held = 0
        misses = []
        for line in (folder / "questions.jsonl").open(encoding="utf-8"):
            row = json.loads(line)
            if not _YEAR_QUESTION.search(match_form(row["question"])):
                continue
            answers = [compact(a) for a in row["answers"]]
            gold = [s for pid in row["gold_pids"] for s in split_sentences(text.get(pid, "")) if any(a in compact(s) for a in answers)]
            if not gold:
                continue
            asked += 1
            if any(_A_YEAR.search(match_form(s)) for s in gold):
                held += 1
            else:
                misses.append(f"{row['question']} → {row['answers'][0]}")
        print(f"{name}: {held} of {asked} year questions' answer sentences hold a year ({held / max(asked, 1):.4f})")
        for m in misses[:10]:
            print(f"  no year: {m}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
