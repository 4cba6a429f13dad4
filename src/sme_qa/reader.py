"""The reader: which sentence of the retrieved passages answers the question, how sure it is,
and the short answer inside it.

For a question and its retrieved passages (``Hit``), every sentence is a ``Candidate``
described by a few dozen features (``reading_features.FEATURES``: idf-weighted coverage of the question's
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import numpy as np

from .question import NUMERAL, QUANTITY, Question, match_form
from .reading_features import (
    ANY_NUMBER,
    Sentence,
    answerability_features,
    matrix,
    sentence_features,
    sentences,
)
from .records import Hit

MODEL_FILE = "reader.json"


class CorpusView(Protocol):
    """What the reader needs from an index: one generation's statistics and the query embedder."""

    @property
    def bundled(self) -> bool: ...  # vectors of the bundled model (the scale CROSS_FLOOR was fitted on)

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


# An English question is declined when no retrieved passage is this close to it (the dense leg's top
# cosine, bundled multilingual-e5-small): the cross answerability cannot tell a question about the
# corpus from one about anything else.  Fitted by bench/tune_cross_floor.py on English questions
# written for this project (tests/data/english_*.jsonl): the 2nd percentile of the answerable
# ones' top cosine; off-corpus English questions of the sample corpus answered 20 → 4 of 50.
# Another embedding model has another cosine scale: no floor there (``CorpusView.bundled``).
CROSS_FLOOR = 0.738

# An English question's sentences are embedded: those of its best CROSS_PASSAGES passages, at most
# CROSS_SENTENCES (a bound on the work: ~12 ms a sentence with the C engine).
CROSS_PASSAGES = 3
CROSS_SENTENCES = 24


def read(q: Question, hits: Sequence[Hit], corpus: CorpusView, model: Model | None = None, terms: Sequence[Sequence[str]] = ()) -> Reading:
    """Score every sentence of ``hits`` for ``q`` and decide whether the best one answers it.
    ``terms``: what an English question names, in Chinese (``Searcher.term_groups``; see ``judge``)."""
    model = model or shipped_model()
    sents = sentences(hits[:CROSS_PASSAGES])[:CROSS_SENTENCES] if q.english else sentences(hits)
    if not sents or q.content_free:
        return Reading((), 0.0, False)
    cosines = None
    if q.english:
        vectors = corpus.embed([q.text] + [s.quote for s in sents])
        cosines = (vectors[1:] @ vectors[0]).tolist()
    cols = sentence_features(q, hits, sents, corpus.places, cosines)
    return judge(q, hits, sents, cols, model, CROSS_FLOOR if corpus.bundled else -math.inf, terms)


def judge(
    q: Question,
    hits: Sequence[Hit],
    sents: Sequence[Sentence],
    cols: dict[str, np.ndarray],
    model: Model,
    floor: float = -math.inf,
    terms: Sequence[Sequence[str]] = (),
) -> Reading:
    """The reading from the sentences' features (``read`` after ``sentence_features``; the training
    script calls it on the features it collected).  ``floor``: the English relevance floor
    (``read`` passes CROSS_FLOOR for an index of the bundled model; none by default).  ``terms``:
    an English question's Chinese words, which vouch for the best sentence below the cut (``vouched``)."""
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
    far = q.english and evidence["dense_top"] < floor  # NaN (no dense leg) is not far
    sure = p >= threshold or (q.english and vouched(q, candidates[top], terms))
    return Reading(ranked, p, sure and shaped[top] and not far, evidence, peers)


# An English question's answerability is fitted on the cosines of Chinese questions (the training
# sets have no English ones), and rates English questions about the corpus low: 「我国已培育8997家
# 专精特新‘小巨人’企业」 gets 0.08 for "How many little giants has China cultivated?" (cut 0.40).
# What the question names in Chinese (the glossary's terms, names spelled in pinyin) is evidence
# the cosine does not carry: when every one of them stands in the best sentence, and a "how many"
# sentence holds a written figure (not 「一批」), the sentence answers.  A bound set by reading, not
# fitted.  Measured (`bench/bench_reader.py --sets seed,xquad_en2zh,offcorpus_en --readers reader`):
# English questions of tests/data 14 → 18 of 36 correct, seed_qa's English question answered (3000家),
# xquad_en2zh's questions asked of the sample corpus 0.905 → 0.910 declined; xquad_en2zh unchanged by
# it (0.565 with the shape rules: its questions seldom name a glossary term, and a capitalised word
# that spells nothing known vouches for nothing).
def vouched(q: Question, best: Candidate, terms: Sequence[Sequence[str]]) -> bool:
    """Whether ``terms`` (groups of Chinese words, ``Searcher.term_groups``) vouch for ``best``."""
    form = match_form(best.quote)
    if not terms or not all(any(match_form(t) in form for t in group) for group in terms):
        return False
    return q.kind != "number" or bool(re.search(r"\d", form) or QUANTITY.search(form))


