"""Answer composition: the text a user reads, its citations, conflicts and refusals.

Pure: takes the analysed ``Question`` and the reader's ``Candidate`` sentences, returns
Markdown text and ``Citation`` records.  Article text (titles, sources, quotes) is written as it
stands; the surfaces that render Markdown make it inert (``web/render.py``), so nothing from the
corpus becomes a link, an image or HTML.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .llm import DECLINE_EN, DECLINE_ZH
from .question import DELIM, QUANTITY, Question, match_form
from .reader import Candidate
from .reading_features import SHORT_SENTENCE
from .records import Citation, Hit, article_link
from .text import ATTRIBUTION, normalize, to_simplified

# Bounds on what an answer shows, not fitted: at most two quoted sentences (whether the second is
# quoted at all is fitted: ``reader.Model.extra_ratio``) and three near misses in a refusal.
MAX_QUOTES = 2
MAX_NEAR_MISSES = 3
NEAR_ZH = "可能相关（并非答案）"
NEAR_EN = "Possibly related (not an answer)"
CONFLICT_ZH = "各来源说法不一："
CONFLICT_EN = "The sources differ:"
CONTENT_FREE_ZH = "这句话里没有可以查找的内容。请用文字提问，例如：我国已培育了多少家专精特新“小巨人”企业？"
CONTENT_FREE_EN = "There is nothing to look up in this input. Ask in words, e.g.: How many little giant enterprises has China cultivated?"
# Conflicting figures must come from sentences the reader rates at least this share of the best.
# Not fitted: no public set has articles that disagree; tests/test_answer.py holds the seed
# conflict (71 vs 38) and the different-subjects case to it.
CONFLICT_RATIO = 0.5
# The longest sentence kept with a quotation as its attribution (「…」，工信部部长金壮龙表示。): a bound.
ATTRIBUTION_MAX = 80
# A target or plan (再培育3000家以上, 到2025年要实现…) is another measure than a count reached so far.
_PLANNED = re.compile(r"准备|计划|目标|力争|预计|将要|将会|到20\d\d年|再培育|要推动|要实现")


@dataclass(frozen=True)
class Quote:
    """One cited passage of the answer: a sentence, or a quotation with its attribution."""

    candidate: Candidate
    start: int
    end: int
    text: str


def with_attribution(c: Candidate, neighbours: Sequence[Candidate]) -> Quote:
    """``c`` joined with the sentence that says who spoke, when the quote and the speaker were split."""
    before = next(
        (
            n
            for n in neighbours
            if n.hit.doc_id == c.hit.doc_id
            and n.paragraph == c.paragraph
            and n.end <= c.start
            and c.start - n.end <= 2
            and n.index == c.index - 1
        ),
        None,
    )
    after = next(
        (
            n
            for n in neighbours
            if n.hit.doc_id == c.hit.doc_id
            and n.paragraph == c.paragraph
            and n.start >= c.end
            and n.start - c.end <= 2
            and n.index == c.index + 1
        ),
        None,
    )
    text = c.hit.text
    if after and c.quote.rstrip().endswith(("”", "」")) and len(after.quote) <= ATTRIBUTION_MAX and ATTRIBUTION.search(after.quote):
        return Quote(c, c.start, after.end, text[c.start - c.hit.start : after.end - c.hit.start])
    if before and before.quote.rstrip().endswith(("”", "」")) and ATTRIBUTION.search(c.quote) and len(c.quote) <= ATTRIBUTION_MAX:
        return Quote(c, before.start, c.end, text[before.start - c.hit.start : c.end - c.hit.start])
    return Quote(c, c.start, c.end, c.quote)


def choose(candidates: Sequence[Candidate], extra_ratio: float) -> list[Quote]:
    """The best sentence (with its attribution), then one more rated at least ``extra_ratio`` of it
    (``Model.extra_ratio``, fitted by scripts/train_reader.py)."""
    chosen: list[Candidate] = []
    seen: set[str] = set()
    for c in candidates:
        if len(chosen) == MAX_QUOTES or (chosen and c.score < extra_ratio * chosen[0].score):
            break
        key = match_form(c.quote)
        if key in seen or len(key) < SHORT_SENTENCE:
            continue
        seen.add(key)
        chosen.append(c)
    quotes = [with_attribution(c, candidates) for c in chosen]
    merged: list[Quote] = []
    for q in quotes:  # two chosen sentences that became one quotation
        if not any(m.candidate.hit.doc_id == q.candidate.hit.doc_id and m.start <= q.start and q.end <= m.end for m in merged):
            merged = [m for m in merged if not (m.candidate.hit.doc_id == q.candidate.hit.doc_id and q.start <= m.start and m.end <= q.end)]
            merged.append(q)
    return merged  # the best sentence first: it is [1], the one the short answer comes from


def cite(number: int, q: Quote) -> Citation:
    c = q.candidate
    return Citation(number, c.hit, q.text, q.start, q.end, article_link(c.hit.doc_id, c.paragraph, hl=(q.start, q.end)))


def source_line(hit: Hit, english: bool) -> str:
    meta = (", " if english else "，").join(x for x in (hit.source, hit.date) if x)
    title = f"《{hit.title}》"
    if english:
        return title + (f" ({meta})" if meta else "")
    return title + (f"（{meta}）" if meta else "")


def compose_answer(question: Question, quotes: Sequence[Quote], short: str | None = None) -> tuple[str, tuple[Citation, ...]]:
    """The short answer in bold (when there is one), then the quotes grouped by article, each with its [n]."""
    citations = tuple(cite(i, q) for i, q in enumerate(quotes, 1))
    lines: list[str] = []
    for i, q in enumerate(quotes):
        body = q.text
        quote = f"“{body}” [{i + 1}]" if question.english else f"「{body}」[{i + 1}]"
        if i and quotes[i - 1].candidate.hit.doc_id == q.candidate.hit.doc_id:
            lines[-1] += (" " if question.english else "") + quote
        elif question.english:
            lines.append(f"According to {source_line(q.candidate.hit, True)}: {quote}")
        else:
            lines.append(f"据{source_line(q.candidate.hit, False)}：{quote}")
    text = "\n\n".join(lines)
    if short:
        text = f"**{short}**\n\n" + text
    return text, citations


def compose_conflict(question: Question, offers: Sequence[tuple[Candidate, str]]) -> tuple[str, tuple[Citation, ...]]:
    quotes = [Quote(c, c.start, c.end, c.quote) for c, _ in offers]
    citations = tuple(cite(i, q) for i, q in enumerate(quotes, 1))
    lines = [CONFLICT_EN if question.english else CONFLICT_ZH]
    for i, (c, figure) in enumerate(offers, 1):
        if question.english:
            lines.append(f"- **{figure}** — {source_line(c.hit, True)}: “{c.quote}” [{i}]")
        else:
            lines.append(f"- **{figure}**——{source_line(c.hit, False)}：「{c.quote}」[{i}]")
    return lines[0] + "\n\n" + "\n".join(lines[1:]), citations


def compose_decline(question: Question, hits: Sequence[Hit]) -> tuple[str, tuple[Hit, ...]]:
    if question.content_free:
        return (CONTENT_FREE_EN if question.english else CONTENT_FREE_ZH), ()
    near = tuple(hits[:MAX_NEAR_MISSES])
    text = DECLINE_EN if question.english else DECLINE_ZH
    if near:
        label = NEAR_EN if question.english else NEAR_ZH
        items = []
        for h in near:
            snippet = h.text.replace("\n\n", " ")
            snippet = snippet[:60] + ("…" if len(snippet) > 60 else "")
            date = f" ({h.date})" if h.date and question.english else (f"（{h.date}）" if h.date else "")
            items.append(f"- [《{h.title}》]({h.link}){date}{': ' if question.english else '：'}{snippet}")
        text += f"\n\n{label}{':' if question.english else '：'}\n\n" + "\n".join(items)
    return text, near


# ------------------------------------------------------------ conflicts


def quantities(sentence: str, terms: Sequence[tuple[str, float]]) -> list[tuple[str, str, frozenset[str], float]]:
    """(value, unit, question words it is about, their weight) for each amount in ``sentence``.

    What an amount is about: question words in the text after it up to the next delimiter
    or amount (the noun it counts), or, when nothing follows, in the text before it."""
    form = to_simplified(normalize(sentence))
    matches = list(QUANTITY.finditer(form))
    out = []
    for j, m in enumerate(matches):
        stop = matches[j + 1].start() if j + 1 < len(matches) else len(form)
        tail = DELIM.split(form[m.end() : stop], 1)[0]
        begin = matches[j - 1].end() if j else 0
        head = DELIM.split(form[begin : m.start()])[-1]
        words = (tail if tail.strip() else head).replace(" ", "")
        about = frozenset(t for t, _ in terms if t in words)
        weight = sum(w for t, w in terms if t in about)
        out.append((m.group("num"), m.group("unit"), about, weight))
    return out


def find_conflict(
    question: Question, candidates: Sequence[Candidate], places: Callable[[str], frozenset[str]] = lambda s: frozenset()
) -> list[tuple[Candidate, str]]:
    """Sentences from different articles giving different figures for the same measure of the
    same subject, newest first; [] when there is no such disagreement.

    Each article's best sentence (rated at least CONFLICT_RATIO of the best) offers its main
    amount in the unit asked for (多少家 → 家).  Two offers are the same measure when the units
    agree and what they count overlaps (idf-weighted Jaccard ≥ ½), and the same subject when
    they name the same places and the same names of the question (北京's 1141 and 青岛's 97 are
    different facts, not a conflict), and both state a count reached or both a plan
    (「再培育3000家以上」 is a target beside 「已培育8997家」, not a disagreement)."""
    if question.kind != "number" or not candidates:
        return []
    best = candidates[0]
    offers: dict[str, tuple[Candidate, tuple[str, str, frozenset[str], float]]] = {}
    for c in candidates:
        if c.hit.doc_id in offers or c.score < CONFLICT_RATIO * best.score:
            continue
        amounts = [a for a in quantities(c.quote, question.target or question.terms) if a[3] > 0 and a[1].endswith(question.unit or "")]
        if amounts:
            offers[c.hit.doc_id] = (c, max(amounts, key=lambda a: a[3]))
    if best.hit.doc_id not in offers:
        return []
    _, (_, unit, about, _) = offers[best.hit.doc_id]
    weight = dict(question.terms)

    def subject(c: Candidate) -> tuple[frozenset[str], frozenset[str], bool]:
        form = match_form(c.quote)
        return places(c.quote), frozenset(n for n in question.names if n in form), bool(_PLANNED.search(form))

    mine = subject(best)
    same = [
        (c, value + u)
        for c, (value, u, ab, _) in offers.values()
        if u == unit and sum(weight[t] for t in ab & about) >= 0.5 * sum(weight[t] for t in ab | about) and subject(c) == mine
    ]
    if len({figure for _, figure in same}) < 2:
        return []
    return sorted(same, key=lambda x: (x[0].hit.date or "", -x[0].score), reverse=True)
