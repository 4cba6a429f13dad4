"""The reader: which sentence of the retrieved passages answers the question, how sure it is,
and the short answer inside it.

For a question and its retrieved passages (``Hit``), every sentence is a ``Candidate``
described by a few dozen features (``FEATURES``: idf-weighted coverage of the question's
words, character-bigram overlap, the longest shared substring, whether the words around the
question's interrogative stand in the sentence, the answer shape the question asks for, place
names that contradict its scope, position, the passage's retrieval scores…).  A logistic model
over them (``models/reader.json``, fitted by ``scripts/train_reader.py`` on cmrc2018_dev and
drcd_dev only) gives each sentence the probability that it states the answer.  English
questions share no words with the text: the same model kind over the features that survive
translation (the sentence's embedding cosine to the question, shape, position, passage scores)
ranks their sentences.  A second logistic model over the best sentences' evidence gives the
probability that the best sentence really answers (``answerability``); below
``Model.threshold`` the question is declined.  The short answer comes from ``spans.py``.

The reader is handed a ``CorpusView`` (idf of a word, embeddings of texts): never a
searcher's internals, so it always works on one index generation.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import numpy as np

from .question import ANSWER_SHAPES, KINDS, QUANTITY, Question, match_form, strip_question_words
from .records import PARAGRAPH_SEPARATOR, Hit
from .text import sentence_spans

SHORT_SENTENCE = 8  # headings and fragments below this many characters are not quoted alone
MODEL_FILE = "reader.json"
_PAIRS = {"“": "”", "‘": "’", "「": "」", "『": "』", "《": "》", "（": "）"}
_CLOSING = {v: k for k, v in _PAIRS.items()}


class CorpusView(Protocol):
    """What the reader needs from an index: one generation's statistics and the query embedder."""

    def idf(self, term: str) -> float: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def places(self, text: str) -> frozenset[str]: ...

    def words(self, text: str) -> list[str]: ...


@dataclass(frozen=True)
class Candidate:
    """One sentence of a retrieved passage, scored against the question."""

    hit: Hit
    passage: int  # 0-based position of the hit in the retrieved list
    start: int  # offsets of the sentence in Article.text
    end: int
    quote: str
    paragraph: int
    index: int  # position of the sentence in its passage
    coverage: float  # idf-weighted share of the question's words in the sentence
    context: float  # the same over the whole passage
    typed: bool  # holds the kind of thing asked for (an amount, a date …)
    score: float  # the reader's probability that this sentence states the answer


@dataclass(frozen=True)
class Reading:
    """The reader's verdict on one question."""

    candidates: tuple[Candidate, ...]  # best first
    probability: float  # that the best candidate answers the question
    answerable: bool
    evidence: dict[str, float] = field(default_factory=dict)  # the answerability features
    peers: int = 1  # how many of the first candidates share the best one's scope and shape (may be reordered)


# ------------------------------------------------------------ sentences


def passage_sentences(hit: Hit) -> list[tuple[int, int, int, str]]:
    """(start, end, paragraph, sentence) for each sentence of ``hit``; offsets in Article.text.

    White space and a quotation mark opened in one sentence and closed in another are left out."""
    out = []
    pos, paragraph = 0, hit.paragraphs[0]
    for block in hit.text.split(PARAGRAPH_SEPARATOR):
        for a, b in sentence_spans(block):
            s, e = pos + a, pos + b
            while s < e and (hit.text[s].isspace() or _unpaired(hit.text[s:e], hit.text[s], first=True)):
                s += 1
            while e > s and (hit.text[e - 1].isspace() or _unpaired(hit.text[s:e], hit.text[e - 1], first=False)):
                e -= 1
            if e > s:
                out.append((hit.start + s, hit.start + e, paragraph, hit.text[s:e]))
        pos += len(block) + len(PARAGRAPH_SEPARATOR)
        paragraph += 1
    return out


def _unpaired(text: str, ch: str, *, first: bool) -> bool:
    pair = _PAIRS.get(ch) if first else _CLOSING.get(ch)
    if pair is None:
        return False
    opener, closer = (ch, pair) if first else (pair, ch)
    return text.count(opener) != text.count(closer)


def coverage(terms: Sequence[tuple[str, float]], text: str, context: frozenset[str] = frozenset()) -> float:
    """Idf-weighted share of ``terms`` found in ``text`` (matching form); terms found only in
    ``context`` count half."""
    total = sum(w for _, w in terms)
    if total <= 0:
        return 0.0
    got = sum(w if t in text else (0.5 * w if t in context else 0.0) for t, w in terms)
    return got / total


