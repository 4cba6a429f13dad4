"""Follow-up questions → standalone questions, from the conversation so far.  Pure, offline.

A chat question often leans on the turns before it: 「它已经孵化出多少家上市公司？」,
「那青岛呢？」, 「是谁说的？」, "How many listed companies has it incubated?".  ``resolve``
rewrites such a question into one that can be retrieved alone, from the previous turns'
questions (their subject: the words before the predicate) and the sentences the assistant
quoted (「…」 in Chinese answers, “…” in English ones):

* a pronoun (它/他/她/其/该…/这家… ; it/its/they/he/she …) is replaced by the previous subject
  (for 他/她 after 「X是谁？」, by X and the name the answer gave);
* an ellipsis 「那X呢？」 / "What about X?" puts X in the previous question, in place of the
  word of the same kind (a place for a place, a shared word for a shared word) or its subject;
* a question with no subject of its own (「在全国排第几？」, 「是哪一年印发的？」) gets the
  previous subject; 「是谁说的？」 gets the quoted sentence it asks about.

A question that stands alone, or any question without history, is returned unchanged.
``history`` follows the chat messages convention: ``[{"role": "user"|"assistant",
"content": str}, ...]``; ``check_history`` validates it.  Earlier user turns are resolved in
order first, so a chain of follow-ups keeps its subject.  Words come from a private
``jieba.Tokenizer`` with part-of-speech tags (never jieba's global one).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import QueryError
from .speakers import speaker, titled, titled_people
from .text import ATTRIBUTION, has_han, split_sentences

__all__ = ["Lookup", "Resolution", "Turn", "check_history", "condense_messages", "resolve", "turns", "understood_note"]

# text → passages that may hold it (the searcher's lexical leg); lets a rule read the paragraph
# around a quoted sentence, for the speaker named beside it.  None: the history alone is used.
Lookup = Callable[[str], Sequence[str]]

MAX_HISTORY_MESSAGES = 200  # older messages are ignored (only the last few turns are used)
MAX_MESSAGE_CHARS = 20_000
CONTEXT_TURNS = 3  # how many previous user turns are searched for a subject
MAX_QUOTE_CHARS = 40  # a quoted sentence standing in for "it" is cut to its first clause(s)
MIN_CLAIM_CHARS = 12  # … but not before this many characters

_ROLES = ("user", "assistant")


@dataclass(frozen=True)
class Turn:
    """One exchange of the history: what the user asked and the assistant's answer text."""

    question: str
    answer: str = ""


@dataclass(frozen=True)
class Resolution:
    question: str  # the standalone question (the typed one when nothing was rewritten)
    rewritten: bool
    rule: str = ""  # which rule fired: "pronoun", "ellipsis", "subject", "quote" or "" (none)


# ------------------------------------------------------------ history


def check_history(history: Any) -> list[dict[str, str]]:
    """``history`` as a list of ``{"role", "content"}`` messages, or QueryError saying what is wrong."""
    if history is None:
        return []
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
        raise QueryError(f'history must be a list of messages like {{"role": "user", "content": "…"}}, not {type(history).__name__}')
    out = []
    for i, message in enumerate(history[-MAX_HISTORY_MESSAGES:]):
        if not isinstance(message, dict):
            raise QueryError(f'history[{i}] must be a {{"role", "content"}} object, not {type(message).__name__}')
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise QueryError(f'history[{i}].role must be "user" or "assistant", not {role!r}')
        if not isinstance(content, str):
            raise QueryError(f"history[{i}].content must be a string, not {type(content).__name__}")
        out.append({"role": role, "content": content[:MAX_MESSAGE_CHARS]})
    return out


def turns(history: Sequence[dict[str, str]]) -> list[Turn]:
    """User questions paired with the assistant text that followed them (consecutive ones joined)."""
    out: list[Turn] = []
    for message in history:
        content = message["content"].strip()
        if message["role"] == "user":
            if content:
                out.append(Turn(content))
        elif out:
            last = out[-1]
            out[-1] = Turn(last.question, (last.answer + "\n" + content).strip())
    return out


