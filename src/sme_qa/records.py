"""Typed records that flow through the pipeline: Article → Chunk → Hit → Answer.

All are frozen dataclasses.  Character offsets (``start``/``end``) always refer to
``Article.text``: the article's clean paragraphs joined by ``PARAGRAPH_SEPARATOR``.
Paragraph numbers are 1-based, matching the ``#p<n>`` anchors of the article pages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PARAGRAPH_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Paragraph:
    """One clean paragraph of an article, with its place in ``Article.text``."""

    number: int  # 1-based position in the article
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Article:
    """One source article after loading and cleaning."""

    id: str
    title: str
    paragraphs: tuple[Paragraph, ...]
    date: str | None = None  # ISO date, YYYY-MM-DD
    source: str | None = None  # publisher / author
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    url: str | None = None  # the original page, when known
    location: str = ""  # where it was read from: "path" or "path:line" for JSONL

    @property
    def text(self) -> str:
        return PARAGRAPH_SEPARATOR.join(p.text for p in self.paragraphs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Article:
        """The inverse of ``to_dict``; keys that are not fields (an index's own bookkeeping) are ignored."""
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        data["paragraphs"] = tuple(Paragraph(**p) for p in data.get("paragraphs", ()))
        data["categories"] = tuple(data.get("categories", ()))
        data["tags"] = tuple(data.get("tags", ()))
        return cls(**data)


@dataclass(frozen=True)
class Chunk:
    """The unit that is embedded and retrieved: one paragraph, part of one, or short neighbours merged.

    ``text`` is exactly ``Article.text[start:end]``; ``paragraphs`` is the inclusive
    1-based range of paragraphs it covers.
    """

    id: str  # stable: "<doc_id>:p<n>" or "<doc_id>:p<n>.<part>" for a split paragraph
    doc_id: str
    text: str
    paragraphs: tuple[int, int]
    start: int
    end: int
    hash: str  # sha1 of text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and the evidence of each retriever."""

    doc_id: str
    chunk_id: str
    text: str
    score: float  # fused score (higher is better)
    title: str
    date: str | None
    source: str | None
    url: str | None  # original page, or None
    link: str  # local article page with anchor, e.g. /articles/<doc_id>#p3
    paragraphs: tuple[int, int]
    start: int
    end: int
    rank: int = 0  # 1-based rank in the fused list
    dense_rank: int | None = None
    dense_score: float | None = None  # cosine similarity
    lexical_rank: int | None = None
    lexical_score: float | None = None  # BM25

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Citation:
    """One numbered source of an answer: the quoted sentence and where it stands."""

    number: int
    hit: Hit
    quote: str
    start: int  # offsets of the quote in the article's clean text
    end: int
    link: str  # /articles/<doc_id>?hl=<start>-<end>#p<n>

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    """What a user reads: Markdown text with [n] markers, and the citations behind them."""

    question: str
    text: str
    citations: tuple[Citation, ...] = ()
    answered: bool = True
    mode: str = "extractive"  # "extractive" or "llm"
    near_misses: tuple[Hit, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    notice: str | None = None  # e.g. "LLM unavailable, fell back to extractive"
    short: str | None = None  # the direct answer (a figure, name or date) shown in bold first
    understood: str | None = None  # the standalone question answered, when it differs from ``question``

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def article_link(doc_id: str, paragraph: int | None = None, hl: tuple[int, int] | None = None) -> str:
    """The local article page for ``doc_id``, optionally highlighting ``hl`` and anchored at a paragraph."""
    from urllib.parse import quote

    link = "/articles/" + quote(doc_id, safe="/")
    if hl is not None:
        link += f"?hl={hl[0]}-{hl[1]}"
    if paragraph is not None:
        link += f"#p{paragraph}"
    return link
