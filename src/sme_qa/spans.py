"""The short answer inside the best sentence: 「8997家」, 「2012年」, 「有根创业」.

Candidate spans are runs of one to ``MAX_WORDS`` jieba words within one clause of the
sentence, plus the amounts and dates the question's kind asks for.  Each is described by
``SPAN_FEATURES`` (does it repeat the question, does it have the shape asked for, do the words
around it match the words around the question's interrogative — 「由哪两个公司合作开发」 against
「由光荣和ω-force合作开发」 —, how far it is from the question's words, its length and the
parts of speech at its edges) and scored by a logistic model fitted with the reader
(``scripts/train_reader.py``, on the gold spans of cmrc2018_dev and drcd_dev).  The best span is
shown in bold above the quote when the model rates it at least ``Model.span_threshold``.

That feature model is the fallback: ``short_answer`` asks the span reader of ``span_model`` (a
fine-tuned cross-encoder, much better at the span) first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .question import ANSWER_SHAPES, KINDS, QUANTITY, Question, match_form, tag
from .reading_features import coverage

# The feature model's candidate spans (only when the span reader is unavailable): 0.705 / 0.883 of
# the training sets' gold answers are within 6 jieba words, 0.907 / 0.995 within 24 characters
# (`scripts/check_constants.py`).
MAX_WORDS = 6
MAX_CHARS = 24
# Kinds the feature model (the fallback) gives no span for: it was trained without them
# (``scripts/train_reader.py``), taking a reason's or a definition's answer for the whole sentence.
# The span reader reads them too: on its held-out questions of cmrc2018_dev + drcd_dev their
# spans on the gold sentence average character F1 0.71 (reason, 32) and 0.59 (define, 6), and
# those it rates above its threshold 0.87 and 0.52 (``scripts/train_span.py --kinds``).
NO_SPAN_KINDS = frozenset({"reason", "define"})
_BOUNDARY = re.compile(r"[，。、；：,;:！？!?（）()\s]")
_OPEN, _CLOSE = "“《「『(（", "”》」』)）"
# Amounts with their qualifiers (3000家以上, 近40%, 约12000名).
_AMOUNT = re.compile(
    r"(?:近|约|超过|逾|达|共)?(?:\d+(?:[.,]\d+)*|[零一二两三四五六七八九十百千万亿]+)\s*"
    r"(?:多|余)?(?:%|‰|[万亿千百]?(?:家|个|项|名|人|天|年|倍|元|美元|款|类|次|件|台|吨|所|座|条|位|户|份|分|岁|米|公里|平方公里|万|亿))"
    r"(?:以上|左右|之多|以下)?"
)
_DATE = re.compile(r"(?:\d{4}年)?(?:\d{1,2}月)?(?:\d{1,2}日)?|\d{4}-\d{1,2}(?:-\d{1,2})?")
TAG_GROUPS = ("n", "v", "m", "a", "ns", "nr", "nt", "nz", "x", "other")

SPAN_FEATURES = (
    "in_question",
    "has_question_term",
    "shape",
    "shape_kind_number",
    "shape_kind_date",
    "contains_shape",
    "left_match",
    "right_match",
    "left_match_any",
    "right_match_any",
    "distance",
    "near_right",
    "near_left",
    "log_chars",
    "words",
    "clause_start",
    "clause_end",
    "bracketed",
    "whole_clause",
    "is_number",
    "has_digit",
    *(f"first_{g}" for g in TAG_GROUPS),
    *(f"last_{g}" for g in TAG_GROUPS),
    *(f"kind_{k}" for k in KINDS),
    "kind_unknown",
)


@dataclass(frozen=True)
class Span:
    text: str
    start: int  # offsets in the sentence
    end: int
    score: float


def _group(word: str) -> str:
    t = tag(word)
    if t is None:
        return "x" if re.fullmatch(r"[\w.%-]+", word) and not word.isdigit() else ("m" if word.isdigit() else "other")
    if t in ("ns", "nr", "nt", "nz"):
        return t
    return t[0] if t[0] in "nvma" else "other"


def candidates(sentence: str, words: Sequence[str]) -> list[tuple[int, int]]:
    """(start, end) offsets of candidate spans: word runs inside one clause, plus amounts and dates."""
    bounds, pos = [], 0
    for w in words:
        i = sentence.find(w, pos)
        if i < 0:
            continue
        bounds.append((i, i + len(w)))
        pos = i + len(w)
    spans: set[tuple[int, int]] = set()
    for a in range(len(bounds)):
        if _BOUNDARY.fullmatch(sentence[bounds[a][0] : bounds[a][1]]):
            continue
        for b in range(a, min(a + MAX_WORDS, len(bounds))):
            s, e = bounds[a][0], bounds[b][1]
            piece = sentence[s:e]
            if _BOUNDARY.search(piece) or e - s > MAX_CHARS:
                break
            spans.add((s, e))
    for pattern in (_AMOUNT, _DATE):
        for m in pattern.finditer(sentence):
            if m.end() > m.start():
                spans.add((m.start(), m.end()))
    return sorted(spans)


def _char_form(sentence: str) -> str:
    """A matching form of ``sentence`` with the same length, so span offsets carry over."""
    import unicodedata

    from .text import to_simplified

    form = to_simplified(unicodedata.normalize("NFKC", sentence)).lower()
    return form if len(form) == len(sentence) else sentence.lower()


def span_features(q: Question, sentence: str, spans: Sequence[tuple[int, int]], words: Sequence[str]) -> np.ndarray:
    """SPAN_FEATURES for each span of ``sentence`` (rows in the order of ``spans``)."""
    import bisect

    qform = match_form(q.text)
    qchars = set(qform)
    text = _char_form(sentence)
    terms = [t for t, _ in q.terms if len(t) > 1]
    starts = [m.start() for t in terms for m in re.finditer(re.escape(t), text)]
    ends = [m.end() for t in terms for m in re.finditer(re.escape(t), text)]
    shape = ANSWER_SHAPES.get(q.kind or "")
    word_at: dict[int, str] = {}
    word_end: dict[int, str] = {}
    word_starts: list[int] = []
    pos = 0
    for w in words:
        i = sentence.find(w, pos)
        if i < 0:
            continue
        word_at[i], word_end[i + len(w)] = w, w
        word_starts.append(i)
        pos = i + len(w)
    boundary = [bool(_BOUNDARY.fullmatch(ch)) for ch in sentence]
    in_q = [0]
    for ch in text:  # prefix sums: characters of the question up to each offset
        in_q.append(in_q[-1] + (ch in qchars))
    occurrences = list(zip(starts, ends))
    n = len(sentence)
    kind_row = [float(q.kind == k) for k in KINDS] + [float(q.kind is None)]
    group_cache: dict[str, str] = {}
    rows = []
    for s, e in spans:
        piece = sentence[s:e]
        form = text[s:e]
        before, after = text[max(0, s - 6) : s], text[e : e + 6]
        first, last = word_at.get(s, piece[:1]), word_end.get(e, piece[-1:])
        is_amount = bool(_AMOUNT.fullmatch(piece))
        is_shape = bool(shape and shape.fullmatch(form)) or (q.kind == "number" and is_amount)
        dist = min([abs(h - e) for h in starts] + [abs(s - h) for h in ends] + [n])
        at_start = s == 0 or boundary[s - 1]
        at_end = e == n or boundary[e]
        row = [
            (in_q[e] - in_q[s]) / max(e - s, 1),
            float(any(s <= a and b <= e for a, b in occurrences)),
            float(is_shape),
            float(is_shape and q.kind == "number"),
            float(is_shape and q.kind == "date"),
            float(bool(shape and shape.search(form))),
            _common_suffix(before, q.left) / 4,
            _common_prefix(after, q.right) / 4,
            float(bool(q.left) and q.left[-1:] == before[-1:]),
            float(bool(q.right) and q.right[:1] == after[:1]),
            math.log1p(dist),
            float(any(0 <= h - e <= 2 for h in starts)),
            float(any(0 <= s - h <= 2 for h in ends)),
            math.log1p(e - s),
            float(max(bisect.bisect_left(word_starts, e) - bisect.bisect_left(word_starts, s), 1)),
            float(at_start),
            float(at_end),
            float(s > 0 and e < n and sentence[s - 1] in _OPEN and sentence[e] in _CLOSE),
            float(at_start and at_end),
            float(is_amount),
            float(any(ch.isdigit() for ch in piece)),
        ]
        fg = group_cache.get(first) or group_cache.setdefault(first, _group(first))
        lg = group_cache.get(last) or group_cache.setdefault(last, _group(last))
        row += [float(fg == g) for g in TAG_GROUPS] + [float(lg == g) for g in TAG_GROUPS]
        rows.append(row + kind_row)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(SPAN_FEATURES))


def _common_suffix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b), 4) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b), 4) and a[n] == b[n]:
        n += 1
    return n


def best_span(
    q: Question, sentence: str, words: Callable[[str], Sequence[str]], predict: Callable[[np.ndarray], np.ndarray], threshold: float
) -> Span | None:
    """The best-scored candidate span of ``sentence`` when it reaches ``threshold``, else None."""
    if q.kind in NO_SPAN_KINDS or q.content_free:
        return None
    ws = words(sentence)
    spans = candidates(sentence, ws)
    if not spans:
        return None
    scores = predict(span_features(q, sentence, spans, ws))
    i = int(np.argmax(scores))
    if scores[i] < threshold:
        return None
    s, e = _trim(sentence, *_whole_name(sentence, *spans[i]))
    return Span(sentence[s:e], s, e, float(scores[i])) if e > s else None


# Which sentence is quoted first: of the reader's first RERANK sentences (those sharing the best
# one's scope and shape, ``Reading.peers``), the one with the highest log-odds of the reader's
# probability + RERANK_WEIGHT × the span reader's start + end logit + RANKER_WEIGHT × the sentence
# ranker's logit (``span_model.SentenceRanker``; the two read in one batched pass).  Chosen by
# ``scripts/fit_rerank.py`` on the questions of cmrc2018_dev + drcd_dev whose passages neither
# model trained on (675 questions of every kind): the first quoted sentence holds the answer for
# 0.787 (the reader alone) → 0.812 (span reader, k 3, weight 1.0) → 0.837 (with the ranker, weight
# 1.5; weights 1.0–2.0: 0.833–0.837) → 0.847 at k 5 (k 4 0.844, k 6 0.847: the same weights are
# best at each).  k 5 was held back while one thread read the sentences (ask p95 on xquad_zh 322 ms
# at k 4 against the 300 ms budget); read in two length groups on two threads
# (``span_model.READ_THREADS``) it costs less than k 3 did: xquad_zh ask p50/p95 163/243 ms (k 3,
# one thread) → 112/158 (k 3, two) → 154/226 (k 5, two; 226/305 with a busy loop on the other
# core), correct 0.812 → 0.820, span F1 0.446 → 0.451; dureader_demo correct 0.697 unchanged,
# span F1 0.275 → 0.265; xquad_en2zh 0.569 → 0.570 (bench/bench_reader.py).  Ranking by the ranker
# alone and reading only the chosen sentence's span was 0.839 there and no better than the span
# reader alone on xquad_zh.  Without the ranker file, the span reader alone at the same k and weight.
# English questions too, though both models were trained on Chinese questions only (the question
# text then carries its Chinese words, ``Evidence.translated``): the multilingual encoder carries
# over, measured once, on and off, with nothing refitted (bench/bench_reader.py --sets
# seed,xquad_en2zh): English (tests/data) 18 → 20 of 36 correct, span F1 0.309 → 0.362;
# xquad_en2zh 0.565 → 0.569, span F1 0.251 → 0.253; ask p50 there 77 → 177 ms.
# The ranker of v0.6 (one more layer, adapted by LoRA: held-out gold sentence first 0.875 → 0.890)
# refitted the same way: first quote right at k 5 0.847 → 0.870 at ranker weight 1.0 (the best
# column for every span weight: 0.870–0.873; 1.5, the weight before, 0.864–0.868).
# End to end (bench/bench_reader.py): correct unchanged on xquad_zh, dureader_demo, xquad_en2zh
# (0.820, 0.697, 0.570); span F1 0.451 → 0.454, 0.290 → 0.325, 0.251 → 0.259; English (tests/data) 20 → 19.
RERANK = 5
RERANK_WEIGHT = 1.0
RANKER_WEIGHT = 1.0


# The span reader and the ranker learnt from questions; a keyword query (「氧化锆的熔点」: no question
# word, no closing mark) reads to them as a question once 「是什么？」 is added.  On the span
# reader's 673 held-out gold sentences with their questions cut to keywords (question words and
# punctuation removed): span F1 0.573 → 0.592, shown 0.737 → 0.811 of them, F1 counting an unshown
# span as 0 0.476 → 0.528 (plain 「？」: 0.600, 0.779, 0.518); as asked 0.717, 0.865, 0.660
# (`scripts/train_span.py --kinds`).
KEYWORD_ASKED = "是什么？"
_ASKING = re.compile(r"怎样|怎么|如何|还是|是否|吗|呢|么|多[远钱重宽深厚快]")


def as_asked(q: Question) -> str:
    """The question text the span reader and ranker read: a Chinese keyword query with KEYWORD_ASKED
    (「…作家是」 with 「什么？」); a question in its own words (怎样, 还是) as it is."""
    text = q.text.rstrip()
    if q.english or q.kind is not None or text.endswith(("？", "?", "。", ".", "！", "!")) or _ASKING.search(text):
        return q.text
    return text + (KEYWORD_ASKED[1:] if text.endswith("是") else KEYWORD_ASKED)


def reread(
    q: Question,
    sentences: Sequence[str],
    scores: Sequence[float],
    words: Callable[[str], Sequence[str]],
    model: Any,
    k: int = RERANK,
    weight: float = RERANK_WEIGHT,
    ranker_weight: float = RANKER_WEIGHT,
) -> tuple[int, Span | None]:
    """Which of ``sentences`` (the reader's best first, with its ``scores``) to quote first, and
    its short answer: the span reader and the sentence ranker read the first ``k`` when they are
    available (see RERANK); otherwise the first sentence and the feature model's span (``short_answer``)."""
    if not sentences or q.content_free:
        return 0, None
    from . import span_model

    reader = span_model.load()
    if reader is None or k <= 1:
        return 0, short_answer(q, sentences[0], words, model)
    ranker = span_model.load_ranker() if ranker_weight else None
    ranked, found = reader.rank_and_read(as_asked(q), sentences[:k], ranker, one_clause=q.kind == "number")
    value = [_log_odds(p) + weight * f.logit + ranker_weight * r if f is not None else -math.inf for p, f, r in zip(scores, found, ranked)]
    best = _best(value)
    return best, _span_of(q, sentences[best], found[best], reader.threshold)


def _best(value: Sequence[float]) -> int:
    """The index of the highest finite value; 0 when there is none."""
    return int(np.argmax(value)) if any(math.isfinite(v) for v in value) else 0


def _log_odds(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _span_of(q: Question, sentence: str, found: Any, threshold: float) -> Span | None:
    if found is None or found.score < threshold:
        return None
    s, e = _whole_name(sentence, *counted_figure(q, sentence, *_with_unit(q, sentence, found.start, found.end)))
    if e - s > 2 and sentence[e - 1] == "的":  # 「25天缩短至7天的」: the particle is not the answer
        e -= 1
    s, e = _trim(sentence, s, e)
    return Span(sentence[s:e], s, e, found.score) if e > s else None


# A sentence listing figures of several things (「省级专精特新企业5000家以上，国家级专精特新“小巨人”企业
# 达500家」) answers 多少 with the figure of the clause that names what is counted (``Question.target``):
# when another clause covers the target words better by more than COUNTED_MARGIN (idf-weighted, a
# bound set before measuring, not fitted), its first figure replaces the span reader's.  On the span
# reader's held-out number questions of cmrc2018_dev + drcd_dev it changes 3 of 54 spans, character
# F1 0.775 → 0.818 (``scripts/train_span.py --kinds``).
COUNTED_MARGIN = 0.2
_CLAUSE = re.compile(r"[^，。；;,：:]+[，。；;,：:]?")


def counted_figure(q: Question, sentence: str, s: int, e: int) -> tuple[int, int]:
    """``(s, e)``, or the first figure (with the unit asked for) of the clause of ``sentence``
    that names best what a number question counts (see COUNTED_MARGIN)."""
    if q.kind != "number" or not q.target:
        return s, e
    own, best, figure = 0.0, -1.0, None
    for m in _CLAUSE.finditer(sentence):
        covered = coverage(q.target, match_form(m.group()))
        if m.start() <= s < m.end():
            own = covered
        # with the measure word asked for (多少家 → 500家, not 2025年 or 3个)
        quantity = next((x for x in QUANTITY.finditer(m.group()) if not q.unit or x.group("unit").endswith(q.unit[-1])), None)
        if quantity and covered > best:
            best, figure = covered, (m.start() + quantity.start(), m.start() + quantity.end())
    if figure is None or best <= own + COUNTED_MARGIN or figure[0] <= s < figure[1]:
        return s, e
    return figure


def short_answer(q: Question, sentence: str, words: Callable[[str], Sequence[str]], model: Any) -> Span | None:
    """The bold short answer of ``sentence``: the span reader's (``span_model``, a fine-tuned
    cross-encoder) when it loads and rates its span at least its threshold, else none; the
    feature model's (``best_span`` with ``model.span``) when the span reader is unavailable."""
    if q.content_free:
        return None
    from . import span_model

    reader = span_model.load()
    if reader is None:
        return best_span(q, sentence, words, model.span.predict, model.span_threshold)
    # an amount stands inside one clause (held-out number questions: span F1 0.782 → 0.793; dates
    # and other kinds lose 0.005-0.007 with the rule, so it is for amounts only)
    return _span_of(q, sentence, reader.find(as_asked(q), sentence, one_clause=q.kind == "number"), reader.threshold)


def _with_unit(q: Question, sentence: str, s: int, e: int) -> tuple[int, int]:
    """An amount keeps its unit and a date its 年/月/日 (the model may stop at 「8997」 of
    「8997家」: the digits and the counter are separate tokens)."""
    if q.kind == "number":
        for m in QUANTITY.finditer(sentence):
            if s <= m.start("num") < e < m.end():
                return s, m.end()
    if q.kind == "date" and e < len(sentence) and sentence[e] in "年月日号" and sentence[e - 1].isdigit():
        return s, e + 1
    return s, e


# A quoted or titled name (“2022全国专精特新中小企业发展大会”, 《…》): a span inside one is widened
# to all of it; a quotation with a comma or full stop in it is speech, not a name, and is left alone.
_NAME_GROUP = re.compile(r"“([^“”，。！？；,]{2,40})”|《([^《》，。！？；,]{2,40})》|「([^「」，。！？；,]{2,40})」")


def _whole_name(sentence: str, s: int, e: int) -> tuple[int, int]:
    for m in _NAME_GROUP.finditer(sentence):
        inner = next(i for i in (1, 2, 3) if m.group(i) is not None)
        a, b = m.start(inner), m.end(inner)
        if a <= s and e <= b and (a, b) != (s, e):
            return a, b
    return s, e


# Punctuation at a span's edge is not part of the answer (「…新颖化的发展特征。」), nor is a quotation
# mark whose partner lies outside the span.  Not "." (「3.」 of a decimal, "Inc.").  On the span
# reader's held-out examples (cmrc2018_dev + drcd_dev, 673): EM 0.489 → 0.496, F1 0.7175 both ways
# (``scripts/train_span.py --kinds``).  Widening a span to jieba's word edges was measured there too:
# EM 0.472, F1 0.714, so it is not done.
_EDGE = "。，、；：！？,;:!?…—"
_PAIRS = {"“": "”", "‘": "’", "「": "」", "『": "』", "《": "》", "（": "）", "(": ")", "【": "】"}
_OPENERS = {close: open_ for open_, close in _PAIRS.items()}


def _trim(sentence: str, s: int, e: int) -> tuple[int, int]:
    """``(s, e)`` without edge punctuation and unpaired quotation marks or brackets."""
    while True:
        before = (s, e)
        while s < e and (sentence[s] in _EDGE or sentence[s].isspace()):
            s += 1
        while e > s and (sentence[e - 1] in _EDGE or sentence[e - 1].isspace()):
            e -= 1
        if s < e and sentence[s] in _PAIRS and _PAIRS[sentence[s]] not in sentence[s + 1 : e]:
            s += 1
        if s < e and sentence[e - 1] in _OPENERS and _OPENERS[sentence[e - 1]] not in sentence[s : e - 1]:
            e -= 1
        if (s, e) == before:
            return s, e


def char_f1(prediction: str, gold: str) -> float:
    """Character-level F1 of two strings in compact matching form (the eval README's span metric)."""
    from collections import Counter

    from .text import compact

    p, g = Counter(compact(prediction)), Counter(compact(gold))
    common = sum((p & g).values())
    if not common:
        return 0.0
    precision, recall = common / sum(p.values()), common / sum(g.values())
    return 2 * precision * recall / (precision + recall)
