"""Cited answers: extractive by default, an LLM when one is configured.

Pipeline for one question (``answer_stream``):

1. retrieve the top passages (``Searcher.retrieve``);
2. split them into sentences and score each: idf-weighted coverage of the question's
   content words (words found only elsewhere in the passage count half; function words a
   quarter), the passage's fused score, and whether the sentence holds the kind of thing
   asked for (多少 → an amount, 何时 → a date, 谁 → a person or organisation …);
3. decide whether the corpus answers at all (``decide``): a logistic rule over the top
   dense cosine and the best sentence's coverage, fitted by ``bench/calibrate_refusal.py``,
   plus a veto when the question names a place/organisation/person no passage mentions;
4. quote the 1–3 best sentences with [n] markers, or, when sentences from different
   articles give different figures for the same thing, list each figure with its source
   and date, newest first (``find_conflict``); or decline, listing near misses.

Chinese sentences are not embedded: the dense evidence is the passage's cosine, so a warm
answer costs ~2 ms beyond retrieval.  English questions share no words with the text, so
their best ENGLISH_RERANK sentences are embedded (cached by text) and re-ordered.
Everything above ``evidence`` is pure.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .errors import LLMError, QueryError
from .llm import DECLINE_EN, DECLINE_ZH
from .records import PARAGRAPH_SEPARATOR, Answer, Citation, Hit, article_link
from .text import has_han, normalize, sentence_spans, to_simplified

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000  # analysed; the rest of a very long question is ignored
MAX_QUOTES = 3
MAX_NEAR_MISSES = 3
NEAR_ZH = "可能相关（并非答案）"
NEAR_EN = "Possibly related (not an answer)"
CONFLICT_ZH = "各来源说法不一："
CONFLICT_EN = "The sources differ:"

# Sentence score = lexical coverage + W_PASSAGE·(passage score / top score) + W_TYPE·typed.
W_PASSAGE = 0.3
W_TYPE = 0.25
SHORT_SENTENCE = 8  # headings and fragments below this many characters are not quoted alone
EXTRA_RATIO = 0.9  # further quotes need this share of the best sentence's score
CONFLICT_COVERAGE_GAP = 0.1  # conflicting sentences must cover the question nearly as well as the best

# English questions share no words with the text: the best ENGLISH_RERANK sentences are
# embedded and re-ordered by score − W_CROSS·(best cosine − own cosine) with the question.
ENGLISH_RERANK = 3
W_CROSS = 3.0

# Refusal: P(answerable) = σ(B0 + B_DENSE·dense + B_COVERAGE·coverage) > ½, i.e. answer when
# dense + 0.054·coverage ≥ 0.892; and never when the question names a place, organisation or
# person that no retrieved passage mentions.  Fitted by bench/calibrate_refusal.py (class-
# balanced logistic regression): 14 answerable Chinese seed questions vs. the 3,219 cmrc2018
# dev questions asked of the sample corpus; 100% of seed answered, 99.88% of cmrc declined
# (re-measured after the title left the embedded text: the constants still hold).
B0, B_DENSE, B_COVERAGE = -132.0, 148.0, 8.0
# English questions share no words with the Chinese text and passage cosines across languages
# do not separate answerable from off-corpus ones; the best of the embedded sentences does a
# little better: P = σ(B_EN·(sentence cosine − MIN_SENTENCE_EN)), MIN_SENTENCE_EN being the 75th
# percentile of hand-written off-corpus English questions (bench/calibrate_refusal.py).  Weak
# evidence, so English answers carry CROSS_NOTICE.
MIN_SENTENCE_EN, B_EN = 0.765, 100.0
CROSS_NOTICE = "English question matched to Chinese text by embedding only: check the quoted sentence."
# Without a dense leg (mode="lexical") only coverage is known: its threshold from the same run.
MIN_COVERAGE_LEXICAL = 0.6

_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("reason", re.compile(r"为什么|为何|什么原因|原因是|\bwhy\b", re.I)),
    ("date", re.compile(r"何时|什么时候|什么时间|哪一?年|哪一?天|哪个月|几月|几号|\bwhen\b|what (?:year|date|day)|which year", re.I)),
    ("number", re.compile(r"多少|几|多大|多高|多长|多久|百分之|比例|比重|how (?:many|much|long|large|big)|what (?:percentage|share|proportion|number)", re.I)),
    ("who", re.compile(r"谁|哪位|哪些人|什么人|哪家|哪个(?:机构|公司|企业|单位|部门)|\bwho(?:m|se)?\b|which (?:company|companies|organi[sz]ation|firm|agency|ministry)", re.I)),
    ("where", re.compile(r"哪里|哪儿|在哪|何地|哪个(?:省|市|城市|国家|地区)|\bwhere\b|which (?:city|province|country|region)", re.I)),
    ("define", re.compile(r"什么意思|什么是|是指什么|指的是什么|含义|定义|\bmean(?:s|ing)?\b", re.I)),
    ("name", re.compile(r"什么|哪|\bwhat\b|\bwhich\b", re.I)),
)
_NUM = r"\d+(?:\.\d+)?|[零一二两三四五六七八九十百千万亿]+"
_UNIT = r"%|‰|(?:万|亿|千|百)?(?:家|个|项|名|人|天|年|倍|元|款|类|次|件|台|吨|所|座|条|位|户|份|亿|万)"
_QUANTITY = re.compile(rf"(?P<num>{_NUM})\s*(?:多|余)?(?P<unit>{_UNIT})")
_ANSWER_SHAPES = {
    "number": re.compile(rf"(?<![\d.])(?!\d{{4}}年)(?:{_NUM})\s*(?:多|余)?(?:{_UNIT})"),  # not a year
    "date": re.compile(r"\d{4}年|\d{1,2}月(?:\d{1,2}日)?|\d{4}-\d{1,2}|今年|去年|明年|近日|年初|年底|上半年|下半年"),
    "who": re.compile(r"公司|集团|大学|学院|协会|研究院|委员会|部|局|厅|办公室|中心|银行|部长|主任|董事长|总裁|总经理|ceo|教授|院长|记者|工程师|负责人|代表"),
    "where": re.compile(r"[省市县区州]|国家|全国|城市|地区"),
    "name": re.compile(r"[“《「『][^”》」』]{2,24}[”》」』]"),
    "reason": re.compile(r"因为|由于|原因|为了|所以|因此|难点|痛点|困难|问题|导致"),
    "define": re.compile(r"[，,]即|即是|是指|指的是|就是|意思是|称为|简称|是一种"),
}
_QUESTION_WORDS = re.compile(
    r"多少|几|什么时候|什么时间|什么意思|意思|含义|定义|什么|哪一|哪|谁|为什么|为何|如何|怎么样|怎样|怎么|是否|吗|呢|"
    r"一共|总共|共计|总计|大约|大概|"
    r"\b(?:how|many|much|what|which|when|where|who|whom|whose|why|does|do|did|is|are|was|were)\b",
    re.I,
)
# jieba dictionary tags of function words: adverb, pronoun, preposition, conjunction, particle,
# numeral, measure word, modal, interjection, onomatopoeia, locative, time word.
FUNCTION_TAGS = frozenset("drpcumqyeoft")
FUNCTION_WEIGHT = 0.25
# jieba tags of names: place, organisation, person.  A question naming one that no retrieved
# passage mentions is declined whatever the scores (上海市 asked of a corpus without Shanghai).
NAME_TAGS = frozenset({"ns", "nt", "nr", "nrt", "nrfg"})
_QUOTED = re.compile(r"《([^》]{2,40})》|“([^”]{2,40})”|「([^」]{2,40})」|『([^』]{2,40})』")
_DELIM = re.compile(r"[，。、；：,;:！？!?（）()]")
_PAIRS = {"“": "”", "‘": "’", "「": "」", "『": "』", "《": "》", "（": "）"}
_CLOSING = {v: k for k, v in _PAIRS.items()}
_HOW_MANY = re.compile(rf"(?:多少|几)\s*(?P<unit>{_UNIT})?")


@dataclass(frozen=True)
class Question:
    text: str
    english: bool  # no Han characters: framing in English
    kind: str | None  # reason, date, number, who, where, define, name
    terms: tuple[tuple[str, float], ...]  # content words (matching form) with idf weights
    names: tuple[str, ...] = ()  # places, organisations, people and quoted titles it names
    target: tuple[tuple[str, float], ...] = ()  # for 多少/几: the terms of what is counted
    unit: str | None = None  # the measure word asked for (多少家 → 家)


@dataclass(frozen=True)
class Candidate:
    """One sentence of a retrieved passage, scored against the question."""

    hit: Hit
    passage: int  # 0-based position of the hit in the retrieved list
    start: int  # offsets of the sentence in Article.text
    end: int
    quote: str
    paragraph: int
    coverage: float  # idf-weighted share of the question's words in the sentence (passage words: half)
    context: float  # the same over the whole passage
    typed: bool
    score: float


@dataclass(frozen=True)
class Decision:
    answerable: bool
    probability: float
    dense: float | None
    coverage: float
    missing: tuple[str, ...] = ()  # names of the question that no retrieved passage mentions
    cross: float | None = None  # English questions: best cosine between question and a sentence


# ------------------------------------------------------------ pure core


def match_form(text: str) -> str:
    """How text is compared with question words: NFKC, lower case, simplified, no spaces."""
    return to_simplified(normalize(text)).replace(" ", "")


def question_kind(question: str) -> str | None:
    return next((kind for kind, pattern in _KINDS if pattern.search(question)), None)


def analyse(question: str, tokens: Sequence[str], idf: Any, tag: Any = lambda w: None) -> Question:
    """The question's kind and its content words: jieba words of 2+ characters (or non-Han),
    keeping only the longest of nested words, each weighted by ``idf(word)``; words whose
    dictionary part of speech ``tag(word)`` marks a function word (adverb, pronoun, numeral,
    time word …) weigh ``FUNCTION_WEIGHT`` of that.  ``tokens`` should come from the question
    without its question words (``strip_question_words``)."""
    words = [t for t in dict.fromkeys(tokens) if not t.startswith("#") and (len(t) > 1 or not has_han(t))]
    words = [w for w in words if not any(w != o and w in o for o in words)]
    text = question.strip()
    terms = tuple((w, float(idf(w)) * (FUNCTION_WEIGHT if (tag(w) or "")[:1] in FUNCTION_TAGS else 1.0)) for w in words)
    quoted = [match_form("".join(m)) for m in _QUOTED.findall(text)]
    names = tuple(dict.fromkeys([w for w in words if tag(w) in NAME_TAGS] + [m for m in quoted if len(m) > 1]))
    target, unit = terms, None
    m = _HOW_MANY.search(text)
    if m:
        unit = m.group("unit")
        after = _DELIM.split(match_form(text[m.end() :]), 1)[0]
        before = _DELIM.split(match_form(text[: m.start()]))[-1]
        target = tuple(t for t in terms if t[0] in (after or before)) or terms
    return Question(text, not has_han(text), question_kind(text), terms, names, target, unit)


def strip_question_words(question: str) -> str:
    """The question without its interrogatives and counting adverbs (多少, 什么时候, 一共, how many …)."""
    return _QUESTION_WORDS.sub(" ", question)


def coverage(terms: Sequence[tuple[str, float]], text: str, context: frozenset[str] = frozenset()) -> float:
    """Idf-weighted share of ``terms`` found in ``text`` (matching form); terms found only in
    ``context`` count half."""
    total = sum(w for _, w in terms)
    if total <= 0:
        return 0.0
    got = sum(w if t in text else (0.5 * w if t in context else 0.0) for t, w in terms)
    return got / total


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


def score_sentences(question: Question, hits: Sequence[Hit]) -> list[Candidate]:
    """Every sentence of ``hits`` scored against ``question``, best first."""
    if not hits:
        return []
    top = max(h.score for h in hits) or 1.0
    shape = _ANSWER_SHAPES.get(question.kind or "")
    out = []
    for i, hit in enumerate(hits):
        passage = match_form(hit.text)
        found = frozenset(t for t, _ in question.terms if t in passage)
        context = coverage(question.terms, passage)
        for start, end, paragraph, quote in passage_sentences(hit):
            form = match_form(quote)
            cov = coverage(question.terms, form, found)
            typed = bool(shape and shape.search(form))
            score = cov + W_PASSAGE * hit.score / top + W_TYPE * typed - (0.3 if len(form) < SHORT_SENTENCE else 0.0)
            out.append(Candidate(hit, i, start, end, quote, paragraph, cov, context, typed, score))
    out.sort(key=lambda c: (-c.score, c.passage, c.start))
    return out


def rerank(candidates: Sequence[Candidate], similarities: Sequence[float]) -> list[Candidate]:
    """The first ``len(similarities)`` candidates re-ordered by score − W_CROSS·(best similarity − own)."""
    n, best = len(similarities), max(similarities, default=0.0)
    top = [replace(c, score=c.score - W_CROSS * (best - float(sim))) for c, sim in zip(candidates, similarities)]
    top.sort(key=lambda c: (-c.score, c.passage, c.start))
    return top + list(candidates[n:])


def decide(question: Question, hits: Sequence[Hit], candidates: Sequence[Candidate], cross: float | None = None) -> Decision:
    """Whether the passages answer the question: the calibrated rule of the module docstring."""
    if not hits or not candidates:
        return Decision(False, 0.0, None, 0.0)
    passages = [match_form(h.text) for h in hits]
    missing = tuple(n for n in question.names if not any(n in p for p in passages))
    dense_scores = [h.dense_score for h in hits if h.dense_score is not None]
    dense = max(dense_scores) if dense_scores else None
    cov = max(c.coverage for c in candidates)
    if question.english:
        p = _sigmoid(B_EN * ((cross or 0.0) - MIN_SENTENCE_EN))
    elif dense is None:
        p = 1.0 if cov >= MIN_COVERAGE_LEXICAL else 0.0
    else:
        p = probability(dense, cov)
    return Decision(p > 0.5 and not missing, p, dense, cov, missing, cross)


def probability(dense: float, cov: float) -> float:
    return _sigmoid(B0 + B_DENSE * dense + B_COVERAGE * cov)


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


def choose(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The best sentence and up to two more nearly as good, in reading order
    (articles by their best sentence, sentences by position)."""
    chosen: list[Candidate] = []
    seen: set[str] = set()
    for c in candidates:
        if len(chosen) == MAX_QUOTES or (chosen and c.score < EXTRA_RATIO * chosen[0].score):
            break
        key = match_form(c.quote)
        if key in seen or len(key) < SHORT_SENTENCE:
            continue
        seen.add(key)
        chosen.append(c)
    docs = list(dict.fromkeys(c.hit.doc_id for c in chosen))
    return sorted(chosen, key=lambda c: (docs.index(c.hit.doc_id), c.start))