# ------------------------------------------------------------ words


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
_NOUNISH = frozenset({"n", "nr", "nrt", "nrfg", "ns", "nt", "nz", "nw", "j", "eng", "quoted", "b", "an", "vn", "ng", "x", "l", "i"})
_PLACE_TAGS = frozenset({"ns"})
_PLACE_WORDS = re.compile(r"^(?:全国|我国|中国|国内|全球|国家|各地|全省|全市|北方|南方)$|[省市县区州]$")
_REGION = re.compile(r"^(?:全国|我国|中国|国内|全球|国家|各地|全省|全市|北方|南方|东部|西部|中部)$")
_LEVEL = re.compile(r"(?:市|省|区|县)级")
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
_QUESTION_WORD = re.compile(r"多少|几|什么|哪|谁|何|怎|如何|是否|吗|呢")
# a speech verb ends the subject: 「华纬科技说开放平台…」 is about 华纬科技
_SPEECH_WORDS = frozenset({"说", "表示", "介绍", "透露", "指出", "称", "强调", "认为", "建议", "呼吁", "提出"})
_STOP_TAIL = "的之"


def _subject(question: str) -> str:
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
            or _QUESTION_WORD.search(w)
            or _PUNCT.fullmatch(w)
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
        nounish = tag in _NOUNISH or tag.startswith("n")
        # a verb directly before a noun is part of a name (「科创中国”创新基地」), at the start or inside
        if not nounish and tag.startswith("v") and i + 1 < len(ws) and ws[i + 1][1].startswith("n") and out:
            nounish = True
        if tag == "m" and not out and i + 1 < len(ws) and ws[i + 1][1] in ("quoted", "n"):  # 首批“科创中国”
            nounish = True
        if not nounish or _QUESTION_WORD.search(w) or _PUNCT.fullmatch(w):
            break
        out.append(w)
    return "".join(out).rstrip(_STOP_TAIL)


_PUNCT = re.compile(r"[\s，。、；：？！,.;:?!…（）()\[\]【】\"'“”‘’「」《》]+")


def _places(question: str) -> list[str]:
    return [w for w, t in words(question) if t in _PLACE_TAGS or (_PLACE_WORDS.search(w) and t not in ("quoted",))]


def _kind(phrase: str) -> str:
    ws = words(phrase)
    if any(t in _PLACE_TAGS or (_PLACE_WORDS.search(w) and t != "quoted") for w, t in ws):
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


def _short(quote: str) -> str:
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


def _clause_subject(sentence: str) -> str:
    """The subject of a quoted sentence: an opening 作为…/据…/在…， clause and time words skipped."""
    clauses = [c for c in re.split(r"[，,：:]", sentence) if c.strip()]
    for clause in clauses:
        if re.match(r"^(?:作为|据|在|随着|为了|通过|对于|此外|同时|目前|今年|近日|截至|以)", clause) and len(clauses) > 1:
            continue
        subject = _subject(re.sub(r"^(?:目前|今年|近日|此前|据悉|其中)", "", clause))
        if subject:
            return subject
    return ""


# ------------------------------------------------------------ Chinese rules

_ZH_PERSON = r"他们|她们|他|她"
_ZH_THING = r"它们|它|其|该(?:公司|企业|集团|平台|基地|机构|部门|办法|文件|政策|计划|项目|会议|市|省|地)?|这家(?:公司|企业|机构)?|那家(?:公司|企业|机构)?|此"
_ZH_PRONOUN = re.compile(rf"^(?:那么|那|而|还有)?(?P<p>{_ZH_PERSON}|{_ZH_THING})(?P<rest>.*)$", re.DOTALL)
_ZH_INNER_PRONOUN = re.compile(rf"(?P<p>{_ZH_PERSON}|它们|它)")
_ZH_THIS_WAY = re.compile(r"^(?P<p>这样做|这样|这么做|如此|这一|这些|这个|那个|那些)(?P<rest>.*)$", re.DOTALL)
_ZH_AMONG = re.compile(r"^(?:那么|那)?其中(?P<rest>.*)$", re.DOTALL)
_ZH_ELLIPSIS = re.compile(
    r"^(?:那么|那|而|还有|再说说|说说|换成|如果是|要是)?(?:在)?(?P<x>[^？?，,。]{1,24}?)(?:的情况|的呢|呢|怎么样|如何)\s*[？?]?$"
)
_ZH_WHO_SAID = re.compile(
    r"^(?:这|这句话|这话|这个说法|这些|那)?(?:是)?(?:谁|哪位|什么人|哪个部门|哪家(?:机构|媒体)?)(?:说|讲|提出|表示|透露|介绍|披露|发布|公布)(?:的)?\s*[？?]?$"
)
# a question with no subject of its own opens with the predicate
_ZH_NO_SUBJECT = re.compile(
    r"^(?:截至|截止|是|在|有|还|又|也|共|一共|总共|排|位居|位列|被|从|于|由|将|会|能|要|已|已经|曾|属于|来自|成立于|位于|达到|获得|入选|哪一?年|何时|什么时候|多少|几|为什么|为何|怎么|如何)"
)
_ZH_WHO_IS = re.compile(r"^(?P<x>.+?)(?:是谁|是哪位|叫什么(?:名字)?)")


