"""Retrieval evaluation on question sets: recall@k, MRR@10 and queries/s for each mode.

Two formats are read (see ../shared/eval/README.md):

* seed format: ``{"question", "answers", "docs", "kind"}`` over the sample corpus; a
  passage answers when it belongs to one of ``docs`` and contains an answer string
  (NFKC, white space removed).  Questions without ``docs`` (unanswerable) are not
  retrieval questions and are counted apart.
* benchmark format: ``{"question", "gold_pids"}`` with ``passages.jsonl`` beside it;
  a hit is a top-k passage from a gold document.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import SmeQaError
from .settings import Settings
from .text import compact

Progress = Callable[[str, int, int], None]


def read_questions(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    rows = []
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise SmeQaError(f"{path}:{n}: not JSON ({exc})") from exc
            if "question" not in row:
                raise SmeQaError(f"{path}:{n}: no 'question' field")
            rows.append(row)
            if limit and len(rows) >= limit:
                break
    return rows


def is_hit(question: dict[str, Any], doc_id: str, text: str) -> bool:
    """Does a retrieved passage (document id and text) count for this question?"""
    if "gold_pids" in question:
        return doc_id in question["gold_pids"]
    if doc_id not in question.get("docs", ()):
        return False
    passage = compact(text)
    return any(compact(a) in passage for a in question.get("answers", ()))


def _resolve(questions_path: Path, corpus: str | None, vectors: str | None, benchmark: bool) -> tuple[Path, Path]:
    settings = Settings.load(corpus=corpus, vectors=vectors)
    if corpus is None and benchmark:
        beside = questions_path.parent / "passages.jsonl"
        if not beside.is_file():
            raise SmeQaError(f"{questions_path}: no passages.jsonl beside it; give --corpus")
        corpus_path = beside
    else:
        corpus_path = settings.corpus
    if vectors is None and benchmark:
        key = hashlib.sha1(str(corpus_path.resolve()).encode()).hexdigest()[:10]
        return corpus_path, settings.cache_dir / "eval" / f"{questions_path.parent.name}-{key}"
    return corpus_path, settings.vectors


def run_eval(
    questions: str | Path,
    *,
    corpus: str | None = None,
    vectors: str | None = None,
    ks: Sequence[int] = (1, 5, 20),
    modes: Sequence[str] = ("dense", "lexical", "hybrid"),
    limit: int | None = None,
    progress: Progress | None = None,
    searcher=None,
    answers: bool = False,
    max_file_mb: float | None = None,
) -> dict[str, Any]:
    from .indexing import build_index
    from .search import Searcher

    path = Path(questions)
    rows = read_questions(path, limit)
    benchmark = any("gold_pids" in r for r in rows)
    corpus_path, vectors_path = _resolve(path, corpus, vectors, benchmark)
    summary = None
    if searcher is None:
        summary = build_index(corpus_path, vectors_path, progress=progress, max_file_mb=max_file_mb)
        searcher = Searcher(Settings.load(corpus=corpus_path, vectors=vectors_path))
    answerable = [r for r in rows if r.get("gold_pids") or r.get("docs")]
    depth = max(max(ks), 10)
    report: dict[str, Any] = {
        "questions": str(path),
        "corpus": str(corpus_path),
        "vectors": str(vectors_path),
        "n": len(answerable),
        "unanswerable": len(rows) - len(answerable),
        "index": summary.to_dict() if summary else None,
        "modes": {},
    }
    searcher.embed_queries([r["question"] for r in answerable])  # warm the model and the query cache
    for mode in modes:
        first_hit: list[int | None] = []
        t0 = time.perf_counter()
        for i, q in enumerate(answerable):
            hits = searcher.retrieve(q["question"], depth, mode=mode)
            rank = next((h.rank for h in hits if is_hit(q, h.doc_id, h.text)), None)
            first_hit.append(rank)
            if progress and i % 50 == 0:
                progress(mode, i, len(answerable))
        elapsed = time.perf_counter() - t0
        if progress:
            progress(mode, len(answerable), len(answerable))
        n = max(len(answerable), 1)
        report["modes"][mode] = {
            "recall": {str(k): sum(r is not None and r <= k for r in first_hit) / n for k in ks},
            "mrr@10": sum(1 / r for r in first_hit if r is not None and r <= 10) / n,
            "qps": len(answerable) / elapsed if elapsed else 0.0,
            "misses@5": [q.get("qid") for q, r in zip(answerable, first_hit) if r is None or r > 5][:20],
        }
    if answers:
        report["answers"] = answer_metrics(rows, lambda q: searcher.ask(q, llm=False), progress)
    return report


def answer_correct(question: dict[str, Any], answer: Any) -> bool:
    """The eval README's rule: answered, one citation is a gold passage, the text holds a gold answer."""
    if not answer.answered:
        return False
    gold = set(question.get("gold_pids") or question.get("docs") or ())
    text = compact(answer.text)
    return any(c.hit.doc_id in gold for c in answer.citations) and any(compact(a) in text for a in question.get("answers", ()))