def longest_common(a: str, b: str) -> int:
    """Length of the longest substring of ``a`` that occurs in ``b``."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if any(a[i : i + mid] in b for i in range(len(a) - mid + 1)):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _bigrams(form: str) -> set[str]:
    chars = [c for c in form if c.isalnum()]
    return {chars[i] + chars[i + 1] for i in range(len(chars) - 1)}


# ------------------------------------------------------------ features

# The features that survive translation: shape, position and the passage's scores.
_COUNTRY_WORDS = ("全国", "我国")
_SHAPE_AND_PLACE = (
    "typed",
    "typed_new",
    *(f"typed_{k}" for k in KINDS),
    "kind_unknown",
    "log_length",
    "short",
    "first_sentence",
    "position",
    "passage_reciprocal_rank",
    "passage_score",
    "dense_gap",
)
FEATURES = (
    "coverage",
    "coverage_window",
    "coverage_passage",
    "coverage_gap",
    "bigram_recall",
    "bigram_gap",
    "bigram_precision",
    "longest_common",
    "left_context",
    "right_context",
    *_SHAPE_AND_PLACE,
    "lexical_score",
    "names_missing",
    "names_missing_passage",
    "foreign_place",
    "national_mismatch",
    "target_coverage",
)
CROSS_FEATURES = ("cosine", "cosine_gap", "cosine_rank_reciprocal", *_SHAPE_AND_PLACE)
ANSWERABILITY = (
    "best",
    "second_gap",
    "best_coverage",
    "best_bigram_recall",
    "best_longest_common",
    "best_typed",
    "coverage_passage",
    "names_missing",
    "names_missing_passage",
    "foreign_place",
    "dense_top",
    "kind_unknown",
    "target_coverage",
)
ANSWERABILITY_CROSS = ("best", "second_gap", "cosine_best", "dense_top", "best_typed", "kind_unknown")


@dataclass(frozen=True)
class _Sentence:
    hit: Hit
    passage: int
    start: int
    end: int
    paragraph: int
    index: int
    quote: str
    form: str


def sentences(hits: Sequence[Hit]) -> list[_Sentence]:
    out = []
    for i, hit in enumerate(hits):
        for j, (start, end, paragraph, quote) in enumerate(passage_sentences(hit)):
            out.append(_Sentence(hit, i, start, end, paragraph, j, quote, match_form(quote)))
    return out


def sentence_features(
    q: Question,
    hits: Sequence[Hit],
    sents: Sequence[_Sentence],
    places: Callable[[str], frozenset[str]],
    cosines: Sequence[float] | None = None,
) -> dict[str, np.ndarray]:
    """Every feature of FEATURES and CROSS_FEATURES for each sentence, as named columns."""
    n = len(sents)
    qform = match_form(strip_question_words(q.text))
    qgrams = _bigrams(qform)
    passages = [match_form(h.text) for h in hits]
    top = max((h.score for h in hits), default=1.0) or 1.0
    dense = [h.dense_score for h in hits if h.dense_score is not None]
    top_dense = max(dense) if dense else 0.0
    lexical = [h.lexical_score or 0.0 for h in hits]
    top_lexical = max(lexical, default=0.0) or 1.0
    shape = ANSWER_SHAPES.get(q.kind or "")
    question_places = set(q.places)
    col: dict[str, list[float]] = {name: [] for name in dict.fromkeys((*FEATURES, *CROSS_FEATURES, "local_mismatch"))}
    found = [frozenset(t for t, _ in q.terms if t in p) for p in passages]
    passage_cov = [coverage(q.terms, p) for p in passages]
    names_p = [_share_missing(q.names, p) for p in passages]
    for k, s in enumerate(sents):
        prev = sents[k - 1].form if k and sents[k - 1].passage == s.passage else ""
        nxt = sents[k + 1].form if k + 1 < n and sents[k + 1].passage == s.passage else ""
        grams = _bigrams(s.form)
        shared = len(qgrams & grams)
        matches = [m.group(0) for m in shape.finditer(s.form)] if shape else []
        foreign = [p for p in places(s.form) if p not in question_places and p not in qform]
        hit = s.hit
        v = col
        v["coverage"].append(coverage(q.terms, s.form, found[s.passage]))
        v["coverage_window"].append(coverage(q.terms, prev + s.form + nxt))
        v["coverage_passage"].append(passage_cov[s.passage])
        v["bigram_recall"].append(shared / len(qgrams) if qgrams else 0.0)
        v["bigram_precision"].append(shared / len(grams) if grams else 0.0)
        v["longest_common"].append(longest_common(qform, s.form) / max(len(qform), 1))
        v["left_context"].append(float(len(q.left) >= 2 and q.left[-2:] in s.form))
        v["right_context"].append(float(len(q.right) >= 2 and q.right[:2] in s.form))
        v["typed"].append(float(bool(matches)))
        v["typed_new"].append(float(any(m not in qform for m in matches)))
        for kind in KINDS:
            v[f"typed_{kind}"].append(float(bool(matches) and q.kind == kind))
        v["kind_unknown"].append(float(q.kind is None))
        v["log_length"].append(math.log1p(len(s.form)))
        v["short"].append(float(len(s.form) < SHORT_SENTENCE))
        v["first_sentence"].append(float(s.index == 0))
        v["position"].append(math.log1p(s.index))
        v["passage_reciprocal_rank"].append(1.0 / (s.passage + 1))
        v["passage_score"].append(hit.score / top)
        v["dense_gap"].append((hit.dense_score if hit.dense_score is not None else top_dense - 0.1) - top_dense)
        v["lexical_score"].append((hit.lexical_score or 0.0) / top_lexical)
        v["names_missing"].append(_share_missing(q.names, s.form))
        v["names_missing_passage"].append(names_p[s.passage])
        v["foreign_place"].append(float(bool(foreign)))
        v["national_mismatch"].append(float(q.national and _city_scoped(s.form, foreign)))
        # the mirror case: a question about one place (青岛…) and a sentence about the whole country
        local = bool(question_places) and not q.national and not any(p in s.form for p in question_places)
        v["local_mismatch"].append(float(local and any(w in s.form for w in _COUNTRY_WORDS)))
        v["target_coverage"].append(coverage(q.target, s.form) if q.target else 0.0)
    out = {name: np.asarray(values, dtype=np.float64) for name, values in col.items() if len(values) == n}
    for name in ("coverage", "bigram_recall"):
        out[name.split("_")[0] + "_gap"] = out[name] - (out[name].max() if n else 0.0)
    cos = np.asarray(cosines if cosines is not None else np.zeros(n), dtype=np.float64)
    out["cosine"] = cos
    out["cosine_gap"] = cos - (cos.max() if n else 0.0)
    order = np.argsort(-cos, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(1, n + 1)
    out["cosine_rank_reciprocal"] = 1.0 / ranks if n else ranks
    return out


def _city_scoped(form: str, foreign: Sequence[str]) -> bool:
    """Whether a sentence's figure is about another place: one of ``foreign`` comes before its
    first number and 全国/我国 does not (「目前青岛有…97家，全国排名第八」 is Qingdao's figure,
    「在全国194个创新基地中，有5个来自青岛」 the country's)."""
    if not foreign:
        return False
    number = _ANY_NUMBER.search(form)
    cut = number.start() if number else len(form)
    country = min((i for i in (form.find(w) for w in _COUNTRY_WORDS) if i >= 0), default=-1)
    if 0 <= country < cut:
        return False
    return number is None or any(0 <= form.find(p) < cut for p in foreign)


def _share_missing(names: Sequence[str], text: str) -> float:
    return sum(n not in text for n in names) / len(names) if names else 0.0


def matrix(columns: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    return np.stack([columns[name] for name in names], axis=1) if names else np.zeros((0, 0))


def answerability_features(
    cols: dict[str, np.ndarray], probs: np.ndarray, hits: Sequence[Hit], best: int | None = None
) -> dict[str, float]:
    """The evidence for 'the best sentence answers': named values (ANSWERABILITY, ANSWERABILITY_CROSS).

    ``best``: the sentence to be quoted when it is not the highest-scored one (that one cannot
    hold the answer's shape); the gap is then to the highest-scored other sentence, negative."""
    if not len(probs):
        return dict.fromkeys(ANSWERABILITY + ANSWERABILITY_CROSS, 0.0)
    order = np.argsort(-probs, kind="stable")
    b = int(order[0]) if best is None else best
    others = [int(i) for i in order if i != b]
    second = float(probs[others[0]]) if others else 0.0
    dense = [h.dense_score for h in hits if h.dense_score is not None]
    return {
        "best": _logit(float(probs[b])),
        "second_gap": _logit(float(probs[b])) - _logit(second),
        "best_coverage": float(cols["coverage"][b]),
        "best_bigram_recall": float(cols["bigram_recall"][b]),
        "best_longest_common": float(cols["longest_common"][b]),
        "best_typed": float(cols["typed_new"][b]),
        "coverage_passage": float(cols["coverage_passage"].max()),
        "names_missing": float(cols["names_missing"][b]),
        "names_missing_passage": float(cols["names_missing_passage"].min()),
        "foreign_place": float(cols["national_mismatch"][b]),
        "dense_top": max(dense) if dense else math.nan,  # unknown without the dense leg (mode="lexical")
        "kind_unknown": float(cols["kind_unknown"][b]),
        "target_coverage": float(cols["target_coverage"][b]),
        "cosine_best": float(cols["cosine"].max()),
    }


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))))