def _person_after(x: str, answers: str) -> str:
    """The name an answer gives for 「X是谁？」: the person word after X's last word in a quote."""
    last = words(x)[-1][0] if x else ""
    for quote in quotes(answers):
        ws = words(quote)
        for i, (w, tag) in enumerate(ws):
            if tag.startswith("nr") and len(w) > 1 and (not last or any(last == v for v, _ in ws[max(0, i - 3) : i])):
                name = w
                if i + 1 < len(ws) and ws[i + 1][1] in ("nz", "n", "nr") and len(w) == 1:  # 刘/长文
                    name += ws[i + 1][0]
                return name
    for quote in quotes(answers):
        m = re.search(re.escape(last) + r"([\u4e00-\u9fff]{2,3}?)(?:介绍|表示|说|指出|认为|称|透露)", quote) if last else None
        if m:
            return m.group(1)
    return ""


def _referent(prev: Turn, *, person: bool, lookup: Lookup | None = None) -> str:
    """What a pronoun in the next question stands for."""
    if person:
        found = _person(prev, lookup)
        if found:
            return found
    subject = _subject(prev.question)
    if subject:
        return subject
    for quote in quotes(prev.answer):
        subject = _clause_subject(quote)
        if subject:
            return subject
    return ""


def _person(prev: Turn, lookup: Lookup | None) -> str:
    """Whom 他/她 stands for: the person the previous question or its answer named, with the
    title the quoted sentence gives them (「田玉龙」 → 「工信部总工程师田玉龙」: a question about
    the person's post or department then finds that sentence)."""
    said = quotes(prev.answer)
    # a person named in the previous question: its subject when that holds the name
    # (「田玉龙说…」), else the name itself (「工信部部长金壮龙说…」 → 金壮龙)
    names = [w for w, t in words(prev.question) if t.startswith("nr") and len(w) > 1]
    subject = _subject(prev.question)
    if names and subject and any(n in subject for n in names):
        return titled(subject, said)
    if names:
        return titled(names[0], said)
    who = _ZH_WHO_IS.match(prev.question)
    if who:
        x = who.group("x").rstrip(_STOP_TAIL)
        name = _person_after(x, prev.answer)
        return x.replace("的", "") + name if name else x
    if "谁" in prev.question:  # 「谁呼吁…？」 → the person the answer quoted, else 「呼吁…的人」
        name = _person_after("", prev.answer)
        if name:
            return titled(name, said)
        found = _speaker_of(said, lookup)  # 「“我们将…”」 quoted without the 「…田玉龙说」 after it
        if found:
            return found
        rest = re.sub(r"^(?:是)?谁|[？?。]$", "", prev.question.strip())
        if rest and "谁" not in rest:
            return f"{rest}的人"
    return ""


def _speaker_of(said: Sequence[str], lookup: Lookup | None) -> str:
    """The speaker the corpus names beside the first quoted sentence that has one."""
    if lookup is None:
        return ""
    for quote in said:
        found = speaker(quote, lookup(quote))
        if found:
            return found.who
    return ""


def _is_person(phrase: str) -> bool:
    return any(t.startswith("nr") and len(w) > 1 for w, t in words(phrase)) or bool(titled_people(phrase + "说"))


_ASKED_NP = re.compile(r"(?:多少|几|什么|哪个|哪些|哪一?[个项部份家])[家个名项种位条所部份]?(?P<np>[^？?，,。]{2,20}?)[？?]?$")


