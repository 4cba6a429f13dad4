"""Who said it, and who a person is: the attribution of a quoted claim and a name's title.  Pure.

News text quotes a claim and names its speaker beside it, often in the next sentence of the
same paragraph: 「“……今年国家级‘小巨人’企业准备再培育3000家以上。”工信部部长肖亚庆说，……」.
An answer that quotes only the claim leaves a follow-up 「是谁说的？」 or 「他是什么职务？」
without the name; ``speaker`` finds it in the paragraphs that hold the claim, and ``titled``
gives a name with the title written before it (「工信部总工程师田玉龙」), which is what a
question about the person's post or department needs to find its sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Speaker", "speaker", "titled", "titled_people"]

# Titles that stand directly before a name in news text (「海创汇董事长刘长文」, 「中央财经大学教授贺强」).
_TITLE = (
    r"(?:副?董事长|副?总裁|副?总经理|副?部长|总工程师|总经济师|副?主任|教授|副?局长|副?厅长|副?书记|副?市长|副?省长|"
    r"人大代表|政协委员|负责人|副?院长|副?秘书长|副?理事长|副?主席|副?会长|CEO|首席执行官|创始人|研究员|记者|专家)"
)
# What follows a name: a speech verb, an adverb or preposition opening the predicate, punctuation.
_AFTER_NAME = r"(?:曾|也|还|则|在|于|不仅|对|指出|表示|说|介绍|称|透露|强调|认为|坦言|建议|呼吁|提出|告诉|所说|，|。|、|；|：)"
_TITLED = re.compile(
    rf"(?P<who>[\u4e00-\u9fffA-Za-z0-9]{{0,14}}?{_TITLE}(?:兼{_TITLE})?)(?P<name>[\u4e00-\u9fff]{{2,3}}?)(?={_AFTER_NAME})"
)
_LEADING = re.compile(r"^(?:据|由|在|正如|而|和|与|同时|此外|其中|记者从)")
_SPEECH = r"(?:曾|也|还|则)?(?:表示|说|指出|介绍|称|透露|强调|认为|坦言|建议|谈到|说道)"
# 「……”工信部部长肖亚庆说，」: the clause after a closing quote that names its speaker
_SAID_AFTER = re.compile(
    rf"^[”」’]*[，,]?\s*(?:[^，。；]{{0,40}}?[，,])?(?P<who>[^，。；：“”、]{{2,24}}?)(?P<verb>{_SPEECH})(?=[，。：,:]|$)"
)
# 「据海创汇董事长刘长文介绍，“……」 / 「肖亚庆说：“……」: the clause before an opening quote
_SAID_BEFORE = re.compile(rf"(?P<who>[^，。；：“”、]{{2,24}}?)(?P<verb>{_SPEECH})[，,：:]?\s*[“「]?$")
_QUOTES = "“”‘’「」『』\"'"


@dataclass(frozen=True)
class Speaker:
    who: str  # as written before the verb, titles included: 工信部部长肖亚庆
    verb: str  # 说, 表示, 介绍 …


def titled_people(sentence: str) -> list[tuple[str, str]]:
    """(title + name, name) for every titled person in ``sentence``, in order."""
    out = []
    for m in _TITLED.finditer(sentence):
        who = _LEADING.sub("", m.group("who"))
        out.append((who + m.group("name"), m.group("name")))
    return out


def titled(name: str, sentences: Iterable[str]) -> str:
    """``name`` with the title the first sentence naming it gives (「田玉龙」 → 「工信部总工程师田玉龙」)."""
    for sentence in sentences:
        for full, bare in titled_people(sentence):
            if bare == name or full.endswith(name):
                return full
    return name


def _key(text: str) -> str:
    return re.sub(rf"[{_QUOTES}\s]", "", text)


def _locate(claim: str, paragraph: str) -> tuple[int, int] | None:
    """Where ``claim`` stands in ``paragraph`` (quote marks and spaces ignored), as a span."""
    key = _key(claim)
    if len(key) < 6:
        return None
    kept = [i for i, ch in enumerate(paragraph) if ch not in _QUOTES and not ch.isspace()]
    flat = "".join(paragraph[i] for i in kept)
    at = flat.find(key[:24])
    if at < 0:
        return None
    last = flat.find(key[-8:], at) if len(key) > 24 else at + len(key) - 8
    last = at + len(key) - 8 if last < 0 else last
    return kept[at], kept[min(last + 7, len(kept) - 1)] + 1


def speaker(claim: str, paragraphs: Iterable[str]) -> Speaker | None:
    """Who a quoted ``claim`` is attributed to in the first paragraph that holds it: the speech
    verb's subject in the clause after the quotation closes, else in the clause before it opens.
    None when the claim is not found or its paragraph attributes it to no one."""
    for text in paragraphs:
        for paragraph in text.split("\n"):
            span = _locate(claim, paragraph)
            if span is None:
                continue
            start, end = span
            after = paragraph[end:]
            # the rest of the claim's own sentence, then the quotation's close
            close = re.search(r"[。！？!?]?[”」]", after)
            if close and "“" not in after[: close.start()]:
                m = _SAID_AFTER.match(after[close.end() - 1 :])
                if m:
                    return Speaker(_who(m.group("who")), m.group("verb"))
            opening = paragraph.rfind("“", 0, start)
            if opening >= 0 and "”" not in paragraph[opening:start]:
                m = _SAID_BEFORE.search(paragraph[:opening])
                if m:
                    return Speaker(_who(m.group("who")), m.group("verb"))
            return None
    return None


def _who(text: str) -> str:
    text = _LEADING.sub("", text.strip())
    people = titled_people(text + "说")
    return people[-1][0] if people else text