_ANY_DATE = re.compile(r"\d|[年月日]|今年|去年|明年|近日|年初|年底|世纪|年代")
# A question asking which year is answered by a year, not by any figure (「4000多家」): a number
# of years (2012年, 民国9年, 嘉靖九年, 庚申年), a relative year or a bare year number (1000–2099, not 4000多家).  Every
# gold sentence of the 447 year questions of cmrc2018_dev + drcd_dev has one
# (`scripts/check_year_shape.py`: 135 of 135, 312 of 312).
_YEAR_QUESTION = re.compile(r"哪一年|哪年|什么年份|哪个年份|何年|几几年")
_A_YEAR = re.compile(
    r"\d+\s*年|[〇零一二三四五六七八九十百千]{1,4}年|[甲乙丙丁戊己庚辛壬癸][子丑寅卯辰巳午未申酉戌亥]年"
    r"|今年|去年|明年|前年|后年|当年|同年|次年|翌年|年初|年底|年末|年中|世纪|年代|(?<!\d)(?:1\d|20)\d\d(?!\d)"
)
# Measure words that answer each other (多少人 → 300名员工); any other unit answers only itself.
_SAME_UNIT = (frozenset("名人位"), frozenset("家户所"))
# Counters of things: a count of them comes with its counter.  Time units (天, 年, 次) are left
# out: web text answers 「几天到账」 with 「3-7个工作日」.
_COUNTERS = frozenset("家户所名人位台个项款类件座条份吨")
# Money as web text writes it too (300块, ¥300), not only 元.
_MONEY = re.compile(r"元|块钱|\d\s*块|[¥￥$]|rmb|人民币|美金|费用|价格|售价")
# 「华纬科技的弹簧年产量是多少？」 asks no measure word and no length of time, so 「专注弹簧生产数十年」
# does not answer it: such a question needs a figure other than a date or a span of time.  On the
# training sets 292 of the 298 such questions' gold sentences have one; 3 of the 6 without are
# declined by the number rule above already, and the rest are questions the kind rule misreads
# (「几内亚」 is a place, 「哪一个革命」 asks no number) (`scripts/check_year_shape.py`).
# A sentence that asks (「一根弹簧用料多少、制作炉温怎样、需要多少工时？」, a news lead's rhetorical
# question) states no answer: of the 6,726 questions of cmrc2018_dev + drcd_dev with a gold sentence,
# 3 have only such sentences (two of them split inside a quoted question), while their passages
# hold 32 (`scripts/check_year_shape.py`).
_ASKS = re.compile(r"[？?][”」』\"）)]*\s*$")
_TIME_ASKED = re.compile(
    r"多久|多长|时间|时长|周期|年限|期限|工期|历时|任期|寿命|年龄|岁|多大|年纪|[几多少]个?(?:年|天|月|日|小时|分钟|周|星期|秒|世纪)"
    r"|how long|how old|\bage\b|how many (?:years|days|months|weeks|hours|minutes|seconds|decades|centuries)"
)
_TIME_SPAN = re.compile(
    rf"(?:数|几|近|约)?(?:{NUMERAL})\s*(?:多|余)?\s*个?(?:年|天|月|日(?!元)|号|小时|分钟|周|星期|秒|世纪)(?:代|初|底|末|间)?"
)


def asks_plain_amount(question: str, unit: str | None) -> bool:
    """Whether a number question asks 多少 with no measure word (``unit``) and no length of time."""
    return not unit and not _TIME_ASKED.search(match_form(question))


def holds_amount(form: str) -> bool:
    """Whether a sentence (in match form) has a figure other than its dates and spans of time."""
    return bool(ANY_NUMBER.search(_TIME_SPAN.sub("", form)))


def shape_ok(q: Question, best: Candidate) -> bool:
    """Whether a sentence (``best``: a candidate for the best) can hold the kind of answer asked for.

    No question is answered by a sentence that asks one itself (``_ASKS``).  A question asking
    for an amount or a date is not answered by a sentence without a number or date word, nor one
    asking 多少 without a measure word or a length of time by a sentence whose only figures are
    dates and spans of time (``_TIME_SPAN``); one asking 多少家/多少台 needs a number with that counter (多少名员工 is not
    answered by 「25天」), one asking 多少钱 a sum of money; a count about a place (深圳市有多少家…) needs a passage that names
    the place.  Measured on the training sets (v0.3: applied to the best-scored sentence only, for
    each question of ``scripts/train_reader.py``), all of these rules decline 1.9 % / 1.0 % of the
    answerable cmrc2018_dev / drcd_dev questions (4.7 % / 2.8 % of their masked copies), the
    place rule alone 0.06 % / 0.09 %; a rule asking the words next to 哪一年 to be in the
    sentence would decline 2.7 % / 4.3 % and is not used."""
    if _ASKS.search(best.quote):
        return False
    if q.kind not in ("number", "date"):
        return True
    form = match_form(best.quote)
    if not (ANY_NUMBER if q.kind == "number" else _ANY_DATE).search(form):
        return False
    if q.kind != "number":
        return not _YEAR_QUESTION.search(match_form(q.text)) or bool(_A_YEAR.search(form))
    want = (q.unit or "")[-1:]
    if want == "元" and not _MONEY.search(form):
        return False
    if asks_plain_amount(q.text, want) and not holds_amount(form):
        return False
    if want in _COUNTERS:
        same = next((g for g in _SAME_UNIT if want in g), frozenset(want))
        if not any(m.group("unit")[-1] in same for m in QUANTITY.finditer(form)):
            return False
    if q.places:  # 山东省有多少家国家级…: the place, not 国家级, sets the scope
        where = match_form(best.hit.title + best.hit.text)
        return all(p in where for p in q.places)
    return True