def _topic(prev: Turn) -> str:
    """What a subjectless follow-up is about: the thing the previous question asked for, with its
    subject (「青岛目前有多少家专精特新“小巨人”企业？」 → 青岛的专精特新“小巨人”企业), or the
    《title》 the answer named for it (「…什么认定办法？」 → 《中小企业“专精特新”产品(技术)认定办法》)."""
    named = re.search(r"(?P<np>[^，,？?。]{2,20}?)(?:叫|是)什么(?:名字|名称)?[？?]?$", prev.question.strip())
    m = named or _ASKED_NP.search(prev.question.strip())
    if not m:
        return ""
    np = m.group("np")
    if named:
        np = np[len(_subject(np)) :].lstrip("的最早首先") if len(_subject(np)) < len(np) else np
    for quote in quotes(prev.answer):
        for title in re.findall(r"《[^》]{2,60}》", quote):
            if title[-3:-1] == np[-2:]:
                return title
    subject = _referent(prev, person=False)
    if not subject or subject in np:
        return np if subject else ""
    return f"{subject}的{np}"


def _replace_slot(prev: str, x: str) -> str:
    """The previous question about ``x`` instead: same-kind word replaced, else its subject."""
    x = x.strip().rstrip(_STOP_TAIL)
    prev_words = words(prev)
    x_words = words(x)
    # a word both share: 「市级专精特新中小企业」 + 「市级“小巨人”」 → the noun run from it is replaced
    for i, (w, tag) in enumerate(prev_words):
        if len(w) > 1 and x_words and w == x_words[0][0] and (tag in _NOUNISH or tag.startswith("n")):
            j = i
            while (
                j < len(prev_words)
                and (prev_words[j][1] in _NOUNISH or prev_words[j][1].startswith(("n", "d")))
                and not _PUNCT.fullmatch(prev_words[j][0])
            ):
                j += 1
            return "".join(v for v, _ in prev_words[:i]) + x + "".join(v for v, _ in prev_words[j:])
    kind = _kind(x)
    if kind == "place":
        places = _places(prev)
        place = next(w for w, t in x_words if t in _PLACE_TAGS or _PLACE_WORDS.search(w))
        same = [p for p in places if bool(_REGION.match(p)) == bool(_REGION.match(place))]
        if same or places:
            old = (same or places)[0]
            rest = x[x.index(place) + len(place) :].lstrip("的")
            suffix = old[-1] if old[-1] in "省市" and place[-1] not in "省市" and len(old) > 2 and not rest.startswith(old[-1]) else ""
            out = prev.replace(old, place + suffix + (rest if len(rest) < 2 else ""), 1)
            if not _LEVEL.search(x):  # 市级/省级 belonged to the old place: 北京市级… → 青岛…
                out = _LEVEL.sub("", out.replace(place + suffix + "级", place, 1))
            return out if len(rest) < 2 else out.rstrip("？?") + f"（{x}）？"
    asked = _ASKED_NP.search(prev)
    if asked and kind not in ("place", "person") and asked.group("np")[-2:] == x[-2:]:
        return prev[: asked.start("np")] + x + prev[asked.end("np") :]
    subject = _subject(prev)
    if subject and (not kind or _kind(subject) in (kind, "")):
        return prev.replace(subject, x, 1)
    if kind and subject:
        return prev.replace(subject, x, 1)
    if asked and not kind:  # 「…孵化出了多少家独角兽？」 + 「那瞪羚呢？」: the thing counted
        return prev[: asked.start("np")] + x + prev[asked.end("np") :]
    return x + "：" + prev


