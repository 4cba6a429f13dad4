"""Would a verifier cross-encoder decline near-topic questions better than the reader's answerability?

An experiment for issue #15 (near-topic questions answered with an unrelated quote), not a
shipped model.  The verifier is the bundled multilingual-e5-small read as a cross-encoder over
``<s> question </s></s> sentence </s>`` (``span_model.encode_pair``), its top ``--layers`` layers
fine-tuned with a logistic head on the mean of the last hidden states: does this sentence answer
this question?  It is trained on cmrc2018_dev only (for each question: its gold sentence, and the
sentence most like the question of the gold passage and of another passage of the same title,
neither holding the answer) and measured on drcd_dev's retrievals (never seen in training): for
each sampled question, the sentence the shipped reader would quote first for

* normal: the retrieved passages (right when it is a gold passage's sentence holding the answer);
* masked: the retrieved passages without the gold ones (``train_reader``'s masked copy);
* holed: the retrieved passages with the answer's sentences cut out of the gold ones
  (``train_reader.holed``: the near-topic case).

Printed: the ROC AUC of the reader's answerability, the verifier and both together (a logistic
over the two, fitted on half the questions and scored on the other half), and, for each score,
the shares answered when its cut declines a further 0 / 1 / 3 % of the questions the reader
answers right.  ~15 min on 2 cores (torch is needed: ``bash scripts/dev setup`` installs it).

    .venv/bin/python bench/bench_verifier.py
    .venv/bin/python bench/bench_verifier.py --questions 100 --train-questions 300 --layers 1 --epochs 1   # a quick try
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

import train_reader as TR  # noqa: E402  (after the path set-up)
import train_span as TS  # noqa: E402

from sme_qa import span_model as M  # noqa: E402
from sme_qa.reading_features import SHORT_SENTENCE  # noqa: E402
from sme_qa.text import sentence_spans  # noqa: E402

TRAIN, TEST = "cmrc2018_dev", "drcd_dev"
SEED = 15


@dataclass(frozen=True)
class Pair:
    pair: M.Pair  # what train_span's batching helpers read
    y: int


def decision_rows(n: int) -> list[dict]:
    """The reader's first sentence for the normal, masked and holed copies of n drcd_dev questions."""
    from sme_qa import reader as R
    from sme_qa.question import analyse_with

    rows = [json.loads(line) for line in (EVAL / TEST / "questions.jsonl").open(encoding="utf-8") if line.strip()]
    rng = np.random.default_rng(SEED)
    rows = [rows[i] for i in sorted(rng.choice(len(rows), size=min(n, len(rows)), replace=False))]
    searcher = TR.searcher_for(EVAL, TEST)
    view, model = searcher.view(), R.shipped_model()
    searcher.embed_queries([r["question"] for r in rows])
    out = []
    for qi, row in enumerate(rows):
        q = analyse_with(view, row["question"])
        hits = searcher.retrieve(row["question"], TR.DEPTH)
        gold = set(row["gold_pids"])
        normal, masked = hits[: TR.K], [h for h in hits if h.doc_id not in gold][: TR.K]
        for variant, hs in (("normal", normal), ("masked", masked), ("holed", TR.holed(normal, gold, row["answers"]))):
            reading = R.read(q, hs, view, model) if hs else None
            if not reading or not reading.candidates:
                continue
            c = reading.candidates[0]
            right = variant == "normal" and c.hit.doc_id in gold and TR.contains(c.quote, row["answers"])
            out.append(
                {
                    "q": row["question"],
                    "s": c.quote,
                    "y": int(right),
                    "variant": variant,
                    "p": reading.probability,
                    "answered": reading.answerable,
                    "qi": qi,
                }
            )
    return out


def _most_like(question: str, sentences: list[str]) -> str:
    chars = set(question)
    return max(sentences, key=lambda x: sum(ch in chars for ch in x) / math.sqrt(len(x)))


