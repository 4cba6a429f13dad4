"""What the reader sees of a sentence: the features of every sentence of the retrieved passages
(``FEATURES`` for Chinese questions, ``CROSS_FEATURES`` for English ones) and the evidence the
answerability model weighs (``ANSWERABILITY``, ``ANSWERABILITY_CROSS``).

Pure functions of the question, the passages and a ``CorpusView``'s numbers (idf, places,
embedding cosines): ``reader.read`` computes them for one question, ``scripts/train_reader.py``
for every training question, with the same code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .question import ANSWER_SHAPES, KINDS, Question, match_form, strip_question_words
from .records import PARAGRAPH_SEPARATOR, Hit
from .text import sentence_spans

ANY_NUMBER = re.compile(r"\d|[一二两三四五六七八九十百千万亿]")
# Headings and fragments below this many characters are not quoted alone: 0.5 % / 0.1 % of the
# training sets' answer sentences are that short (`scripts/check_constants.py`).
SHORT_SENTENCE = 8
_PAIRS = {"“": "”", "‘": "’", "「": "」", "『": "』", "《": "》", "（": "）"}
_CLOSING = {v: k for k, v in _PAIRS.items()}


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
class Sentence:
    hit: Hit
    passage: int
    start: int
    end: int
    paragraph: int
    index: int
    quote: str
    form: str


def sentences(hits: Sequence[Hit]) -> list[Sentence]:
    out = []
    for i, hit in enumerate(hits):
        for j, (start, end, paragraph, quote) in enumerate(passage_sentences(hit)):
            out.append(Sentence(hit, i, start, end, paragraph, j, quote, match_form(quote)))
    return out


def sentence_features(
    q: Question,
    hits: Sequence[Hit],
    sents: Sequence[Sentence],
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
        # 安徽省 in the sentence is the question's 安徽 (and 青岛 its 青岛市), not another place
        foreign = [p for p in places(s.form) if p not in qform and not any(a in p or p in a for a in question_places)]
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
    number = ANY_NUMBER.search(form)
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
