"""How often the answer sentence of a "which year" question holds a year (``reader._A_YEAR``),
and that of a number question asking no measure word and no length of time a figure that is not
a date or a span of time (``reader._TIME_SPAN``: 「弹簧年产量是多少」 is not answered by 「数十年」),
and that of any question a sentence that does not itself ask (``reader._ASKS``).

The reader ranks a sentence without a year after every one with it for questions asking which
year (``reader.shape_ok``) and declines when none has one.  This counts, on the training sets
only (cmrc2018_dev, drcd_dev), the questions ``reader._YEAR_QUESTION`` matches whose gold
passages hold a sentence with a gold answer, and how many of those have a year by the rule:
the share that would be wrongly reranked; then the same for the other two rules.

    .venv/bin/python scripts/check_year_shape.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sme_qa.question import _HOW_MANY, match_form, question_kind  # noqa: E402
from sme_qa.reader import _A_YEAR, _ASKS, _YEAR_QUESTION, asks_plain_amount, holds_amount  # noqa: E402
from sme_qa.text import compact, split_sentences  # noqa: E402


def asks_year(question: str) -> bool:
    return bool(_YEAR_QUESTION.search(match_form(question)))


def holds_year(sentence: str) -> bool:
    return bool(_A_YEAR.search(match_form(sentence)))


def asks_number_plainly(question: str) -> bool:
    m = _HOW_MANY.search(question)
    return question_kind(question) == "number" and asks_plain_amount(question, m.group("unit") if m else None)


def holds_figure(sentence: str) -> bool:
    return holds_amount(match_form(sentence))


def main() -> int:
    checks = (
        ("year", asks_year, holds_year),
        ("no-measure number", asks_number_plainly, holds_figure),
        ("all", lambda question: True, lambda sentence: not _ASKS.search(sentence)),
    )
    for what, asks, holds in checks:
        for name in ("cmrc2018_dev", "drcd_dev"):
            count(name, what, asks, holds)
    return 0


def count(name: str, what: str, asks, holds) -> None:
    """Print how many of ``name``'s questions that ``asks`` have a gold sentence that ``holds``."""
    folder = ROOT.parent / "shared" / "eval" / name
    rows = (json.loads(line) for line in (folder / "passages.jsonl").open(encoding="utf-8") if line.strip())
    text = {r["pid"]: r["text"] for r in rows}
    asked = held = 0
    misses = []
    for line in (folder / "questions.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        if not asks(row["question"]):
            continue
        answers = [compact(a) for a in row["answers"]]
        gold = [s for pid in row["gold_pids"] for s in split_sentences(text.get(pid, "")) if any(a in compact(s) for a in answers)]
        if not gold:
            continue
        asked += 1
        if any(holds(s) for s in gold):
            held += 1
        else:
            misses.append(f"{row['question']} → {row['answers'][0]}")
    print(f"{name}: {held} of {asked} {what} questions' answer sentences hold what the rule asks ({held / max(asked, 1):.4f})")
    for m in misses[:10]:
        print(f"  missing: {m}")


if __name__ == "__main__":
    raise SystemExit(main())
