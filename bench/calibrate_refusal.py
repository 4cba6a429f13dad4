"""Calibrate the refusal rule of ``sme_qa.answer`` and print how it does.

Answerable: the answerable seed questions (../shared/eval/seed_qa.jsonl) asked of the
sample corpus.  Off-corpus: the 3,219 CMRC 2018 dev questions asked of the same five
articles, which cannot answer them; the seed ``unanswerable`` question; and a short list
of hand-written English questions the corpus does not answer (English questions carry no
lexical evidence, so they are decided on the cosine between the question and the best
of the embedded sentences).

For each question the features are what ``answer.decide`` reads: the top dense cosine,
the best sentence's idf-weighted coverage of the question's content words, and whether
the question names a place/organisation/person no retrieved passage mentions (a veto).
The script fits a class-balanced logistic regression P(answerable) = σ(b0 + b1·dense +
b2·coverage) on the Chinese questions, checks it by 2-fold cross-validation over the
off-corpus questions, and prints the table for the constants in ``sme_qa/answer.py`` and
for the fitted ones.

    .venv/bin/python bench/calibrate_refusal.py                # builds the sample index in a temp dir
    .venv/bin/python bench/calibrate_refusal.py --vectors DIR --limit 500
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from sme_qa import answer as A

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"

# Hand-written English questions the five sample articles do not answer (general knowledge,
# and business questions near the corpus's topic).  Not used to fit the Chinese rule.
ENGLISH_OFF_CORPUS = """Who won the football world cup in 1998?
What is the capital of Australia?
How many moons does Jupiter have?
When was the Eiffel Tower built?
Who wrote Pride and Prejudice?
What is the boiling point of water at sea level?
How tall is Mount Everest?
Which company makes the iPhone?
What is the population of Tokyo?
How many players are on a basketball team?
When did the Second World War end?
Who painted the Mona Lisa?
What does DNA stand for?
How many little giant enterprises are there in Shanghai?
How much did Tesla invest in its Berlin factory?
What is the interest rate set by the Federal Reserve?
Which city hosted the 2008 Summer Olympics?
How many employees does Huawei have?
What programming language is Linux written in?
How many provinces does China have?
What is the GDP of Germany?
Who is the CEO of Alibaba?
When was the Beijing Stock Exchange founded?
How many SMEs are there in the European Union?
What is the main export of Brazil?
How many hours of sleep do adults need?
What is the speed of light?
Who founded Haier?
How many patents did Lenovo file last year?
What is the tallest building in Shenzhen?""".splitlines()


def features(searcher, questions: list[str], mode: str = "hybrid") -> np.ndarray:
    """Rows of (dense, coverage, vetoed, english, sentence cosine) as ``answer.decide`` sees them."""
    rows = []
    for q in questions:
        ev = A.evidence(searcher, q, mode=mode)
        d = ev.decision
        rows.append((d.dense or 0.0, d.coverage, float(bool(d.missing)), float(ev.question.english), d.cross or 0.0))
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    """Class-balanced L2 logistic regression by Newton's method; returns (b0, b1, ...) in raw units."""
    mu, sd = x.mean(0), x.std(0) + 1e-12
    z = np.hstack([np.ones((len(x), 1)), (x - mu) / sd])
    w = np.where(y == 1, len(y) / (2 * y.sum()), len(y) / (2 * (len(y) - y.sum())))
    beta = np.zeros(z.shape[1])
    penalty = np.diag([0.0] + [l2 * len(y)] * x.shape[1])
    for _ in range(100):
        p = 1 / (1 + np.exp(-z @ beta))
        grad = z.T @ (w * (p - y)) + penalty @ beta
        hess = (z * (w * p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    slopes = beta[1:] / sd
    return np.concatenate([[beta[0] - (slopes * mu).sum()], slopes])


def answered(rows: np.ndarray, b: tuple[float, float, float], min_sentence_en: float) -> np.ndarray:
    dense, cov, vetoed, english, cross = rows.T
    zh = b[0] + b[1] * dense + b[2] * cov > 0
    en = cross >= min_sentence_en
    return np.where(english == 1, en, zh) & (vetoed == 0)


def table(name: str, b, min_en: float, seed_rows, seed, cmrc_rows, en_rows) -> None:
    ok_seed = answered(seed_rows, b, min_en)
    pos = [i for i, r in enumerate(seed) if r["kind"] != "unanswerable"]
    unans = [i for i, r in enumerate(seed) if r["kind"] == "unanswerable"]
    wrong = [seed[i]["qid"] for i in pos if not ok_seed[i]]
    print(f"\n{name}: P(answerable) = σ({b[0]:.2f} + {b[1]:.2f}·dense + {b[2]:.2f}·coverage); English: sentence cosine ≥ {min_en:.3f}")
    print(f"  {'set':<44}{'n':>6}{'declined':>10}")
    print(f"  {'off-corpus: cmrc2018_dev vs sample corpus':<44}{len(cmrc_rows):>6}{1 - answered(cmrc_rows, b, min_en).mean():>10.2%}")
    print(f"  {'off-corpus: hand-written English':<44}{len(en_rows):>6}{1 - answered(en_rows, b, min_en).mean():>10.1%}")
    print(f"  {'seed unanswerable':<44}{len(unans):>6}{1 - ok_seed[unans].mean():>10.1%}")
    print(f"  {'seed answerable (wrongly declined)':<44}{len(pos):>6}{1 - ok_seed[pos].mean():>10.1%}  {' '.join(wrong)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vectors", help="an index of the sample corpus (default: build one in a temp dir)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N cmrc questions")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from sme_qa.indexing import build_index
    from sme_qa.search import load

    with tempfile.TemporaryDirectory() as tmp:
        vectors = args.vectors or str(Path(tmp) / "vectors")
        if not args.vectors:
            build_index(ROOT / "corpus", vectors)
        searcher = load(vectors)
        seed = [json.loads(line) for line in (EVAL / "seed_qa.jsonl").read_text(encoding="utf-8").splitlines() if line]
        cmrc = [json.loads(line)["question"] for line in (EVAL / "cmrc2018_dev" / "questions.jsonl").open(encoding="utf-8")]
        cmrc = cmrc[: args.limit] if args.limit else cmrc
        started = time.perf_counter()
        seed_rows = features(searcher, [r["question"] for r in seed])
        cmrc_rows = features(searcher, cmrc)
        en_rows = features(searcher, ENGLISH_OFF_CORPUS)
        lex_seed = features(searcher, [r["question"] for r in seed], mode="lexical")
        lex_cmrc = features(searcher, cmrc, mode="lexical")
        print(f"features for {len(seed) + len(cmrc) + len(en_rows)} questions in {time.perf_counter() - started:.0f} s")

    print(f"vetoed (names a place/organisation/person no passage mentions): cmrc {cmrc_rows[:, 2].mean():.1%}, "
          f"seed {', '.join(r['qid'] for r, v in zip(seed, seed_rows[:, 2]) if v)}")
    print("seed features (dense, coverage):", ", ".join(
        f"{r['qid']}=({d:.3f}, {c:.2f})" for r, (d, c, *_) in zip(seed, seed_rows)))
    is_pos = np.array([r["kind"] != "unanswerable" for r in seed])
    zh_seed = seed_rows[:, 3] == 0
    x_pos = seed_rows[is_pos & zh_seed & (seed_rows[:, 2] == 0), :2]
    negatives = np.vstack([cmrc_rows, seed_rows[~is_pos]])
    x_neg = negatives[negatives[:, 2] == 0, :2]  # vetoed ones are declined whatever the fit
    x = np.vstack([x_pos, x_neg])
    y = np.concatenate([np.ones(len(x_pos)), np.zeros(len(x_neg))])
    fitted = fit_logistic(x, y)
    for col, name in ((0, "passage cosine"), (4, "best sentence cosine")):
        en_pos = seed_rows[is_pos & ~zh_seed, col]
        print(f"English {name}: answerable seed {', '.join(f'{d:.3f}' for d in en_pos)}; off-corpus probes "
              f"p50 {np.median(en_rows[:, col]):.3f}, p75 {np.percentile(en_rows[:, col], 75):.3f}, "
              f"p90 {np.percentile(en_rows[:, col], 90):.3f}, max {en_rows[:, col].max():.3f}")

    table("constants in sme_qa/answer.py", (A.B0, A.B_DENSE, A.B_COVERAGE), A.MIN_SENTENCE_EN, seed_rows, seed, cmrc_rows, en_rows)
    table("fitted now", tuple(fitted), A.MIN_SENTENCE_EN, seed_rows, seed, cmrc_rows, en_rows)

    # mode="lexical": no dense leg, a coverage threshold alone
    lex_pos = np.array([r["kind"] != "unanswerable" and r["kind"] != "crosslingual" for r in seed])
    for t in sorted({A.MIN_COVERAGE_LEXICAL, 0.5, 0.6, 0.7}):
        ok = lambda rows: (rows[:, 1] >= t) & (rows[:, 2] == 0)  # noqa: E731
        print(f"lexical mode, coverage ≥ {t:.2f}{' (in answer.py)' if t == A.MIN_COVERAGE_LEXICAL else ''}: "
              f"cmrc declined {1 - ok(lex_cmrc).mean():.1%}, Chinese answerable seed wrongly declined "
              f"{1 - ok(lex_seed[lex_pos]).mean():.1%} "
              f"({' '.join(r['qid'] for r, good in zip(seed, ok(lex_seed)) if not good and r['kind'] not in ('unanswerable', 'crosslingual'))})")

    # 2-fold cross-validation over the off-corpus questions (the answerable ones are too few to split)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x_neg))
    for fold, (train, test) in enumerate([(order[::2], order[1::2]), (order[1::2], order[::2])], 1):
        b = fit_logistic(np.vstack([x_pos, x_neg[train]]), np.concatenate([np.ones(len(x_pos)), np.zeros(len(train))]))
        held = x_neg[test]
        declined = (b[0] + held @ b[1:] <= 0).mean()
        kept = (b[0] + x_pos @ b[1:] > 0).mean()
        print(f"fold {fold}: b = ({b[0]:.2f}, {b[1]:.2f}, {b[2]:.2f}); held-out non-vetoed off-corpus declined "
              f"{declined:.1%}; Chinese answerable seed answered {kept:.1%}")


if __name__ == "__main__":
    main()