def quantities(sentence: str, terms: Sequence[tuple[str, float]]) -> list[tuple[str, str, frozenset[str], float]]:
    """(value, unit, question words it is about, their weight) for each amount in ``sentence``.

    What an amount is about: question words in the text after it up to the next delimiter
    or amount (the noun it counts), or, when nothing follows, in the text before it."""
    form = to_simplified(normalize(sentence))
    matches = list(_QUANTITY.finditer(form))
    out = []
    for j, m in enumerate(matches):
        stop = matches[j + 1].start() if j + 1 < len(matches) else len(form)
        tail = _DELIM.split(form[m.end() : stop], 1)[0]
        begin = matches[j - 1].end() if j else 0
        head = _DELIM.split(form[begin : m.start()])[-1]
        words = (tail if tail.strip() else head).replace(" ", "")
        about = frozenset(t for t, _ in terms if t in words)
        weight = sum(w for t, w in terms if t in about)
        out.append((m.group("num"), m.group("unit"), about, weight))
    return out


def find_conflict(question: Question, candidates: Sequence[Candidate]) -> list[tuple[Candidate, str]]:
    """Sentences from different articles giving different figures for the same thing.

    Each article's best sentence that covers the question nearly as well as the best one
    (``CONFLICT_COVERAGE_GAP``) offers its main amount: in the unit asked for (多少家 → 家),
    the one whose counted words weigh most among what the question counts.  Amounts with
    the same unit about overlapping words (idf-weighted Jaccard ≥ ½) are the same thing.  Returns
    [(sentence, figure)] newest first when the figures differ."""
    if question.kind != "number" or not candidates:
        return []
    best = candidates[0]
    floor = max(best.coverage, best.context) - CONFLICT_COVERAGE_GAP
    offers: dict[str, tuple[Candidate, tuple[str, str, frozenset[str], float]]] = {}
    for c in candidates:
        if c.hit.doc_id in offers or max(c.coverage, (c.coverage + c.context) / 2) < floor:
            continue
        amounts = [a for a in quantities(c.quote, question.target or question.terms) if a[3] > 0 and a[1].endswith(question.unit or "")]
        if amounts:
            offers[c.hit.doc_id] = (c, max(amounts, key=lambda a: a[3]))
    if best.hit.doc_id not in offers:
        return []
    _, (_, unit, about, _) = offers[best.hit.doc_id]
    weight = dict(question.terms)
    same = [
        (c, value + u) for c, (value, u, ab, _) in offers.values()
        if u == unit and sum(weight[t] for t in ab & about) >= 0.5 * sum(weight[t] for t in ab | about)
    ]
    if len({figure for _, figure in same}) < 2:
        return []
    return sorted(same, key=lambda x: (x[0].hit.date or "", -x[0].score), reverse=True)


