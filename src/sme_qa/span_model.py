"""The neural short answer: where in the chosen sentence the answer starts and ends.

A cross-encoder over the question and one sentence (``<s> question </s></s> sentence </s>``):
the bundled multilingual-e5-small's twelve layers, the top ``Head.layers`` of them fine-tuned
with a start/end head (``models/span_reader.safetensors``, trained by ``scripts/train_span.py`` on
the gold sentences of cmrc2018_dev and drcd_dev only).  Run in numpy, so answering never imports
torch: one sentence costs about 2.5 GFLOP (~30 ms on one core; a question's sentences are read
in two length groups on two threads, ``READ_THREADS``).

The base weights come from the bundled model's sentence-transformers directory
(``bundled_st.materialize``, built once in the cache dir, then memory-mapped: only the word vectors
of the tokens in use are read).  When the bundled model or the shipped head is missing, the
caller falls back to the feature span model of ``spans.py``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

HEAD_FILE = "span_reader.safetensors"
RANKER_FILE = "sentence_ranker.safetensors"
MAX_QUESTION_TOKENS = 48
MAX_SENTENCE_TOKENS = 160
MAX_ANSWER_TOKENS = 24
# At answer time a longer sentence is cut to this many tokens around the question's words: the
# cost grows with every token.  Span F1 on the 673 held-out gold sentences of scripts/train_span.py:
# whole 0.7175, cut to 96 0.7175, 80 0.7160, 64 0.7156; but at 64 a sample-corpus sentence of 86
# tokens lost its answer (the question's words stand at its start, the 40％ at its end).
WINDOW = 96
HEADS = 12
EPS = 1e-12
_LAYER = "encoder.layer.{}."
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I8": np.int8}
SCALE_SUFFIX = ".row_scale"  # an int8 matrix of the head file is q * scale[row]


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a read-only view of one memory map (no copy)."""
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = data[a:b].view(_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to 1.5e-7 (Abramowitz & Stegun 7.1.26): numpy has none, and scipy is not a dependency."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return s * (1.0 - poly * np.exp(-a * a))


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    m = x.mean(-1, keepdims=True)
    d = x - m
    v = (d * d).mean(-1, keepdims=True)
    return d / np.sqrt(v + EPS) * g + b


class Encoder:
    """BERT layers in numpy over named tensors (the Hugging Face ``BertModel`` names)."""

    def __init__(self, tensors: Mapping[str, np.ndarray], layers: int = 12) -> None:
        self.t = tensors
        self.layers = layers
        self._fp32: dict[str, np.ndarray] = {}

    def w(self, name: str) -> np.ndarray:
        got = self._fp32.get(name)
        if got is None:
            got = self._fp32[name] = np.ascontiguousarray(self.t[name], dtype=np.float32)
        return got

    def _qkv(self, p: str, part: str) -> np.ndarray:
        """The query, key and value weights (``part`` "weight") or biases ("bias") stacked."""
        key = f"{p}qkv.{part}"
        got = self._fp32.get(key)
        if got is None:
            got = self._fp32[key] = np.concatenate([self.w(f"{p}attention.self.{n}.{part}") for n in ("query", "key", "value")])
        return got

    def embed(self, ids: np.ndarray) -> np.ndarray:
        """[B, T] token ids → [B, T, H] input vectors (word + position + type 0, layer-normed)."""
        words = np.asarray(self.t["embeddings.word_embeddings.weight"][ids.reshape(-1)], dtype=np.float32)
        h = words.reshape(*ids.shape, -1) + self.w("embeddings.position_embeddings.weight")[: ids.shape[1]]
        h = h + self.w("embeddings.token_type_embeddings.weight")[0]
        return _layer_norm(h, self.w("embeddings.LayerNorm.weight"), self.w("embeddings.LayerNorm.bias"))

    def layer(self, h: np.ndarray, mask: np.ndarray, i: int, first_only: bool = False) -> np.ndarray:
        """One transformer layer; ``mask`` is [B, T] with 1 for real tokens.  ``first_only``: only
        the first token's output ([B, 1, H], the same values), what a head on it reads: its
        query, attention output and feed-forward are computed for one token, keys and values for all."""
        p = _LAYER.format(i)
        w = self.w
        bsz, n, hidden = h.shape
        d = hidden // HEADS
        x = h.reshape(bsz * n, hidden)

        def heads(m: np.ndarray, t: int) -> np.ndarray:
            return m.reshape(bsz, t, HEADS, d).transpose(0, 2, 1, 3)

        qkv_w, qkv_b = self._qkv(p, "weight"), self._qkv(p, "bias")
        if first_only:
            kv = x @ qkv_w[hidden:].T + qkv_b[hidden:]
            x = h[:, 0]
            q = heads(x @ qkv_w[:hidden].T + qkv_b[:hidden], 1)
            k, v = heads(kv[:, :hidden], n), heads(kv[:, hidden:], n)
        else:
            qkv = x @ qkv_w.T + qkv_b  # one matrix product for the three projections
            q, k, v = (heads(qkv[:, j * hidden : (j + 1) * hidden], n) for j in range(3))
        out = q.shape[2]
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + ((1.0 - mask) * -1e9)[:, None, None, :]
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(bsz * out, hidden)
        a = ctx @ w(p + "attention.output.dense.weight").T + w(p + "attention.output.dense.bias")
        x = _layer_norm(a + x, w(p + "attention.output.LayerNorm.weight"), w(p + "attention.output.LayerNorm.bias"))
        f = x @ w(p + "intermediate.dense.weight").T + w(p + "intermediate.dense.bias")
        f = 0.5 * f * (1.0 + _erf(f / math.sqrt(2.0)))
        o = f @ w(p + "output.dense.weight").T + w(p + "output.dense.bias")
        x = _layer_norm(o + x, w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias"))
        return x.reshape(bsz, out, hidden)

    def forward(
        self, ids: np.ndarray, mask: np.ndarray, start: int = 0, stop: int | None = None, h: np.ndarray | None = None
    ) -> np.ndarray:
        """Hidden states after layers ``start``..``stop``-1 (from the embeddings when ``h`` is None)."""
        h = self.embed(ids) if h is None else h
        m = mask.astype(np.float32)
        for i in range(start, self.layers if stop is None else stop):
            h = self.layer(h, m, i)
        return h


@dataclass(frozen=True)
class Pair:
    """A tokenised (question, sentence) pair and where each sentence token lies in the sentence."""

    ids: np.ndarray  # [T] int64
    offsets: tuple[tuple[int, int], ...]  # per token, in the sentence; (0, 0) outside it
    first: int  # index of the sentence's first token
    last: int  # index of its last token (inclusive)


def encode_pair(tokenizer: Any, question: str, sentence: str, window: int = MAX_SENTENCE_TOKENS) -> Pair | None:
    """``<s> question </s></s> sentence </s>``, the question cut to MAX_QUESTION_TOKENS; of a
    sentence longer than ``window`` tokens, the ``window`` consecutive tokens that share the most
    characters with the question (the answer stands near the question's words).  None when the
    sentence has no token."""
    q = tokenizer.encode(question, add_special_tokens=False)
    s = tokenizer.encode(sentence, add_special_tokens=False)
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    q_ids = q.ids[:MAX_QUESTION_TOKENS]
    s_ids, s_off = list(s.ids), list(s.offsets)
    if not s_ids:
        return None
    if len(s_ids) > window:
        chars = set(question)
        shared = np.array([sum(ch in chars for ch in sentence[a:b]) for a, b in s_off], dtype=np.int64)
        sums = np.convolve(shared, np.ones(window, dtype=np.int64), mode="valid")
        at = int(np.argmax(sums))
        s_ids, s_off = s_ids[at : at + window], s_off[at : at + window]
    ids = [bos, *q_ids, eos, eos, *s_ids, eos]
    first = len(q_ids) + 3
    offsets = ((0, 0),) * first + tuple((int(a), int(b)) for a, b in s_off) + ((0, 0),)
    return Pair(np.asarray(ids, dtype=np.int64), offsets, first, first + len(s_ids) - 1)


def gold_sentence(text: str, start: int, answer: str) -> tuple[str, int, int] | None:
    """The sentence of ``text`` that holds ``answer`` at ``start`` (white space stripped) and the
    answer's offsets in it; None when the answer is not there or crosses a sentence boundary."""
    from .text import sentence_spans

    end = start + len(answer)
    if text[start:end] != answer:
        return None
    for a, b in sentence_spans(text):
        if a <= start and end <= b:
            raw = text[a:b]
            lead = len(raw) - len(raw.lstrip())
            return raw.strip(), start - a - lead, end - a - lead
    return None


def best_tokens(start: np.ndarray, end: np.ndarray, pair: Pair, sentence: str, one_clause: bool = False) -> tuple[int, int, float]:
    """The (first, last) sentence tokens maximising start + end logit (last − first <
    MAX_ANSWER_TOKENS, covering at least one visible character; with ``one_clause``, not across
    a comma, 、 or ；), and the probability of that pair under the two softmaxes over the
    sentence's tokens."""
    lo, hi = pair.first, pair.last + 1
    s, e = start[lo:hi].astype(np.float64), end[lo:hi].astype(np.float64)
    pieces = [sentence[a:b] for a, b in pair.offsets[lo:hi]]
    visible = np.array([bool(p.strip()) for p in pieces])
    s = np.where(visible, s, -np.inf)
    e = np.where(visible, e, -np.inf)
    n = len(s)
    grid = s[:, None] + e[None, :]
    i, j = np.indices((n, n))
    bad = (j < i) | (j - i >= MAX_ANSWER_TOKENS)
    if one_clause:
        breaks = np.concatenate([[0], np.cumsum([bool(_CLAUSE_BREAK.search(p)) for p in pieces])])
        bad |= breaks[j + 1] - breaks[i] > 0
    grid[bad] = -np.inf
    a, b = np.unravel_index(int(np.argmax(grid)), grid.shape)
    if not np.isfinite(grid[a, b]):
        return lo, lo, 0.0
    log_z = _logsumexp(s) + _logsumexp(e)
    return lo + int(a), lo + int(b), float(math.exp(grid[a, b] - log_z))


_CLAUSE_BREAK = re.compile(r"[，,、；;。]")


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + math.log(float(np.exp(x - m).sum()))


@dataclass(frozen=True)
class Found:
    start: int  # character offsets in the sentence
    end: int
    score: float  # probability of the span under the start and end softmaxes over the sentence
    logit: float = 0.0  # start + end logit of the span, not normalised: comparable across sentences


class SpanReader:
    """The fine-tuned cross-encoder: ``find(question, sentence)`` → the answer's characters."""

    def __init__(self, tokenizer: Any, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        self.tokenizer = tokenizer
        self.encoder = Encoder(tensors, int(meta.get("layers_total", 12)))
        self.threshold = float(meta.get("threshold", 0.0))
        self.meta = dict(meta)
        self.head_w = np.ascontiguousarray(tensors["span_head.weight"], dtype=np.float32)  # [2, H]
        self.head_b = np.ascontiguousarray(tensors["span_head.bias"], dtype=np.float32)

    def logits(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        ids = pair.ids[None, :]
        with _blas().limit(limits=1, user_api="blas"):
            h = self.encoder.forward(ids, np.ones_like(ids))[0]
        out = h @ self.head_w.T + self.head_b
        return out[:, 0], out[:, 1]

    def read_many(self, question: str, sentences: Sequence[str], window: int = WINDOW, one_clause: bool = False) -> list[Found | None]:
        """``find`` for each sentence, in one batched forward pass (padded: the same spans and
        logits; three sentences ~10 % faster than one at a time)."""
        return self.rank_and_read(question, sentences, None, window, one_clause)[1]

    def rank_and_read(
        self,
        question: str,
        sentences: Sequence[str],
        ranker: SentenceRanker | None,
        window: int = WINDOW,
        one_clause: bool = False,
    ) -> tuple[np.ndarray, list[Found | None]]:
        """The ranker's logit (−inf for a sentence without tokens; zeros without a ranker) and the
        span for each sentence, in one batched pass: the ranker's layer reads the output of the
        bottom layers the two models share (``SentenceRanker.depth``)."""
        pairs = [encode_pair(self.tokenizer, question, s, window) for s in sentences]
        live = [(i, p) for i, p in enumerate(pairs) if p is not None]
        found: list[Found | None] = [None] * len(sentences)
        ranked = np.full(len(sentences), -np.inf if ranker else 0.0)
        if not live:
            return ranked, found
        groups = _groups([len(p.ids) for _, p in live], _workers())

        def read(group: list[int]) -> tuple[np.ndarray, np.ndarray]:
            return self._pass([live[r][1] for r in group], ranker)

        with _blas().limit(limits=1, user_api="blas"):
            done = [read(groups[0])] if len(groups) == 1 else list(_pool().map(read, groups))
        for group, (logits, out) in zip(groups, done):
            for row, r in enumerate(group):
                i, p = live[r]
                k = len(p.ids)
                if ranker is not None:
                    ranked[i] = logits[row]
                found[i] = self._found(out[row, :k, 0], out[row, :k, 1], p, sentences[i], one_clause)
        return ranked, found

    def _pass(self, pairs: Sequence[Pair], ranker: SentenceRanker | None) -> tuple[np.ndarray, np.ndarray]:
        """The ranker's logits (empty without one) and the start/end logits [B, T, 2] of ``pairs``, padded to the longest."""
        n = max(len(p.ids) for p in pairs)
        ids = np.full((len(pairs), n), 1, dtype=np.int64)
        mask = np.zeros((len(pairs), n), dtype=np.float32)
        for r, p in enumerate(pairs):
            ids[r, : len(p.ids)] = p.ids
            mask[r, : len(p.ids)] = 1
        logits = np.zeros(0)
        if ranker is None:
            h = self.encoder.forward(ids, mask)
        else:
            h = self.encoder.forward(ids, mask, 0, ranker.depth)
            logits = ranker.logits(h, mask)
            h = self.encoder.forward(ids, mask, ranker.depth, None, h)
        return logits, h @ self.head_w.T + self.head_b

    @property
    def tuned_from(self) -> int:
        """The first layer the span reader fine-tuned: the layers below are the base model's."""
        tuned = self.meta.get("layers_tuned", [])  # the tuned layers' numbers, as train_span.py writes them
        return min(tuned) if tuned else int(self.meta.get("layers_total", 12))

    def find(self, question: str, sentence: str, window: int = WINDOW, one_clause: bool = False) -> Found | None:
        """The answer's characters in ``sentence``; ``one_clause`` keeps it inside one clause
        (amounts and dates: see ``spans.short_answer``)."""
        pair = encode_pair(self.tokenizer, question, sentence, window)
        if pair is None:
            return None
        start, end = self.logits(pair)
        return self._found(start, end, pair, sentence, one_clause)

    @staticmethod
    def _found(start: np.ndarray, end: np.ndarray, pair: Pair, sentence: str, one_clause: bool) -> Found | None:
        a, b, p = best_tokens(start, end, pair, sentence, one_clause)
        logit = float(start[a] + end[b])
        s, e = pair.offsets[a][0], pair.offsets[b][1]
        while s < e and sentence[s].isspace():
            s += 1
        while e > s and sentence[e - 1].isspace():
            e -= 1
        return Found(s, e, p, logit) if e > s else None


class SentenceRanker:
    """Does this sentence answer the question?  Fine-tuned layers and a logistic head on the first
    token (``models/sentence_ranker.safetensors``, trained by ``scripts/train_ranker.py`` on
    cmrc2018_dev and drcd_dev only), reading the output of the base model's layers below
    ``depth``, which the span reader shares.  The first of its layers is shipped whole; any above
    it as the base model's with a low-rank delta (``<matrix>.lora_a``, ``.lora_b``: W + B·A), so
    they cost the package ~0.2 MB each.  Only the first token's output of the top layer is
    computed (``Encoder.layer``'s ``first_only``)."""

    def __init__(self, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any], base: Mapping[str, np.ndarray] | None = None) -> None:
        self.depth = int(meta["from_layer"])
        self.top = self.depth + int(meta.get("layers", 1))
        own = {name.removeprefix("ranker."): t for name, t in tensors.items() if name.startswith("ranker.")}
        self.encoder = Encoder(merged_tensors({}, _with_deltas(own, base or {})), self.top)
        self.head_w = np.ascontiguousarray(tensors["ranker_head.weight"], dtype=np.float32)[0]  # [H]
        self.head_b = float(np.asarray(tensors["ranker_head.bias"], dtype=np.float32)[0])
        self.meta = dict(meta)

    def logits(self, h: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """[B] logits from the shared layers' output ``h`` [B, T, H]."""
        m = mask.astype(np.float32)
        for i in range(self.depth, self.top - 1):
            h = self.encoder.layer(h, m, i)
        x = self.encoder.layer(h, m, self.top - 1, first_only=True)
        return np.asarray(x[:, 0] @ self.head_w + self.head_b, dtype=np.float64)


LORA_A, LORA_B = ".lora_a", ".lora_b"


def _with_deltas(own: Mapping[str, np.ndarray], base: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``own`` with each low-rank delta pair replaced by its matrix: the base one plus B·A."""
    out = {name: t for name, t in own.items() if not name.endswith((LORA_A, LORA_B))}
    for name in own:
        if name.endswith(LORA_A):
            matrix = name.removesuffix(LORA_A)
            if matrix not in base:
                raise KeyError(f"{matrix}: the ranker's delta needs the base model's matrix")
            a = np.asarray(own[name], dtype=np.float32)
            b = np.asarray(own[matrix + LORA_B], dtype=np.float32)
            out[matrix] = np.asarray(base[matrix], dtype=np.float32) + b @ a
    return out


# The sentences of one question are read in up to READ_THREADS groups at once, each on its own
# thread with one BLAS thread (numpy releases the GIL in its matrix products): no OpenMP team
# waits at a barrier for a thread whose core is busy (``_blas``), so a busy machine costs what
# one thread would, and a free one reads two groups in the time of one.  Grouped by length,
# each padded only to its own longest.
READ_THREADS = 2


def _groups(lengths: Sequence[int], workers: int) -> list[list[int]]:
    """Indices of ``lengths`` in up to ``workers`` groups of consecutive lengths (longest first),
    balanced by padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if workers <= 1 or len(order) <= 1:
        return [order]
    best = [order]
    cost = len(order) * lengths[order[0]]
    for cut in range(1, len(order)):  # two groups: the longest ``cut`` sentences, and the rest
        split = max(cut * lengths[order[0]], (len(order) - cut) * lengths[order[cut]])
        if split < cost:
            best, cost = [order[:cut], order[cut:]], split
    return best


def _workers() -> int:
    return max(1, min(READ_THREADS, os.cpu_count() or 1))


@functools.lru_cache(maxsize=1)
def _pool() -> Any:
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="sme-qa-read")


@functools.lru_cache(maxsize=1)
def _blas() -> Any:
    """One BLAS thread for the encoder's small matrices: on two busy cores OpenBLAS's second
    thread made one sentence 5-8x slower (40 tokens: 212 ms on one thread, 1,429 ms on two, load 4)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def head_path(name: str = HEAD_FILE) -> Path:
    return Path(str(resources.files("sme_qa").joinpath("models").joinpath(name)))


def merged_tensors(base: Mapping[str, np.ndarray], head: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The base model's tensors with the shipped fine-tuned ones (top layers, head) in their place."""
    out = dict(base)
    for name, t in head.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = head.get(name + SCALE_SUFFIX)
        out[name] = t.astype(np.float32) * scale.astype(np.float32)[:, None] if scale is not None else t
    return out


def file_metadata(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    meta = header.get("__metadata__", {})
    return json.loads(meta.get("sme_qa", "{}"))


_LOADING = threading.Lock()


def load(cache_dir: str | None = None) -> SpanReader | None:
    """The shipped span reader over the bundled base model, or None (logged) when either is missing.
    Loaded once per process (~1 s: the tokenizer and a memory map of the base weights)."""
    with _LOADING:
        return _load(cache_dir)


def preload() -> None:
    """Start loading the span reader and the sentence ranker in the background, so they are ready
    when the answer is composed."""
    if _load_ranker.cache_info().currsize == 0:  # loading the ranker loads the span reader first
        threading.Thread(target=load_ranker, name="sme-qa-span-reader", daemon=True).start()


@functools.lru_cache(maxsize=2)
def _load(cache_dir: str | None) -> SpanReader | None:
    from . import bundled_st
    from .errors import ModelError

    path = head_path()
    if not path.is_file():
        log.info("no %s in the package: short answers come from the feature model", HEAD_FILE)
        return None
    try:
        base_dir = bundled_st.materialize(Path(cache_dir) if cache_dir else None)
    except ModelError as e:
        log.warning("the span reader needs the bundled model (%s): short answers come from the feature model", e)
        return None
    return load_from(path, base_dir)


def load_from(path: Path, base_dir: Path | None = None) -> SpanReader:
    """A span reader from a head file (``scripts/train_span.py`` output) over the bundled base."""
    from tokenizers import Tokenizer

    from . import bundled_st

    base_dir = base_dir or bundled_st.materialize()
    tokenizer = Tokenizer.from_file(str(base_dir / "tokenizer.json"))
    tensors = merged_tensors(read_safetensors(base_dir / "model.safetensors"), read_safetensors(path))
    return SpanReader(tokenizer, tensors, file_metadata(path))


def load_ranker() -> SentenceRanker | None:
    """The shipped sentence ranker, or None (logged) when it, the span reader whose bottom layers
    it reads, or the bundled model is missing."""
    with _LOADING:
        return _load_ranker()


@functools.lru_cache(maxsize=1)
def _load_ranker() -> SentenceRanker | None:
    path = head_path(RANKER_FILE)
    reader = _load(None)
    if reader is None or not path.is_file():
        log.info("no sentence ranker (%s or the span reader missing): sentences are ranked by the reader", RANKER_FILE)
        return None
    ranker = ranker_from(path)
    if ranker.depth > reader.tuned_from:
        log.warning(
            "%s reads layer %d, above the span reader's shared layers (< %d): not used", RANKER_FILE, ranker.depth, reader.tuned_from
        )
        return None
    return ranker


def ranker_from(path: Path, base_dir: Path | None = None) -> SentenceRanker:
    """A sentence ranker from a ``scripts/train_ranker.py`` file over the bundled base."""
    from . import bundled_st

    base_dir = base_dir or bundled_st.materialize()
    return SentenceRanker(read_safetensors(path), file_metadata(path), read_safetensors(base_dir / "model.safetensors"))
