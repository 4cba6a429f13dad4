"""Example questions drawn from the indexed articles themselves (nothing hard-coded).

A clause that states a count ("我国已培育8997家专精特新‘小巨人’企业") becomes a
question by putting 多少 where the number was ("我国已培育多少家专精特新‘小巨人’企业？"),
so every example has an answer in the corpus.  Articles without such a clause give a
question about their title.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..records import Article

__all__ = ["example_questions"]

_UNITS = "家|个|项|亿元|万元|亿|万|名|人|倍|款|条|类|所|座|台|套|件|种|批"
_COUNT = re.compile(rf"(?<![\d.．])\d+(?:[.．]\d+)?(?={_UNITS})")
_CLAUSE = re.compile(r"[^，。；！？!?;,\n]+")
_STRIP = "“”‘’\"'「」『』（）() 　"
MIN_CHARS, MAX_CHARS = 8, 36


def _count_question(text: str) -> str | None:
    for clause in _CLAUSE.findall(text):
        clause = clause.strip(_STRIP)
        if not (MIN_CHARS <= len(clause) <= MAX_CHARS):
            continue
        numbers = _COUNT.findall(clause)
        if len(numbers) != 1 or len(re.findall(r"\d", clause)) != len(numbers[0].replace(".", "").replace("．", "")):
            continue  # exactly one number, and it is the count
        question = _COUNT.sub("多少", clause, count=1)
        if question.startswith("多少"):
            continue  # no subject: "多少家企业…" is too vague
        return question + "？"
    return None


def example_questions(articles: Sequence[Article], n: int = 4) -> list[str]:
    """Up to ``n`` questions, one per article, newest articles first."""
    ordered = sorted(articles, key=lambda a: (a.date or "", a.id), reverse=True)
    questions: list[str] = []
    fallbacks: list[str] = []
    for article in ordered:
        q = next((q for p in article.paragraphs if (q := _count_question(p.text))), None)
        if q and q not in questions:
            questions.append(q)
        elif article.title:
            fallbacks.append(f"《{article.title.strip(_STRIP)}》这篇报道讲了什么？")
        if len(questions) >= n:
            break
    return (questions + fallbacks)[:n]