def _resolve_zh(question: str, history: list[Turn], lookup: Lookup | None = None) -> Resolution:
    prev = history[-1]
    q = question.strip()
    if _ZH_WHO_SAID.match(q):
        said = [s for q in quotes(prev.answer) for s in split_sentences(q) if s.strip("“”‘’「」 ")]
        # the quotation, not the sentence that names who said it (「……”，金壮龙表示。」)
        said = [s for s in said if not ATTRIBUTION.search(s.strip("“”‘’「」 "))] or said
        if said:
            best = max(said, key=lambda s: _overlap(s, prev.question))
            return Resolution(_who_said(best, lookup), True, "quote")
    m = _ZH_AMONG.match(q)
    if m and m.group("rest"):
        ref = _referent(prev, person=False)
        if ref:
            return Resolution(f"{ref}中{m.group('rest')}", True, "pronoun")
    m = _ZH_PRONOUN.match(q)
    if m and m.group("rest"):
        person = bool(re.fullmatch(_ZH_PERSON, m.group("p")))
        ref = _referent(prev, person=person, lookup=lookup)
        if ref and not person and _is_person(ref):  # 它 is not 徐晓兰 but the 《…办法》 she named
            ref = _topic(prev) or ref
        if ref:
            rest = m.group("rest")
            joiner = "的" if m.group("p") == "其" and not rest.startswith(("的", "是", "在", "有")) else ""
            return Resolution(ref + joiner + rest, True, "pronoun")
    m = _ZH_THIS_WAY.match(q)
    if m and m.group("rest"):
        ref = _referent(prev, person=False)
        if ref and ref not in q:
            return Resolution(ref + q, True, "pronoun")
    m = _ZH_ELLIPSIS.match(q)
    if m and not _QUESTION_WORD.search(m.group("x")):
        return Resolution(_replace_slot(_plain(prev.question), m.group("x")), True, "ellipsis")
    if _ZH_NO_SUBJECT.match(q) and not _names_something(q):
        ref = _topic(prev) or _referent(prev, person=False)
        if ref and ref not in q:
            return Resolution(ref + q, True, "subject")
    inner = _ZH_INNER_PRONOUN.search(q)
    if inner:
        ref = _referent(prev, person=bool(re.fullmatch(_ZH_PERSON, inner.group("p"))), lookup=lookup)
        if ref:
            return Resolution(q[: inner.start()] + ref + q[inner.end() :], True, "pronoun")
    return Resolution(question, False)


def _who_said(claim: str, lookup: Lookup | None) -> str:
    """「“claim”是谁说的？」, with the speaker the claim's paragraph names beside it when the claim
    itself names none (「“……3000家以上”是谁说的（工信部部长肖亚庆说）？」): the answer then
    quotes the sentence that holds the name, and the rewrite shows whom it found."""
    short = _short(claim)
    bare = claim.strip("“”‘’「」 ")
    if lookup is None or ATTRIBUTION.search(bare) or titled_people(bare) or re.search(r"所说|据.{2,20}?(?:介绍|透露)", bare):
        return f"“{short}”是谁说的？"
    found = speaker(bare, lookup(short))
    return f"“{short}”是谁说的（{found.who}{found.verb}）？" if found else f"“{short}”是谁说的？"


def _overlap(a: str, b: str) -> int:
    """Shared Han bigrams and numbers: how much a quoted sentence is about a question."""

    def units(t: str) -> set[str]:
        return {t[i : i + 2] for i in range(len(t) - 1)} | set(re.findall(r"\d+", t))

    return len(units(a) & units(b))


def _plain(question: str) -> str:
    return question.strip()


def _names_something(question: str) -> bool:
    """Does the question name its own subject (a place, organisation or person, a quoted name)?"""
    return any(t in ("ns", "nt", "nr", "nrt", "nrfg", "quoted") or (t == "nz" and len(w) > 2) for w, t in words(question))


# ------------------------------------------------------------ English rules

_EN_PRONOUN = re.compile(r"\b(it|its|they|their|them|he|his|him|she|her|this company|that company|the company)\b", re.IGNORECASE)
_EN_ELLIPSIS = re.compile(r"^\s*(?:and|what about|how about|and what about|what of)\s+(?P<x>.+?)\s*\??\s*$", re.IGNORECASE)
_EN_WH = re.compile(
    r"^(?:what|which|who|whom|whose|when|where|why|how(?: many| much)?|is|are|was|were|do|does|did|has|have|had|can)\b", re.IGNORECASE
)
_EN_WHO_SAID = re.compile(
    r"^\s*(?:and\s+)?(?:so\s+)?who\s+(?:said|says|stated|announced|told us|made)\s+(?:that|it|this|so|the claim)?\s*\??\s*$", re.IGNORECASE
)
# 「What is the name of the measures Qingdao issued?」: "it" next is that thing, not Qingdao
_EN_NAME_OF = re.compile(r"\b(?:the\s+)?name\s+of\s+(?P<np>[^?]{4,120}?)\s*\??\s*$", re.IGNORECASE)
_EN_THING = re.compile(r"\b(it|its)\b", re.IGNORECASE)
_EN_NAME = re.compile(r"(?<!^)(?<![.?!]\s)\b([A-Z][\w'-]*(?:\s+(?:of\s+|the\s+)?[A-Z][\w'-]*)*)")


def _subject_en(question: str) -> str:
    """The first capitalised name after the question's first word, or a Chinese name in it."""
    han = re.search(r"[\u3400-\u9fff“”《》]{2,}", question)
    if han:
        return han.group(0)
    for m in _EN_NAME.finditer(question):
        if m.start() > 0 and not _EN_WH.fullmatch(m.group(1)):
            return m.group(1)
    return ""