def answer_metrics(rows: Sequence[dict[str, Any]], ask: Callable[[str], Any], progress: Progress | None = None) -> dict[str, Any]:
    """Answer quality and latency over ``rows``: correct / declined share of the answerable
    questions, span exact match and character F1 of the short answer (0 when none is given),
    the share of unanswerable questions declined, and ask latency p50/p95 in ms."""
    from .spans import char_f1

    correct = declined = em = 0
    f1 = 0.0
    unanswerable = declined_unanswerable = 0
    times: list[float] = []
    answerable = [r for r in rows if r.get("gold_pids") or r.get("docs")]
    for i, row in enumerate(rows):
        t = time.perf_counter()
        answer = ask(row["question"])
        times.append((time.perf_counter() - t) * 1000)
        if not (row.get("gold_pids") or row.get("docs")):
            unanswerable += 1
            declined_unanswerable += not answer.answered
            continue
        correct += answer_correct(row, answer)
        declined += not answer.answered
        short = getattr(answer, "short", None) or ""
        best = max((char_f1(short, a) for a in row.get("answers", ())), default=0.0) if short and answer.answered else 0.0
        f1 += best
        em += best >= 0.999
        if progress and i % 50 == 0:
            progress("answers", i, len(rows))
    n = max(len(answerable), 1)
    times.sort()

    def pct(p: float) -> float:
        return round(times[min(len(times) - 1, int(p * len(times)))], 1) if times else 0.0

    return {
        "n": len(answerable),
        "correct": correct / n,
        "declined": declined / n,
        "span_em": em / n,
        "span_f1": f1 / n,
        "unanswerable": unanswerable,
        "unanswerable_declined": declined_unanswerable / unanswerable if unanswerable else None,
        "ask_p50_ms": pct(0.5),
        "ask_p95_ms": pct(0.95),
    }


def format_report(report: dict[str, Any]) -> str:
    modes = report["modes"]
    ks = list(next(iter(modes.values()))["recall"]) if modes else []
    head = ["mode", *[f"R@{k}" for k in ks], "MRR@10", "q/s"]
    lines = [
        f"{report['questions']}: {report['n']} answerable questions"
        + (f" ({report['unanswerable']} unanswerable not scored)" if report["unanswerable"] else ""),
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for mode, m in modes.items():
        cells = [mode, *[f"{m['recall'][k]:.3f}" for k in ks], f"{m['mrr@10']:.3f}", f"{m['qps']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    a = report.get("answers")
    if a:
        lines += [
            "",
            "| answers | correct | declined | span EM | span F1 | unanswerable declined | ask p50 / p95 ms |",
            "|---|---|---|---|---|---|---|",
            f"| {a['n']} | {a['correct']:.3f} | {a['declined']:.3f} | {a['span_em']:.3f} | {a['span_f1']:.3f} | "
            + (f"{a['unanswerable_declined']:.3f} of {a['unanswerable']}" if a["unanswerable"] else "-")
            + f" | {a['ask_p50_ms']} / {a['ask_p95_ms']} |",
        ]
    return "\n".join(lines)
