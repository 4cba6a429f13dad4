"""Multi-turn conversations: is each turn answered correctly when asked with its history?

    .venv/bin/python bench/bench_dialogues.py [--vectors DIR] [--show] [FILE ...]

Default files: ../shared/eval/dialogues.jsonl, tests/data/dialogues_followups.jsonl and the
held-out tests/data/dialogues_heldout.jsonl (one conversation a line: ``{"did", "turns":
[{"question", "answers", "docs"}, ...]}``).  Each turn is asked through ``Searcher.ask(question, history=...)`` with the conversation so far (the
user's questions and the answer texts) and, for comparison, alone.  A turn is **correct**
(../shared/eval/README.md) when it is answered, cites one of its ``docs`` and its text contains
one of its ``answers`` (NFKC, white space removed).  Without --vectors the sample corpus is
indexed into the cache dir (incremental: free after the first run).  Extractive answers only.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILES = [
    ROOT.parent / "shared" / "eval" / "dialogues.jsonl",
    ROOT / "tests" / "data" / "dialogues_followups.jsonl",
    ROOT / "tests" / "data" / "dialogues_heldout.jsonl",  # written before the rules it measures; never tuned on
]


def correct(answer, turn: dict) -> bool:
    from sme_qa.text import compact

    text = compact(answer.text)
    return (
        answer.answered and any(c.hit.doc_id in turn["docs"] for c in answer.citations) and any(compact(a) in text for a in turn["answers"])
    )


def run(searcher, dialogues: list[dict], show: bool = False) -> dict[str, int]:
    n = {
        "conversations": len(dialogues),
        "turns": 0,
        "correct": 0,
        "follow-ups": 0,
        "follow-ups correct": 0,
        "rewritten": 0,
        "follow-ups correct alone": 0,
    }
    for d in dialogues:
        history: list[dict[str, str]] = []
        for i, turn in enumerate(d["turns"]):
            answer = searcher.ask(turn["question"], history=history, llm=False)
            ok = correct(answer, turn)
            n["turns"] += 1
            n["correct"] += ok
            alone = None
            if i:
                alone = correct(searcher.ask(turn["question"], llm=False), turn)
                n["follow-ups"] += 1
                n["follow-ups correct"] += ok
                n["rewritten"] += answer.understood is not None
                n["follow-ups correct alone"] += alone
            if show:
                mark = ("ok " if ok else "BAD") + ("" if alone is None else " (alone ok)" if alone else " (alone bad)")
                understood = f"  → 按“{answer.understood}”理解" if answer.understood else ""
                print(f"{mark} {d['did']}.{i + 1} {turn['question']}{understood}")
                if not ok:
                    print("      " + answer.text.replace("\n", " ")[:160])
            history += [{"role": "user", "content": turn["question"]}, {"role": "assistant", "content": answer.text}]
    return n


def sample_vectors() -> Path:
    from sme_qa.indexing import build_index
    from sme_qa.settings import Settings

    vectors = Settings.load().cache_dir / "bench" / "sample-vectors"
    build_index(ROOT / "corpus", vectors)
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, default=DEFAULT_FILES)
    parser.add_argument("--vectors", type=Path, help="index of the sample corpus (default: built in the cache dir)")
    parser.add_argument("--show", action="store_true", help="print every turn, its rewrite, and wrong answers")
    args = parser.parse_args()

    from sme_qa.search import load

    searcher = load(args.vectors or sample_vectors())
    searcher.ask("专精特新企业有多少家？", llm=False)  # warm
    rows = []
    for path in args.files:
        dialogues = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        t0 = time.perf_counter()
        n = run(searcher, dialogues, args.show)
        rows.append((path.name, n, time.perf_counter() - t0))
    head = ["set", "conversations", "turns", "correct", "follow-ups", "follow-ups correct", "rewritten", "follow-ups correct alone", "s"]
    print(f"load average {os.getloadavg()[0]:.1f}")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for name, n, seconds in rows:
        f = max(n["follow-ups"], 1)
        print(
            f"| {name} | {n['conversations']} | {n['turns']} | {n['correct']} ({n['correct'] / max(n['turns'], 1):.0%}) "
            f"| {n['follow-ups']} | {n['follow-ups correct']} ({n['follow-ups correct'] / f:.0%}) | {n['rewritten']} "
            f"| {n['follow-ups correct alone']} ({n['follow-ups correct alone'] / f:.0%}) | {seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
