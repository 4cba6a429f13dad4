"""Question analysis: what is asked (kind, content words, names, scope), in which language,
and whether the input asks anything at all.

Pure apart from ``dictionary_tags``, which reads jieba's dictionary once per process.
The reader (``reader.py``) and the answer composer (``compose.py``) work from the
``Question`` record made here.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from .text import has_han, normalize, to_simplified

MAX_QUESTION_CHARS = 2000  # analysed; the rest of a very long question is ignored

KINDS = ("reason", "date", "number", "who", "where", "define", "name")
_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("reason", re.compile(r"为什么|为何|什么原因|原因是|\bwhy\b", re.I)),
    ("date", re.compile(r"何时|什么时候|什么时间|哪一?年|哪一?天|哪个月|几月|几号|\bwhen\b|what (?:year|date|day)|which year", re.I)),
    (
        "number",
        re.compile(
            r"多少|几|多大|多高|多长|多久|百分之|比例|比重|how (?:many|much|long|large|big)|what (?:percentage|share|proportion|number)",
            re.I,
        ),
    ),
    (
        "who",
        re.compile(
            r"谁|哪位|哪些人|什么人|哪家|哪个(?:机构|公司|企业|单位|部门)|\bwho(?:m|se)?\b|which (?:company|companies|organi[sz]ation|firm|agency|ministry)",
            re.I,
        ),
    ),
    ("where", re.compile(r"哪里|哪儿|在哪|何地|哪个(?:省|市|城市|国家|地区)|\bwhere\b|which (?:city|province|country|region)", re.I)),
    ("define", re.compile(r"什么意思|什么是|是指什么|指的是什么|含义|定义|\bmean(?:s|ing)?\b", re.I)),
    ("name", re.compile(r"什么|哪|\bwhat\b|\bwhich\b", re.I)),
)
# The interrogative itself: where it stands in the question tells the reader what the words
# around the answer should look like (「…由哪两个公司合作开发」 → 「…由X合作开发」).
_WH = re.compile(
    r"多少|几[个家项名人天年倍次件台所座条位户份种]?|什么时候|什么时间|什么|哪一?[个年天位家些种里儿]?|谁|何时|何地|为什么|为何|如何|怎么样|怎样|怎么"
)
_QUESTION_WORDS = re.compile(
    r"多少|几|什么时候|什么时间|什么意思|意思|含义|定义|什么|哪一|哪|谁|为什么|为何|如何|怎么样|怎样|怎么|是否|吗|呢|"
    r"一共|总共|共计|总计|大约|大概|"
    r"\b(?:how|many|much|what|which|when|where|who|whom|whose|why|does|do|did|is|are|was|were)\b",
    re.I,
)
# jieba dictionary tags of function words: adverb, pronoun, preposition, conjunction, particle,
# numeral, measure word, modal, interjection, onomatopoeia, locative, time word.
FUNCTION_TAGS = frozenset("drpcumqyeoft")
# Coverage of the words alone picks an answer sentence of the gold passage for 0.726 / 0.837 of the
# training questions (cmrc2018_dev / drcd_dev) at 0.25, 0.715 / 0.831 at 0 and 0.734 / 0.840 at 1
# (`scripts/check_constants.py`); the reader's weights were fitted on features at 0.25, so a new
# value means refitting it (`scripts/train_reader.py`).
FUNCTION_WEIGHT = 0.25
# jieba tags of names: place, organisation, person.
NAME_TAGS = frozenset({"ns", "nt", "nr", "nrt", "nrfg"})
PLACE_TAGS = frozenset({"ns"})
# Words that set the scope of a count to the whole country: 「全国一共有几家…」 is not answered
# by a city's figure.
NATIONAL_SCOPE = ("全国", "我国", "中国", "全国性", "nationwide", "china")
# A tier, not a scope (国家级“小巨人”): it makes a question national only when it names no place.
# 「安徽到2025年要实现国家级专精特新“小巨人”企业达到多少家？」 asks about 安徽, and was declined
# because every sentence about 安徽 counted as another place's figure.
NATIONAL_TIER = ("国家级", "national")
_QUOTED = re.compile(r"《([^》]{2,40})》|“([^”]{2,40})”|「([^」]{2,40})」|『([^』]{2,40})』")
DELIM = re.compile(r"[，。、；：,;:！？!?（）()]")
NUMERAL = r"\d+(?:\.\d+)?|[零一二两三四五六七八九十百千万亿]+"
UNIT = r"%|‰|(?:万|亿|千|百)?(?:家|个|项|名|人|天|年|倍|元|款|类|次|件|台|吨|所|座|条|位|户|份|亿|万)"
QUANTITY = re.compile(rf"(?P<num>{NUMERAL})\s*(?:多|余)?(?P<unit>{UNIT})")
_HOW_MANY = re.compile(rf"(?:多少|几)\s*(?P<unit>{UNIT})?")
# 「多少钱」「奖励多少」: the amount asked for is money.
_MONEY = re.compile(r"多少钱|多少资金|多少经费|多少元|金额|奖励多少|补贴多少|资助多少|售价|价格|营业收入|营收|净利润|利润是多少|注册资本")
# Specific figures a question names (「2023年」, 「第二批」): a passage without them cannot answer it.
_PINNED = re.compile(r"\d{4}年|第[一二三四五六七八九十百\d]+[批届次期季]")
# The same for an English question: a year it names (in 1998, since 2021), which the Chinese
# text writes in the same digits (1998年).
_PINNED_YEAR = re.compile(r"(?<![\d.,])(?:1[5-9]|20)\d\d(?![\d.,]\d)")
# Input that asks nothing: no Han character and no Latin word of two or more letters once
# symbols, emoji, punctuation and invisible characters are gone; or something that reads as
# code (SQL, markup) rather than a question.
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2028-\u202f\u2060-\u206f\ufeff]")
_LATIN_WORD = re.compile(r"[a-z]{2,}", re.I)
_CODE = re.compile(
    r"(?:^|[\s;'\"])(?:drop|select|insert|delete|update|union|alter|truncate)\s+(?:table|from|into|all|database)\b|"
    r"<\s*/?\s*(?:script|img|iframe|svg|a|div|style)\b|--\s*$|/\*|\bor\s+1\s*=\s*1\b",
    re.I,
)
# A greeting, thanks or goodbye alone asks nothing either: an English one went to the cross-lingual
# reader, whose cosine rates any short text near some sentence ("thanks" answered at 0.92).
_SMALL_TALK = re.compile(
    r"(?:你好|您好|大家好|嗨|哈喽|哈啰|在吗|谢谢你?|多谢|感谢|辛苦了|好的|好|嗯+|哦+|再见|拜拜|早上好|上午好|下午好|晚上好|"
    r"hi|hello|hey|hiya|thanks?(?: you)?(?: very much| a lot)?|thx|ok(?:ay)?|bye|goodbye|good (?:morning|afternoon|evening|night)|cheers)"
    r"(?:\s*(?:there|everyone|all|啊|呀|哈|哦|啦|吧))*",
    re.I,
)
_NOT_WORD = re.compile(r"[\W_]+")
ANSWER_SHAPES: dict[str, re.Pattern[str]] = {
    "number": re.compile(rf"(?<![\d.])(?!\d{{4}}年)(?:{NUMERAL})\s*(?:多|余)?(?:{UNIT})"),  # not a year
    "date": re.compile(r"\d{4}年|\d{1,2}月(?:\d{1,2}日)?|\d{4}-\d{1,2}|今年|去年|明年|近日|年初|年底|上半年|下半年"),
    "who": re.compile(
        r"公司|集团|大学|学院|协会|研究院|委员会|部|局|厅|办公室|中心|银行|部长|主任|董事长|总裁|总经理|ceo|教授|院长|记者|工程师|负责人|代表"
    ),
    "where": re.compile(r"[省市县区州]|国家|全国|城市|地区"),
    "name": re.compile(r"[“《「『][^”》」』]{2,24}[”》」』]"),
    "reason": re.compile(r"因为|由于|原因|为了|所以|因此|难点|痛点|困难|问题|导致"),
    "define": re.compile(r"[，,]即|即是|是指|指的是|就是|意思是|称为|简称|是一种"),
}

Idf = Callable[[str], float]
Tag = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Question:
    text: str
    english: bool  # no Han characters: framing in English
    kind: str | None  # one of KINDS
    terms: tuple[tuple[str, float], ...]  # content words (matching form) with idf weights
    names: tuple[str, ...] = ()  # places, organisations, people and quoted titles it names
    target: tuple[tuple[str, float], ...] = ()  # for 多少/几: the terms of what is counted
    unit: str | None = None  # the measure word asked for (多少家 → 家)
    national: bool = False  # asks about the whole country (全国, 我国 …)
    places: tuple[str, ...] = ()  # the place names it mentions
    left: str = ""  # matching form of the words just before the interrogative
    right: str = ""  # … and just after it
    content_free: bool = False  # asks nothing: emoji, punctuation, code
    required: tuple[str, ...] = ()  # of ``names``, what a passage must mention to answer: quoted titles, pinned figures


def match_form(text: str) -> str:
    """How text is compared with question words: NFKC, lower case, simplified, no spaces."""
    return to_simplified(normalize(text)).replace(" ", "")


def question_kind(question: str) -> str | None:
    return next((kind for kind, pattern in _KINDS if pattern.search(question)), None)


def strip_question_words(question: str) -> str:
    """The question without its interrogatives and counting adverbs (多少, 什么时候, 一共, how many …)."""
    return _QUESTION_WORDS.sub(" ", question)


def is_content_free(question: str) -> bool:
    """True for input that asks nothing: only symbols/emoji/punctuation/invisible characters, code,
    or a greeting, thanks or goodbye alone (你好, thanks)."""
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", question))
    if _CODE.search(text) or _SMALL_TALK.fullmatch(_NOT_WORD.sub(" ", text).strip()):
        return True
    return not has_han(text) and not _LATIN_WORD.search(text)


def clean_question(question: str) -> str:
    """The question without invisible characters, cut to MAX_QUESTION_CHARS."""
    return _INVISIBLE.sub("", question).strip()[:MAX_QUESTION_CHARS]


def analyse(question: str, tokens: Sequence[str], idf: Idf, tag: Tag = lambda w: None) -> Question:
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
    quoted = [m for m in quoted if len(m) > 1]
    names = tuple(dict.fromkeys([w for w in words if tag(w) in NAME_TAGS] + quoted))
    places = tuple(w for w in words if tag(w) in PLACE_TAGS)
    target, unit = terms, None
    m = _HOW_MANY.search(text)
    if m:
        unit = m.group("unit")
        after = DELIM.split(match_form(text[m.end() :]), 1)[0]
        before = DELIM.split(match_form(text[: m.start()]))[-1]
        target = tuple(t for t in terms if t[0] in (after or before)) or terms
    form = match_form(text)
    if unit is None and _MONEY.search(text):
        unit = "元"
    pinned = [match_form(m) for m in (_PINNED if has_han(text) else _PINNED_YEAR).findall(text)]
    names = tuple(dict.fromkeys(names + tuple(pinned)))
    required = tuple(dict.fromkeys(quoted + pinned))
    national = any(s in form for s in NATIONAL_SCOPE) or (not places and any(s in form for s in NATIONAL_TIER))
    left, right = wh_context(form)
    return Question(
        text,
        not has_han(text),
        question_kind(text),
        terms,
        names,
        target,
        unit,
        national,
        places,
        left,
        right,
        is_content_free(text),
        required,
    )


def wh_context(form: str, width: int = 4) -> tuple[str, str]:
    """Up to ``width`` characters of ``form`` on each side of its interrogative (within the clause)."""
    m = _WH.search(form)
    if not m:
        return "", ""
    before = re.split(r"[，。、；：,;:！？!?“”《》「」\s]", form[: m.start()])[-1]
    after = re.split(r"[，。、；：,;:！？!?“”《》「」\s]", form[m.end() :])[0]
    return before[-width:], after[:width]


@functools.lru_cache(maxsize=1)
def dictionary_tags() -> dict[str, str]:
    """jieba's dictionary part-of-speech tag of every word, read once (question analysis and
    answer spans share it)."""
    import jieba

    with jieba.get_dict_file() as fh:
        rows = (line.decode("utf-8").split() for line in fh)
        return {r[0]: r[2] for r in rows if len(r) == 3}


def tag(word: str) -> str | None:
    return dictionary_tags().get(word)


class Vocabulary(Protocol):
    """What question analysis needs from an index: its tokenizer and idf."""

    def tokens(self, text: str) -> list[str]: ...

    def idf(self, term: str) -> float: ...


def analyse_with(index: Vocabulary, question: str) -> Question:
    """``analyse`` with the index's tokenizer and idf and jieba's dictionary tags."""
    text = clean_question(question)
    return analyse(text, index.tokens(strip_question_words(text)), index.idf, tag)
