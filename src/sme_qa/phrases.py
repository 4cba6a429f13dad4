"""Words of a question or a quoted sentence, for the follow-up rules: part-of-speech tagged
words, the subject (the words before the predicate), places, the kind of a phrase, the sentences
an answer quotes.  Words come from a private ``jieba.Tokenizer`` with part-of-speech tags (never
jieba's global one), loaded on first use (``warm`` loads it ahead).
"""

from __future__ import annotations

import functools
import logging
import re

MAX_QUOTE_CHARS = 40  # a quoted sentence standing in for "it" is cut to its first clause(s)
MIN_CLAIM_CHARS = 12  # … but not before this many characters


@functools.lru_cache(maxsize=1)
def _pos():
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    for word in _EXTRA_WORDS:
        tokenizer.add_word(word, freq=max(tokenizer.suggest_freq(word), 1000), tag="n")
    return jieba.posseg.POSTokenizer(tokenizer)


def warm() -> None:
    """Load the tagger now (a second or more), so the first follow-up is answered at full speed."""
    _pos()


def words(text: str) -> list[tuple[str, str]]:
    """(word, part-of-speech tag) pairs; quoted spans “…” 《…》 「…」 stay one word tagged ``q``."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _QUOTED_SPAN.finditer(text):
        out += [(p.word, p.flag) for p in _pos().cut(text[pos : m.start()])]
        out.append((m.group(0), "quoted"))
        pos = m.end()
    out += [(p.word, p.flag) for p in _pos().cut(text[pos:])]
    return [(w, t) for w, t in out if w.strip()]


# Names jieba splits or mis-tags that questions about companies use as nouns.
_EXTRA_WORDS = ("小巨人", "专精特新", "董事长", "上市公司", "单项冠军", "瞪羚企业", "独角兽")
_QUOTED_SPAN = re.compile(r"“[^”]{1,40}”|《[^》]{1,60}》|「[^」]{1,60}」|‘[^’]{1,40}’")
NOUNISH = frozenset({"n", "nr", "nrt", "nrfg", "ns", "nt", "nz", "nw", "j", "eng", "quoted", "b", "an", "vn", "ng", "x", "l", "i"})
PLACE_TAGS = frozenset({"ns"})
PLACE_WORDS = re.compile(r"^(?:全国|我国|中国|国内|全球|国家|各地|全省|全市|北方|南方)$|[省市县区州]$")
REGION = re.compile(r"^(?:全国|我国|中国|国内|全球|国家|各地|全省|全市|北方|南方|东部|西部|中部)$")
LEVEL = re.compile(r"(?:市|省|区|县)级")
_ORG_WORDS = re.compile(r"(?:公司|集团|企业|平台|基地|协会|大学|研究院|委员会|部|局|厅|汇)$")
# jieba tags these as nouns, but in a question they are the predicate
_PREDICATE_WORDS = frozenset(
    {
        "首创",
        "首倡",
        "董事长",
        "总裁",
        "部长",
        "主任",
        "负责人",
        "目标",
        "数量",
        "总数",
        "一共",
        "总共",
        "共计",
        "合计",
        "目前",
        "现在",
        "已经",
        "未来",
        "今年",
        "去年",
    }
)
QUESTION_WORD = re.compile(r"多少|几|什么|哪|谁|何|怎|如何|是否|吗|呢")
# a speech verb ends the subject: 「华纬科技说开放平台…」 is about 华纬科技
_SPEECH_WORDS = frozenset({"说", "表示", "介绍", "透露", "指出", "称", "强调", "认为", "建议", "呼吁", "提出"})
STOP_TAIL = "的之"


def subject_of(question: str) -> str:
    """The words before the predicate: 「海创汇首创的是…」 → 海创汇; "" when it opens with a question word."""
    ws = words(question)
    by_tags = _subject_by_tags(ws)
    before_de = _before_de(ws)
    return before_de if len(before_de) > len(by_tags) else by_tags


def _before_de(ws: list[tuple[str, str]]) -> str:
    """「青岛征和工业的良品率…」 → 青岛征和工业: the words before the first 的, when they hold no
    predicate (no verb of two characters or more, no time word, adverb, pronoun or number)."""
    out: list[str] = []
    for w, tag in ws:
        if w == "的":
            text = "".join(out)
            return text if 2 <= len(text) <= 12 else ""
        if (
            w in _PREDICATE_WORDS
            or QUESTION_WORD.search(w)
            or PUNCT.fullmatch(w)
            or tag[:1] in ("t", "d", "p", "r", "m", "u", "q", "y")
            or (tag.startswith("v") and len(w) > 1)
        ):
            return ""
        out.append(w)
    return ""


def _subject_by_tags(ws: list[tuple[str, str]]) -> str:
    out: list[str] = []
    for i, (w, tag) in enumerate(ws):
        if (w in _PREDICATE_WORDS or w in _SPEECH_WORDS) and out:
            break
        nounish = tag in NOUNISH or tag.startswith("n")
        # a verb directly before a noun is part of a name (「科创中国”创新基地」), at the start or inside
        if not nounish and tag.startswith("v") and i + 1 < len(ws) and ws[i + 1][1].startswith("n") and out:
            nounish = True
        if tag == "m" and not out and i + 1 < len(ws) and ws[i + 1][1] in ("quoted", "n"):  # 首批“科创中国”
            nounish = True
        if not nounish or QUESTION_WORD.search(w) or PUNCT.fullmatch(w):
            break
        out.append(w)
    return "".join(out).rstrip(STOP_TAIL)


PUNCT = re.compile(r"[\s，。、；：？！,.;:?!…（）()\[\]【】\"'“”‘’「」《》]+")


def places_in(question: str) -> list[str]:
    return [w for w, t in words(question) if t in PLACE_TAGS or (PLACE_WORDS.search(w) and t not in ("quoted",))]


def kind_of(phrase: str) -> str:
    ws = words(phrase)
    if any(t in PLACE_TAGS or (PLACE_WORDS.search(w) and t != "quoted") for w, t in ws):
        return "place"
    if any(t == "nr" for w, t in ws):
        return "person"
    if any(t == "nt" or _ORG_WORDS.search(w) for w, t in ws):
        return "org"
    return ""


def quotes(answer: str) -> list[str]:
    """The sentences an answer quotes: 「…」 in Chinese answers, “…” in English ones."""
    found = re.findall(r"「([^」]+)」", answer)
    # an English answer's quote ends at the ” before its [n] (inner “小巨人” quotes stay in it)
    return found or re.findall(r"“(.{9,}?)”\s*\[\d+\]", answer) or [q for q in re.findall(r"“([^”]+)”", answer) if len(q) > 8]


def short_quote(quote: str) -> str:
    """A quote cut to its first clauses, at most MAX_QUOTE_CHARS, inner double quotes made single."""
    quote = quote.strip("“”‘’「」。！？；!?; ").replace("“", "‘").replace("”", "’")
    if len(quote) <= MAX_QUOTE_CHARS:
        return quote
    # the last clause break that leaves a claim (「截至2022年7月，」 alone says nothing)
    cuts = [m.start() for m in re.finditer(r"[，,；;]", quote) if m.start() >= MIN_CLAIM_CHARS]
    early = [c for c in cuts if c <= MAX_QUOTE_CHARS]
    if early:
        return quote[: early[-1]]
    return quote[: cuts[0]] if cuts and cuts[0] <= 1.5 * MAX_QUOTE_CHARS else quote[:MAX_QUOTE_CHARS]


def clause_subject(sentence: str) -> str:
    """The subject of a quoted sentence: an opening 作为…/据…/在…， clause and time words skipped."""
    clauses = [c for c in re.split(r"[，,：:]", sentence) if c.strip()]
    for clause in clauses:
        if re.match(r"^(?:作为|据|在|随着|为了|通过|对于|此外|同时|目前|今年|近日|截至|以)", clause) and len(clauses) > 1:
            continue
        subject = subject_of(re.sub(r"^(?:目前|今年|近日|此前|据悉|其中)", "", clause))
        if subject:
            return subject
    return ""