# ------------------------------------------------------------ the model


@dataclass(frozen=True)
class Linear:
    """A logistic model over named features: standardise, dot, sigmoid."""

    names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return np.zeros(0)
        return _sigmoid(((x - self.mean) / self.scale) @ self.weights + self.bias)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.names),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Linear:
        return cls(tuple(d["features"]), np.asarray(d["mean"]), np.asarray(d["scale"]), np.asarray(d["weights"]), float(d["bias"]))


@dataclass(frozen=True)
class Model:
    """The shipped reader: sentence scorers and answerability rules for Chinese and English questions."""

    sentence: Linear
    sentence_cross: Linear
    answerable: Linear
    answerable_cross: Linear
    span: Linear
    threshold: float  # decline below this probability that the best sentence answers
    threshold_cross: float
    span_threshold: float  # show the short answer from this span probability on
    extra_ratio: float = 0.8  # quote a second sentence rated at least this share of the best
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "sentence": self.sentence.to_dict(),
            "sentence_cross": self.sentence_cross.to_dict(),
            "answerable": self.answerable.to_dict(),
            "answerable_cross": self.answerable_cross.to_dict(),
            "span": self.span.to_dict(),
            "threshold": self.threshold,
            "threshold_cross": self.threshold_cross,
            "span_threshold": self.span_threshold,
            "extra_ratio": self.extra_ratio,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Model:
        return cls(
            Linear.from_dict(d["sentence"]),
            Linear.from_dict(d["sentence_cross"]),
            Linear.from_dict(d["answerable"]),
            Linear.from_dict(d["answerable_cross"]),
            Linear.from_dict(d["span"]),
            float(d["threshold"]),
            float(d["threshold_cross"]),
            float(d["span_threshold"]),
            float(d.get("extra_ratio", 0.8)),
            d.get("meta", {}),
        )


