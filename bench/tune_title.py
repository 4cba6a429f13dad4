"""Does prepending the article title to each chunk help the dense leg?  Measured, not assumed.

    .venv/bin/python bench/tune_title.py [SET ...]     (default: xquad_zh cmrc2018_dev seed_qa)

For each set the chunks of the index built by ``sme-qa eval`` are embedded twice with the
same model, as "title\\ntext" and as the bare text (the default since this measurement),
and the dense leg is scored both ways (exact cosine, document hit
as in ``sme-qa eval``; seed questions by answer string over the sample corpus).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"


def main() -> None:
    from sme_qa.embedding import load_embedder
    from sme_qa.evaluate import _resolve, is_hit, read_questions
    from sme_qa.indexing import build_index
    from sme_qa.store import load_generation

    sets = sys.argv[1:] or ["xquad_zh", "cmrc2018_dev", "seed_qa"]
    embedder = load_embedder(None, purpose="index")
    rows = []
    for name in sets:
        seed = name == "seed_qa"
        qpath = EVAL / "seed_qa.jsonl" if seed else EVAL / name / "questions.jsonl"
        corpus, vectors = _resolve(qpath, str(ROOT / "corpus") if seed else None, None, True)
        if seed:
            vectors = vectors.parent / "seed_qa-sample"
        build_index(corpus, vectors)
        gen = load_generation(vectors)
        with_title = embedder.embed_passages([f"{c['title']}\n{c['text']}" for c in gen.chunks])
        bare = embedder.embed_passages([c["text"] for c in gen.chunks])
        questions = [q for q in read_questions(qpath) if q.get("gold_pids") or q.get("docs")]
        qv = embedder.embed_queries([q["question"] for q in questions])
        for label, passages in (("title + text", with_title), ("text only (default)", bare)):
            scores = qv @ passages.T
            r1 = r5 = mrr = 0.0
            for i, q in enumerate(questions):
                top = np.argsort(-scores[i])[:10]
                rank = next((r for r, j in enumerate(top, 1) if is_hit(q, gen.chunks[j]["doc_id"], gen.chunks[j]["text"])), None)
                r1 += rank == 1
                r5 += rank is not None and rank <= 5
                mrr += 1 / rank if rank else 0.0
            n = len(questions)
            rows.append((name, label, r1 / n, r5 / n, mrr / n))
    print("| set | dense leg embeds | R@1 | R@5 | MRR@10 |\n|---|---|---|---|---|")
    for name, label, r1, r5, mrr in rows:
        print(f"| {name} | {label} | {r1:.3f} | {r5:.3f} | {mrr:.3f} |")


if __name__ == "__main__":
    main()
