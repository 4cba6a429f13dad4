"""Why the lexical leg tokenises the way it does: BM25 with each tokenizer variant, every eval set.

    .venv/bin/python bench/tune_lexical.py

Variants: jieba search mode alone; + the corpus's quoted names added to the dictionary;
+ character bigrams of Han runs; both; and each without traditional→simplified
conversion.  The chunks are those of the real index (``sme-qa eval`` builds it); BM25
is rebuilt in memory per variant with the real ``sme_qa.lexical`` classes, so the
numbers are the lexical leg's own R@1 / R@5 / MRR@10 (document hit, as ``sme-qa eval``).
Seed questions are scored against the sample corpus by answer string.
"""

from __future__ import annotations

import sys
from pathlib import Path

import sme_qa.lexical as lexical

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"


def load_set(name: str):
    from sme_qa.evaluate import _resolve, is_hit, read_questions
    from sme_qa.indexing import build_index, lexical_input
    from sme_qa.store import load_generation

    qpath = EVAL / name / "questions.jsonl" if name != "seed_qa" else EVAL / "seed_qa.jsonl"
    corpus, vectors = _resolve(qpath, str(ROOT / "corpus") if name == "seed_qa" else None, None, True)
    if name == "seed_qa":
        vectors = vectors.parent / "seed_qa-sample"
    build_index(corpus, vectors)
    gen = load_generation(vectors)
    docs = [(c["doc_id"], c["text"], lexical_input(c["title"], c["text"])) for c in gen.chunks]
    questions = [q for q in read_questions(qpath) if q.get("gold_pids") or q.get("docs")]
    return docs, questions, is_hit


def score(docs, questions, is_hit, tokenizer) -> tuple[float, float, float]:
    table = lexical.TermTable()
    bm25 = lexical.BM25(lexical.count_matrix([tokenizer.tokens(t) for _, _, t in docs], table))
    r1 = r5 = mrr = 0.0
    for q in questions:
        ids = [table.ids[t] for t in tokenizer.tokens(q["question"]) if t in table.ids]
        rows, _ = bm25.top(ids, 10)
        rank = next((i for i, r in enumerate(rows, 1) if is_hit(q, docs[r][0], docs[r][1])), None)
        r1 += rank == 1
        r5 += rank is not None and rank <= 5
        mrr += 1 / rank if rank else 0.0
    n = len(questions)
    return r1 / n, r5 / n, mrr / n


def main() -> None:
    sets = sys.argv[1:] or ["seed_qa", "cmrc2018_dev", "xquad_zh", "drcd_dev"]
    variants = [
        ("jieba", False, False, True),
        ("jieba + vocabulary", True, False, True),
        ("jieba + bigrams", False, True, True),
        ("jieba + vocabulary + bigrams (default)", True, True, True),
        ("default without t2s", True, True, False),
    ]
    results = {}
    for name in sets:
        docs, questions, is_hit = load_set(name)
        vocabulary = lexical.corpus_vocabulary(t for _, _, t in docs)
        for label, vocab, bigrams, t2s in variants:
            tok = lexical.Tokenizer(vocabulary if vocab else (), bigrams=bigrams, t2s=t2s)
            results[(name, label)] = score(docs, questions, is_hit, tok)
    print("| lexical variant | " + " | ".join(f"{s} R@1 / R@5 / MRR@10" for s in sets) + " |")
    print("|---|" + "---|" * len(sets))
    for label, *_ in variants:
        print(f"| {label} | " + " | ".join("{:.3f} / {:.3f} / {:.3f}".format(*results[(s, label)]) for s in sets) + " |")


if __name__ == "__main__":
    main()