@functools.lru_cache(maxsize=1)
def shipped_model() -> Model:
    """The model in the package (``sme_qa/models/reader.json``), read on first use."""
    text = resources.files("sme_qa").joinpath("models").joinpath(MODEL_FILE).read_text(encoding="utf-8")
    return Model.from_dict(json.loads(text))


# An English question's sentences are embedded: those of its best CROSS_PASSAGES passages, at most
# CROSS_SENTENCES (a bound on the work: ~12 ms a sentence with the C engine).
CROSS_PASSAGES = 3
CROSS_SENTENCES = 24


def read(q: Question, hits: Sequence[Hit], corpus: CorpusView, model: Model | None = None) -> Reading:
    """Score every sentence of ``hits`` for ``q`` and decide whether the best one answers it."""
    model = model or shipped_model()
    sents = sentences(hits[:CROSS_PASSAGES])[:CROSS_SENTENCES] if q.english else sentences(hits)
    if not sents or q.content_free:
        return Reading((), 0.0, False)
    cosines = None
    if q.english:
        vectors = corpus.embed([q.text] + [s.quote for s in sents])
        cosines = (vectors[1:] @ vectors[0]).tolist()
    cols = sentence_features(q, hits, sents, corpus.places, cosines)
    return judge(q, hits, sents, cols, model)


