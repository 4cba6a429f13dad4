"""The public retrieval sets as the fusion benches use them: one cached index per set.

    .venv/bin/python bench/eval_sets.py [SET ...]      build (or reuse) the indexes, print their sizes

Sets are the folders of ../shared/eval plus ``dureader_mix``: dureader_demo's 99 real
search queries over its passages mixed into xquad_zh's 240 (dureader alone is too small to
rank anything).  Indexes live where ``sme-qa eval`` keeps them (the settings cache dir), so
``sme-qa eval`` and these benches share them.  Embedding ~1,000 passages costs minutes on
2 cores, so a set whose passages are a subset or superset of an indexed one starts from a
copy of that index, and only its new chunks are embedded (``build_index`` reuses vectors by
input hash).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"
SETS = ("cmrc2018_dev", "xquad_zh", "drcd_dev", "xquad_en2zh", "dureader_mix")
# a set built from a copy of another set's index (shared passages are not embedded again)
SEED_FROM = {"xquad_en2zh": "xquad_zh", "dureader_mix": "xquad_zh"}


def _mix_corpus(cache: Path) -> tuple[Path, Path]:
    """dureader_demo's passages appended to xquad_zh's, and dureader's questions."""
    out = cache / "eval-corpora" / "dureader_mix"
    out.mkdir(parents=True, exist_ok=True)
    passages = out / "passages.jsonl"
    text = "".join((EVAL / s / "passages.jsonl").read_text(encoding="utf-8") for s in ("xquad_zh", "dureader_demo"))
    if not passages.exists() or passages.read_text(encoding="utf-8") != text:
        passages.write_text(text, encoding="utf-8")
    questions = out / "questions.jsonl"
    shutil.copyfile(EVAL / "dureader_demo" / "questions.jsonl", questions)
    return passages, questions


def paths(name: str) -> tuple[Path, Path, Path]:
    """(corpus, questions, vectors) of a set; the vectors folder is the one ``sme-qa eval`` uses."""
    from sme_qa.evaluate import _resolve
    from sme_qa.settings import Settings

    if name == "dureader_mix":
        corpus, questions = _mix_corpus(Settings.load().cache_dir)
    else:
        questions = EVAL / name / "questions.jsonl"
        corpus = questions.parent / "passages.jsonl"
    _, vectors = _resolve(questions, None, None, True)
    return corpus, questions, vectors


def ensure_index(name: str, progress=None) -> tuple[Path, Path, Path]:
    """Build the set's index if it is missing or stale; returns ``paths(name)``."""
    from sme_qa.indexing import build_index

    corpus, questions, vectors = paths(name)
    seed = SEED_FROM.get(name)
    if seed and not (vectors / "manifest.json").exists():
        _, _, seed_vectors = ensure_index(seed, progress)
        shutil.copytree(seed_vectors, vectors, ignore=shutil.ignore_patterns(".lock"), dirs_exist_ok=True)
    build_index(corpus, vectors, progress=progress)
    return corpus, questions, vectors


def main() -> None:
    for name in sys.argv[1:] or SETS:
        t0 = time.perf_counter()
        vectors = ensure_index(name)[2]
        manifest = json.loads((vectors / "manifest.json").read_text())
        print(f"{name}: {manifest['counts']} in {vectors} ({time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