# ------------------------------------------------------------ composing


def cite(number: int, c: Candidate) -> Citation:
    return Citation(number, c.hit, c.quote, c.start, c.end, article_link(c.hit.doc_id, c.paragraph, hl=(c.start, c.end)))


def _source_line(hit: Hit, english: bool) -> str:
    meta = ", ".join(x for x in (hit.source, hit.date) if x) if english else "，".join(x for x in (hit.source, hit.date) if x)
    if english:
        return f"《{hit.title}》" + (f" ({meta})" if meta else "")
    return f"《{hit.title}》" + (f"（{meta}）" if meta else "")


def compose_answer(question: Question, chosen: Sequence[Candidate]) -> tuple[str, tuple[Citation, ...]]:
    """Quotes grouped by article, each with its [n] marker, framed in the question's language."""
    citations = tuple(cite(i, c) for i, c in enumerate(chosen, 1))
    lines: list[str] = []
    for i, c in enumerate(chosen):
        quote = f"“{c.quote}” [{i + 1}]" if question.english else f"「{c.quote}」[{i + 1}]"
        if i and chosen[i - 1].hit.doc_id == c.hit.doc_id:
            lines[-1] += (" " if question.english else "") + quote
        elif question.english:
            lines.append(f"According to {_source_line(c.hit, True)}: {quote}")
        else:
            lines.append(f"据{_source_line(c.hit, False)}：{quote}")
    return "\n\n".join(lines), citations