def _resolve_en(question: str, history: list[Turn], lookup: Lookup | None = None) -> Resolution:
    prev = history[-1]
    if _EN_WHO_SAID.match(question):  # the quoted Chinese sentence it asks about (framed in Chinese then)
        said = [s for q in quotes(prev.answer) for s in split_sentences(q) if s.strip("“”‘’「」 ")]
        said = [s for s in said if not ATTRIBUTION.search(s.strip("“”‘’「」 "))] or said
        if said:
            return Resolution(_who_said(said[0], lookup), True, "quote")
    named = _EN_NAME_OF.search(prev.question)
    if named and _EN_THING.search(question) and not _subject_en(question):
        np = named.group("np")
        out = _EN_THING.sub(lambda m: np + "'s" if m.group(1).lower() == "its" else np, question, count=1)
        return Resolution(out, True, "pronoun")
    m = _EN_ELLIPSIS.match(question)
    if m:
        subject = _subject_en(prev.question)
        x = m.group("x").rstrip("?")
        if subject:
            return Resolution(prev.question.replace(subject, x, 1), True, "ellipsis")
        return Resolution(f"{prev.question.rstrip('?')} ({x})?", True, "ellipsis")
    if _subject_en(question):
        return Resolution(question, False)
    subject = _subject_en(prev.question)
    if not subject:
        return Resolution(question, False)
    changed = False

    def swap(match: re.Match) -> str:
        nonlocal changed
        changed = True
        word = match.group(1).lower()
        return subject + "'s" if word in ("its", "their", "his", "her") else subject

    out = _EN_PRONOUN.sub(swap, question, count=1)
    return Resolution(out, True, "pronoun") if changed else Resolution(question, False)


# ------------------------------------------------------------ entry points


def resolve(question: str, history: Sequence[dict[str, str]] | Sequence[Turn] = (), *, lookup: Lookup | None = None) -> Resolution:
    """The standalone form of ``question`` given the conversation ``history`` (messages or turns).

    ``lookup`` (text → passages) lets 「是谁说的？」/「他是什么职务？」 find a speaker that the
    quoted sentence leaves out but its paragraph names."""
    given = list(history)
    past = [t for t in given if isinstance(t, Turn)] if given and isinstance(given[0], Turn) else turns(check_history(given))
    if not past or not question or not question.strip():
        return Resolution(question, False)
    # earlier follow-ups first, so that 「它…」 two turns on still finds its subject
    resolved: list[Turn] = []
    for turn in past[-CONTEXT_TURNS:]:
        standalone = _one(turn.question, resolved, lookup).question if resolved else turn.question
        resolved.append(Turn(standalone, turn.answer))
    return _one(question, resolved, lookup)


def _one(question: str, history: list[Turn], lookup: Lookup | None = None) -> Resolution:
    if has_han(question):
        return _resolve_zh(question, history, lookup)
    return _resolve_en(question, history, lookup)


def understood_note(answer: Any) -> str | None:
    """What the chat and the CLI show above a rewritten follow-up's answer: 「按“…”理解」, or
    'Understood as "…"' for an English question; None when nothing was rewritten."""
    understood = getattr(answer, "understood", None)
    if not understood:
        return None
    return f"按“{understood}”理解" if has_han(answer.question) else f'Understood as "{understood}"'


CONDENSE_PROMPT = (
    "把对话中用户的最后一个问题改写成一个不依赖上文、可以单独检索的完整问题：把代词和省略的主语补全为上文中的具体名称。"
    "问题本身已经完整时原样输出。只输出改写后的问题，不要回答它，不要解释。"
    "If the question is in English, rewrite it in English."
)


def condense_messages(question: str, history: Sequence[Turn]) -> list[dict[str, str]]:
    """Chat messages asking an LLM to condense ``question`` into a standalone one."""
    lines = []
    for turn in history[-CONTEXT_TURNS:]:
        lines.append(f"用户：{turn.question}")
        if turn.answer:
            lines.append(f"助手：{turn.answer[:600]}")
    lines.append(f"用户的最后一个问题：{question}")
    return [{"role": "system", "content": CONDENSE_PROMPT}, {"role": "user", "content": "\n".join(lines)}]
