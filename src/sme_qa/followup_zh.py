"""The Chinese follow-up rules: 它/他/其/该…, 「那X呢？」, a question with no subject of its own,
「是谁说的？」; each rewrites the question from the previous turn (see :mod:`sme_qa.followup`)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .conversation import Lookup, Resolution, Turn
from .phrases import (
    LEVEL,
    NOUNISH,
    PLACE_TAGS,
    PLACE_WORDS,
    PUNCT,
    QUESTION_WORD,
    REGION,
    STOP_TAIL,
    clause_subject,
    kind_of,
    places_in,
    quotes,
    short_quote,
    subject_of,
    words,
)
from .speakers import speaker, titled, titled_people
from .text import ATTRIBUTION, split_sentences

__all__ = ["resolve_zh", "who_said"]

_ZH_PERSON = r"他们|她们|他|她"
_ZH_THING = r"它们|它|其|该(?:公司|企业|集团|平台|基地|机构|部门|办法|文件|政策|计划|项目|会议|市|省|地)?|这家(?:公司|企业|机构)?|那家(?:公司|企业|机构)?|此"
_ZH_PRONOUN = re.compile(rf"^(?:那么|那|而|还有)?(?P<p>{_ZH_PERSON}|{_ZH_THING})(?P<rest>.*)$", re.DOTALL)
_ZH_INNER_PRONOUN = re.compile(rf"(?P<p>{_ZH_PERSON}|它们|它)")
_ZH_THIS_WAY = re.compile(r"^(?P<p>这样做|这样|这么做|如此|这一|这些|这个|那个|那些)(?P<rest>.*)$", re.DOTALL)
_ZH_AMONG = re.compile(r"^(?:那么|那)?其中(?P<rest>.*)$", re.DOTALL)
ZH_ELLIPSIS = re.compile(
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
    subject = subject_of(prev.question)
    if subject:
        return subject
    for quote in quotes(prev.answer):
        subject = clause_subject(quote)
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
    subject = subject_of(prev.question)
    if names and subject and any(n in subject for n in names):
        return titled(subject, said)
    if names:
        return titled(names[0], said)
    who = _ZH_WHO_IS.match(prev.question)
    if who:
        x = who.group("x").rstrip(STOP_TAIL)
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
        np = np[len(subject_of(np)) :].lstrip("的最早首先") if len(subject_of(np)) < len(np) else np
    for quote in quotes(prev.answer):
        for title in re.findall(r"《[^》]{2,60}》", quote):
            if title[-3:-1] == np[-2:]:
                return title
    subject = _referent(prev, person=False)
    if not subject or subject in np:
        return np if subject else ""
    return f"{subject}的{np}"


def _swap(text: str, old: str, new: str) -> str:
    """``text`` with its first ``old`` replaced by ``new``, white space inside ``old`` ignored
    (``subject_of`` joins words: 「海尔 CEO」 is 「海尔CEO」 there)."""
    pattern = r"\s*".join(re.escape(ch) for ch in old if not ch.isspace())
    return re.sub(pattern, lambda _: new, text, count=1) if pattern else text


def _replace_slot(prev: str, x: str) -> str:
    """The previous question about ``x`` instead: same-kind word replaced, else its subject."""
    x = x.strip().rstrip(STOP_TAIL)
    prev_words = words(prev)
    x_words = words(x)
    # a word both share: 「市级专精特新中小企业」 + 「市级“小巨人”」 → the noun run from it is replaced
    for i, (w, tag) in enumerate(prev_words):
        if len(w) > 1 and x_words and w == x_words[0][0] and (tag in NOUNISH or tag.startswith("n")):
            j = i
            while (
                j < len(prev_words)
                and (prev_words[j][1] in NOUNISH or prev_words[j][1].startswith(("n", "d")))
                and not PUNCT.fullmatch(prev_words[j][0])
            ):
                j += 1
            return "".join(v for v, _ in prev_words[:i]) + x + "".join(v for v, _ in prev_words[j:])
    kind = kind_of(x)
    if kind == "place":
        places = places_in(prev)
        place = next(w for w, t in x_words if t in PLACE_TAGS or PLACE_WORDS.search(w))
        same = [p for p in places if bool(REGION.match(p)) == bool(REGION.match(place))]
        if same or places:
            old = (same or places)[0]
            rest = x[x.index(place) + len(place) :].lstrip("的")
            suffix = old[-1] if old[-1] in "省市" and place[-1] not in "省市" and len(old) > 2 and not rest.startswith(old[-1]) else ""
            out = prev.replace(old, place + suffix + (rest if len(rest) < 2 else ""), 1)
            if not LEVEL.search(x):  # 市级/省级 belonged to the old place: 北京市级… → 青岛…
                out = LEVEL.sub("", out.replace(place + suffix + "级", place, 1))
            return out if len(rest) < 2 else out.rstrip("？?") + f"（{x}）？"
    asked = _ASKED_NP.search(prev)
    if asked and kind not in ("place", "person") and asked.group("np")[-2:] == x[-2:]:
        return prev[: asked.start("np")] + x + prev[asked.end("np") :]
    subject = subject_of(prev)
    if subject and (not kind or kind_of(subject) in (kind, "")):
        return _swap(prev, subject, x)
    if kind and subject:
        return _swap(prev, subject, x)
    if asked and not kind:  # 「…孵化出了多少家独角兽？」 + 「那瞪羚呢？」: the thing counted
        return prev[: asked.start("np")] + x + prev[asked.end("np") :]
    return x + "：" + prev


def resolve_zh(question: str, history: list[Turn], lookup: Lookup | None = None) -> Resolution:
    prev = history[-1]
    q = question.strip()
    if _ZH_WHO_SAID.match(q):
        said = [s for q in quotes(prev.answer) for s in split_sentences(q) if s.strip("“”‘’「」 ")]
        # the quotation, not the sentence that names who said it (「……”，金壮龙表示。」)
        said = [s for s in said if not ATTRIBUTION.search(s.strip("“”‘’「」 "))] or said
        if said:
            best = max(said, key=lambda s: _overlap(s, prev.question))
            return Resolution(who_said(best, lookup), True, "quote")
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
    m = ZH_ELLIPSIS.match(q)
    if m and not QUESTION_WORD.search(m.group("x")):
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


def who_said(claim: str, lookup: Lookup | None) -> str:
    """「“claim”是谁说的？」, with the speaker the claim's paragraph names beside it when the claim
    itself names none (「“……3000家以上”是谁说的（工信部部长肖亚庆说）？」): the answer then
    quotes the sentence that holds the name, and the rewrite shows whom it found."""
    short = short_quote(claim)
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