def compose_conflict(question: Question, offers: Sequence[tuple[Candidate, str]]) -> tuple[str, tuple[Citation, ...]]:
    citations = tuple(cite(i, c) for i, (c, _) in enumerate(offers, 1))
    lines = [CONFLICT_EN if question.english else CONFLICT_ZH]
    for i, (c, figure) in enumerate(offers, 1):
        if question.english:
            lines.append(f"- {figure} — {_source_line(c.hit, True)}: “{c.quote}” [{i}]")
        else:
            lines.append(f"- {figure}——{_source_line(c.hit, False)}：「{c.quote}」[{i}]")
    return "\n".join(lines[:1]) + "\n\n" + "\n".join(lines[1:]), citations


def compose_decline(question: Question, hits: Sequence[Hit]) -> tuple[str, tuple[Hit, ...]]:
    near = tuple(hits[:MAX_NEAR_MISSES])
    text = DECLINE_EN if question.english else DECLINE_ZH
    if near:
        label = NEAR_EN if question.english else NEAR_ZH
        items = []
        for h in near:
            snippet = h.text.replace(PARAGRAPH_SEPARATOR, " ")
            snippet = snippet[:60] + ("…" if len(snippet) > 60 else "")
            date = f" ({h.date})" if h.date and question.english else (f"（{h.date}）" if h.date else "")
            items.append(f"- [《{h.title}》]({h.link}){date}{'：' if not question.english else ': '}{snippet}")
        text += f"\n\n{label}{':' if question.english else '：'}\n\n" + "\n".join(items)
    return text, near