def judge(q: Question, hits: Sequence[Hit], sents: Sequence[_Sentence], cols: dict[str, np.ndarray], model: Model) -> Reading:
    """The reading from the sentences' features (``read`` after ``sentence_features``; the training
    script calls it on the features it collected)."""
    scorer = model.sentence_cross if q.english else model.sentence
    probs = scorer.predict(matrix(cols, scorer.names))
    rule, threshold = (model.answerable_cross, model.threshold_cross) if q.english else (model.answerable, model.threshold)
    candidates = [
        Candidate(
            s.hit,
            s.passage,
            s.start,
            s.end,
            s.quote,
            s.paragraph,
            s.index,
            float(cols["coverage"][i]),
            float(cols["coverage_passage"][i]),
            bool(cols["typed"][i]),
            float(probs[i]),
        )
        for i, s in enumerate(sents)
    ]
    # Scope is a constraint, not a preference: a question about the whole country (全国, 我国) is
    # not answered by a sentence about one city while a sentence without another place competes,
    # nor a question about one city by a sentence about the whole country.  So is the answer's
    # shape: a sentence that cannot hold the amount or date asked for (``shape_ok``) ranks after
    # every one of the same scope that can, and the question is declined only when none can.
    # Measured by ``scripts/train_reader.py`` (``rule_table``: the "v0.3 shape rule" rows of the
    # model card) on the cmrc2018_dev + drcd_dev retrievals.  The answerability is then that of the
    # sentence to be quoted (``answerability_features(best=…)``).
    mismatch = np.maximum(cols["national_mismatch"], cols["local_mismatch"])
    shaped = [shape_ok(q, c) for c in candidates]
    order = sorted(
        range(len(candidates)),
        key=lambda i: (bool(mismatch[i]), not shaped[i], -candidates[i].score, candidates[i].passage, candidates[i].start),
    )
    ranked = tuple(candidates[i] for i in order)
    top = order[0]
    evidence = answerability_features(cols, probs, hits, None if probs[top] >= probs.max() else top)
    row = np.asarray([[evidence[name] for name in rule.names]])
    row = np.where(np.isnan(row), rule.mean, row)  # an unknown value counts as the training average
    p = float(rule.predict(row)[0])
    key = (bool(mismatch[top]), shaped[top])
    peers = next((j for j, i in enumerate(order) if (bool(mismatch[i]), shaped[i]) != key), len(order))
    return Reading(ranked, p, p >= threshold and shaped[top], evidence, peers)


_ANY_NUMBER = re.compile(r"\d|[一二两三四五六七八九十百千万亿]")
_ANY_DATE = re.compile(r"\d|[年月日]|今年|去年|明年|近日|年初|年底|世纪|年代")
# Measure words that answer each other (多少人 → 300名员工); any other unit answers only itself.
_SAME_UNIT = (frozenset("名人位"), frozenset("家户所"))
# Counters of things: a count of them comes with its counter.  Time units (天, 年, 次) are left
# out: web text answers 「几天到账」 with 「3-7个工作日」.
_COUNTERS = frozenset("家户所名人位台个项款类件座条份吨")
# Money as web text writes it too (300块, ¥300), not only 元.
_MONEY = re.compile(r"元|块钱|\d\s*块|[¥￥$]|rmb|人民币|美金|费用|价格|售价")


def shape_ok(q: Question, best: Candidate) -> bool:
    """Whether a sentence (``best``: a candidate for the best) can hold the kind of answer asked for.

    A question asking for an amount or a date is not answered by a sentence without a number or
    date word; one asking 多少家/多少台 needs a number with that counter (多少名员工 is not
    answered by 「25天」), one asking 多少钱 a sum of money; a count about a place (深圳市有多少家…) needs a passage that names
    the place.  Measured on the training sets (v0.3: applied to the best-scored sentence only, for
    each question of ``scripts/train_reader.py``), all of these rules decline 1.9 % / 1.0 % of the
    answerable cmrc2018_dev / drcd_dev questions (4.7 % / 2.8 % of their masked copies), the
    place rule alone 0.06 % / 0.09 %; a rule asking the words next to 哪一年 to be in the
    sentence would decline 2.7 % / 4.3 % and is not used."""
    if q.kind not in ("number", "date"):
        return True
    form = match_form(best.quote)
    if not (_ANY_NUMBER if q.kind == "number" else _ANY_DATE).search(form):
        return False
    if q.kind != "number":
        return True
    want = (q.unit or "")[-1:]
    if want == "元" and not _MONEY.search(form):
        return False
    if want in _COUNTERS:
        same = next((g for g in _SAME_UNIT if want in g), frozenset(want))
        if not any(m.group("unit")[-1] in same for m in QUANTITY.finditer(form)):
            return False
    if q.places:  # 山东省有多少家国家级…: the place, not 国家级, sets the scope
        where = match_form(best.hit.title + best.hit.text)
        return all(p in where for p in q.places)
    return True
