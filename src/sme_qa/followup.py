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
"content": str}, ...]`` (:mod:`sme_qa.conversation`).  Earlier user turns are resolved in
order first, so a chain of follow-ups keeps its subject.  The Chinese rules are in
:mod:`sme_qa.followup_zh`, the words they read in :mod:`sme_qa.phrases`; the English rules
and the entry points are here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .conversation import CONTEXT_TURNS, Lookup, Resolution, Turn, check_history, turns
from .followup_zh import ZH_ELLIPSIS, resolve_zh, who_said
from .phrases import QUESTION_WORD, quotes, warm
from .text import ATTRIBUTION, has_han, split_sentences

__all__ = ["Lookup", "Resolution", "Turn", "check_history", "condense_messages", "resolve", "turns", "understood_note", "warm"]

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
            return Resolution(who_said(said[0], lookup), True, "quote")
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
        m = ZH_ELLIPSIS.match(question.strip())
        if m and not QUESTION_WORD.search(m.group("x")) and not has_han(history[-1].question):
            # 「那青岛呢？」 after "Who is the chairman of Haichuanghui?": the English rule's slot
            return _resolve_en(f"What about {m.group('x')}?", history, lookup)
        return resolve_zh(question, history, lookup)
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