def extractive(question: Question, hits: Sequence[Hit], candidates: Sequence[Candidate], decision: Decision) -> Answer:
    """The extractive answer for already scored candidates (no timings, no I/O)."""
    if not decision.answerable:
        text, near = compose_decline(question, hits)
        return Answer(question.text, text, answered=False, near_misses=near)
    offers = find_conflict(question, candidates)
    if offers:
        text, citations = compose_conflict(question, offers)
    else:
        text, citations = compose_answer(question, choose(candidates))
    return Answer(question.text, text, citations, notice=CROSS_NOTICE if question.english else None)


# ------------------------------------------------------------ entry points (I/O)


_IDF_CACHE: list[Any] = [None, None]  # [generation, (df, n)]


def _idf(searcher: Any):
    """idf(word) from the index's chunk × term counts (unseen words get the highest idf)."""
    import numpy as np

    state = searcher.state
    gen = state.generation
    if _IDF_CACHE[0] is not gen:
        df = np.bincount(gen.tf.indices, minlength=gen.tf.shape[1]) if gen.tf.nnz else np.zeros(gen.tf.shape[1])
        _IDF_CACHE[:] = [gen, (df, gen.tf.shape[0])]
    df, n = _IDF_CACHE[1]
    ids = state.term_ids

    def idf(term: str) -> float:
        d = df[ids[term]] if term in ids else 0
        return math.log1p((n - d + 0.5) / (d + 0.5))

    return idf