def training_pairs(tokenizer, limit: int | None = None) -> list[Pair]:
    """cmrc2018_dev: each question's gold sentence (1) and two sentences most like it that lack the answer (0)."""
    passages, by_title = {}, {}
    for line in (EVAL / TRAIN / "passages.jsonl").open(encoding="utf-8"):
        r = json.loads(line)
        passages[r["pid"]] = r
        by_title.setdefault(r["title"], []).append(r["pid"])
    rng = np.random.default_rng(SEED)

    def sentences(pid: str) -> list[str]:
        text = passages[pid]["text"]
        return [x for a, b in sentence_spans(text) if len(x := text[a:b].strip()) >= SHORT_SENTENCE]

    out = []
    lines = (EVAL / TRAIN / "questions.jsonl").read_text(encoding="utf-8").splitlines()
    for line in lines[:limit]:
        row = json.loads(line)
        question, answers, pid = row["question"], row["answers"], row["gold_pids"][0]
        own = sentences(pid)
        positives = [x for x in own if TR.contains(x, answers)]
        if not positives:
            continue
        others = [p for p in by_title[passages[pid]["title"]] if p != pid]
        other = sentences(others[int(rng.integers(len(others)))]) if others else []
        items = [(positives[0], 1)]
        for pool in (own, other):
            if negatives := [x for x in pool if not TR.contains(x, answers)]:
                items.append((_most_like(question, negatives), 0))
        for sentence, y in items:
            if (pair := M.encode_pair(tokenizer, question, sentence, M.WINDOW)) is not None:
                out.append(Pair(pair, y))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=1000, help="drcd_dev questions measured")
    ap.add_argument("--layers", type=int, default=4, help="top layers fine-tuned")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--train-questions", type=int, help="only the first N cmrc2018_dev questions (a quick try)")
    args = ap.parse_args(argv)
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from tokenizers import Tokenizer

    from sme_qa import bundled_st

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    rows = decision_rows(args.questions)
    base_dir = bundled_st.materialize()
    tokenizer = Tokenizer.from_file(str(base_dir / "tokenizer.json"))
    base = M.read_safetensors(base_dir / "model.safetensors")
    train = training_pairs(tokenizer, args.train_questions)
    test = [Pair(M.encode_pair(tokenizer, r["q"], r["s"], M.WINDOW), r["y"]) for r in rows]
    print(
        f"{len(train)} training pairs ({sum(p.y for p in train)} positive), {len(test)} decision rows, {time.perf_counter() - t0:.0f} s",
        flush=True,
    )

    keep = 12 - args.layers
    enc, frozen = M.Encoder(base, 12), TS.torch_layers(base, range(keep))
    for layer in frozen:
        layer.eval()

    def cached(data: list[Pair]) -> dict[int, np.ndarray]:
        """The frozen layers' output per example, once."""
        out = {}
        with torch.no_grad():
            for chunk in TS.batches(range(len(data)), data, 32):
                ids, mask = TS.pad(chunk, data)
                h, m = torch.from_numpy(enc.embed(ids)), torch.from_numpy(mask)
                for layer in frozen:
                    h = layer(h, m)
                for r, i in enumerate(chunk):
                    out[i] = h[r, : len(data[i].pair.ids)].numpy().astype(np.float16)
        return out

    train_h, test_h = cached(train), cached(test)
    layers = TS.torch_layers(base, range(keep, 12))
    head = torch.nn.Linear(384, 1)
    torch.nn.init.normal_(head.weight, std=0.02)
    torch.nn.init.zeros_(head.bias)
    groups = [
        {"params": [p for layer in layers for p in layer.parameters()], "lr": args.lr},
        {"params": list(head.parameters()), "lr": 1e-3},
    ]
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    steps = args.epochs * math.ceil(len(train) / 32)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, 1 - s / steps))

    def logits(data, h_cache, chunk, training: bool):
        for layer in layers:
            layer.train(training)
        h, m = TS.frozen_output(chunk, data, h_cache, torch)
        for layer in layers:
            h = layer(h, m)
        return head((h * m[..., None]).sum(1) / m.sum(1, keepdim=True)).squeeze(-1)

    rng = np.random.default_rng(SEED)
    for epoch in range(args.epochs):
        chunks = TS.batches(list(range(len(train))), train, 32)
        rng.shuffle(chunks)
        for chunk in chunks:
            y = torch.tensor([float(train[i].y) for i in chunk])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(train, train_h, chunk, True), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"  epoch {epoch + 1}: last loss {loss.item():.3f}, {time.perf_counter() - t0:.0f} s", flush=True)
    verifier = np.zeros(len(test))
    with torch.no_grad():
        for chunk in TS.batches(list(range(len(test))), test, 64):
            verifier[chunk] = logits(test, test_h, chunk, False).numpy()

    y = np.array([r["y"] for r in rows])
    variant = np.array([r["variant"] for r in rows])
    p = np.array([r["p"] for r in rows])
    answered = np.array([r["answered"] for r in rows])
    half = np.array([r["qi"] for r in rows]) % 2
    both = np.zeros(len(rows))
    features = np.c_[np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1)), verifier]
    for h in (0, 1):
        fit = LogisticRegression(class_weight="balanced").fit(features[half != h], y[half != h])
        both[half == h] = fit.decision_function(features[half == h])
    near = (variant == "holed") | (y > 0)
    normal = (variant == "normal").sum()
    print("\n| score | AUC | AUC holed vs right | extra declined | right | masked answered | holed answered | wrong (answerable) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, score in (("reader answerability", p), ("verifier", verifier), ("both", both)):
        for extra in (0.0, 0.01, 0.03):
            cut = np.quantile(score[answered & (y > 0)], extra) if extra else -np.inf
            kept = answered & (score >= cut)
            print(
                f"| {name} | {roc_auc_score(y, score):.3f} | {roc_auc_score(y[near], score[near]):.3f} | {extra:.0%} | "
                f"{(kept & (y > 0)).sum() / normal:.3f} | {kept[variant == 'masked'].mean():.3f} | {kept[variant == 'holed'].mean():.3f} | "
                f"{(kept & (y == 0) & (variant == 'normal')).sum() / normal:.3f} |"
            )
    print(f"\n{time.perf_counter() - t0:.0f} s (layers {keep}..11 tuned, {args.epochs} epoch(s), lr {args.lr})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