@functools.lru_cache(maxsize=1)
def _tags() -> dict[str, str]:
    """jieba's dictionary tags of function words and names (FUNCTION_TAGS, NAME_TAGS); read once."""
    import jieba

    with jieba.get_dict_file() as fh:
        rows = (line.decode("utf-8").split() for line in fh)
        return {r[0]: r[2] for r in rows if len(r) == 3 and (r[2][:1] in FUNCTION_TAGS or r[2] in NAME_TAGS)}


def _tag(word: str) -> str | None:
    return _tags().get(word)


def _check(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise QueryError("the question is empty: type a question, e.g. 我国已培育了多少家专精特新“小巨人”企业？")
    return question.strip()


@dataclass(frozen=True)
class Evidence:
    """Everything an answer is composed from: what ``bench/calibrate_refusal.py`` reads."""

    question: Question
    hits: tuple[Hit, ...]
    candidates: tuple[Candidate, ...]
    decision: Decision
    retrieve_ms: float


def evidence(
    searcher: Any,
    question: str,
    *,
    k: int = 5,
    mode: str = "hybrid",
    date_from: str | None = None,
    date_to: str | None = None,
    sources: Sequence[str] | None = None,
) -> Evidence:
    """Retrieve, analyse the question, score the sentences and decide whether to answer."""
    question = _check(question)
    t0 = time.perf_counter()
    hits = searcher.retrieve(question, k, mode=mode, date_from=date_from, date_to=date_to, sources=sources)
    retrieve_ms = (time.perf_counter() - t0) * 1000
    tokens = searcher.state.tokenizer.tokens(strip_question_words(question[:MAX_QUESTION_CHARS]))
    q = analyse(question, tokens, _idf(searcher), _tag)
    candidates = score_sentences(q, hits)
    cross = None
    if q.english and candidates:  # the only evidence across languages is the embedding
        top = candidates[:ENGLISH_RERANK]
        vectors = searcher.embed_queries([q.text[:MAX_QUESTION_CHARS]] + [c.quote for c in top])
        similarities = (vectors[1:] @ vectors[0]).tolist()
        candidates, cross = rerank(candidates, similarities), max(similarities)
    return Evidence(q, tuple(hits), tuple(candidates), decide(q, hits, candidates, cross), retrieve_ms)


def _finish(answer: Answer, t_start: float, retrieve_ms: float, t_compose: float, **extra: float) -> Answer:
    now = time.perf_counter()
    timings = {"retrieve_ms": round(retrieve_ms, 2), "compose_ms": round((now - t_compose) * 1000, 2)}
    timings.update({k: round(v, 2) for k, v in extra.items()})
    timings["total_ms"] = round((now - t_start) * 1000, 2)
    return replace(answer, timings=timings)


def answer(searcher: Any, question: str, **options: Any) -> Answer:
    """A cited answer to ``question``; the last item of ``answer_stream``."""
    final = None
    for final in answer_stream(searcher, question, **options):
        pass
    assert final is not None
    return final


def answer_stream(
    searcher: Any,
    question: str,
    *,
    k: int = 5,
    mode: str = "hybrid",
    llm: bool | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    sources: Sequence[str] | None = None,
) -> Iterator[Answer]:
    """Partial answers as they grow (LLM tokens), the complete answer last.

    ``llm``: None uses the LLM when ``SME_QA_LLM_BASE_URL`` and ``SME_QA_LLM_MODEL`` are set,
    False never does, True requires it (an unconfigured LLM is reported in ``notice``)."""
    t_start = time.perf_counter()
    ev = evidence(searcher, question, k=k, mode=mode, date_from=date_from, date_to=date_to, sources=sources)
    q, hits, decision, retrieve_ms = ev.question, ev.hits, ev.decision, ev.retrieve_ms
    t_compose = time.perf_counter()
    log.debug("decision %s for %r", decision, q.text[:80])
    extract = extractive(q, hits, ev.candidates, decision)
    from .llm import LLMConfig

    config = LLMConfig.from_settings(searcher.settings) if llm is not False else None
    if llm and config is None:
        extract = replace(extract, notice="No LLM is configured (SME_QA_LLM_BASE_URL, SME_QA_LLM_MODEL): extractive answer.")
    if config is None or not decision.answerable:
        yield _finish(extract, t_start, retrieve_ms, t_compose)
        return
    yield from _llm_answers(q, hits, extract, config, t_start, retrieve_ms, t_compose)


def _llm_answers(q: Question, hits, extract: Answer, config, t_start: float, retrieve_ms: float, t_compose: float):
    from .llm import grounded_messages, stream_chat

    t_llm = time.perf_counter()
    parts: list[str] = []
    try:
        for token in stream_chat(config, grounded_messages(q.text, hits, english=q.english)):
            parts.append(token)
            yield Answer(q.text, "".join(parts), mode="llm")
    except LLMError as exc:
        log.warning("LLM failed, extractive fallback: %s", exc)
        notice = f"LLM unavailable, fell back to the extractive answer: {exc}"
        yield _finish(replace(extract, notice=notice), t_start, retrieve_ms, t_compose)
        return
    llm_ms = (time.perf_counter() - t_llm) * 1000
    yield _finish(llm_final(q, hits, "".join(parts), extract), t_start, retrieve_ms, t_compose, llm_ms=llm_ms)


def llm_final(q: Question, hits: Sequence[Hit], raw: str, extract: Answer) -> Answer:
    """The checked LLM answer: markers to passages not given removed, the rest renumbered in
    order of first use, each citation quoting the cited passage's best-supporting sentence;
    unsupported claims are named in ``notice``.  An answer citing nothing falls back to ``extract``."""
    from .llm import check_citations, is_decline, support

    if is_decline(raw):
        text, near = compose_decline(q, hits)
        return Answer(q.text, text, answered=False, mode="llm", near_misses=near)
    check = check_citations(raw, [h.text for h in hits])
    if not check.order:
        return replace(extract, notice="The LLM answer cited no passage, so the extractive answer is shown.")
    citations = []
    for number, passage in enumerate(check.order, 1):
        hit = hits[passage - 1]
        claims = check.claims_citing(passage) or [q.text]
        start, end, paragraph, quote = max(passage_sentences(hit), key=lambda s: sum(support(c, s[3]) for c in claims))
        link = article_link(hit.doc_id, paragraph, hl=(start, end))
        citations.append(Citation(number, hit, quote, start, end, link))
    notes = []
    if check.dropped:
        notes.append("Removed citation markers to passages that were not given: " + ", ".join(f"[{n}]" for n in check.dropped) + ".")
    for claim in check.unsupported:
        cited = ", ".join(f"[{check.order.index(n) + 1}]" for n in claim.passages)
        notes.append(f"Not supported by the cited passage {cited} (overlap {claim.support:.0%}): “{claim.text[:80]}”")
    return Answer(q.text, check.text, tuple(citations), mode="llm", notice=" ".join(notes) or None)
