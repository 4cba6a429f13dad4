"""Paragraph repair and chunking.  Pure functions: text in, records out.

A chunk is one paragraph.  Very short neighbours are merged, long paragraphs are
split at sentence boundaries; a chunk's text is always exactly
``Article.text[start:end]``, so offsets, ids and hashes are stable across loads.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .records import PARAGRAPH_SEPARATOR, Article, Chunk, Paragraph
from .text import CLOSERS, SENTENCE_END, ends_sentence, sentence_spans

__all__ = [
    "CHUNKER_VERSION",
    "ChunkSettings",
    "chunk_article",
    "paragraphs_from_texts",
    "repair_paragraphs",
    "split_paragraph",
]

# Bump when a change to paragraph repair or chunking can change an article's paragraphs or
# chunks: the next `sme-qa index` re-reads every file and re-embeds only the chunks whose
# text changed (indexing.pipeline_versions, recorded in the manifest).
CHUNKER_VERSION = 1
# A paragraph longer than this is prose, never a heading.
HEADING_MAX_CHARS = 40
# Characters that cannot start a sentence: the paragraph before was cut mid-sentence.
_NO_START = "，、。；：！？,.;:!?…" + CLOSERS.replace('"', "").replace("'", "")
# Characters after which a sentence must go on.
_NO_END = "，、：,:“‘「『《（(【[—-"
_TRAILING_GROUP_RE = re.compile(r"\s*[（(【\[][^（）()【】\[\]]{0,30}[）)】\]]\s*$")
_ENUMERATED_RE = re.compile(
    r"^\s*(?:[一二三四五六七八九十百]+[、.．]|[（(][一二三四五六七八九十百\d]+[)）]|\d{1,2}[、.．]\s*|第[一二三四五六七八九十\d]+[章节部分])"
)
_INNER_END_RE = re.compile(f"[{re.escape(SENTENCE_END)}]")
_HARD_BREAKS = "，、,：:"


def _complete(text: str) -> bool:
    """Ends a sentence, allowing a trailing bracketed note such as 「（完）」 or 「（记者 张三）」."""
    if ends_sentence(text):
        return True
    without = _TRAILING_GROUP_RE.sub("", text)
    return without != text and (not without or ends_sentence(without))


def _heading_like(text: str) -> bool:
    """Short, no sentence-final punctuation, no sentence inside: a title, subtitle or byline."""
    if _complete(text):
        return False
    if _ENUMERATED_RE.match(text) and not _INNER_END_RE.search(text):
        return True
    return len(text) <= HEADING_MAX_CHARS and not _INNER_END_RE.search(text)


def _continues(fragment: str, following: str) -> bool:
    """Whether ``fragment`` was cut mid-sentence and ``following`` holds the rest."""
    if _complete(fragment):
        return False
    tail, head = fragment.rstrip()[-1:], following.lstrip()[:1]
    if head and head in _NO_START:
        return True  # the next one cannot start a sentence
    if tail and tail in _NO_END:
        return True  # this one cannot end there
    if tail.isascii() and tail.isalnum() and head.islower():
        return True  # an English word or number cut in two
    # Otherwise only prose is rejoined, and only with prose: headings stay alone.
    return not _heading_like(fragment) and not _heading_like(following)


def _glue(a: str, b: str) -> str:
    a, b = a.rstrip(), b.lstrip()
    space = " " if a[-1:].isascii() and a[-1:].isalnum() and b[:1].isascii() and b[:1].isalnum() else ""
    return a + space + b


def repair_paragraphs(paragraphs: list[str]) -> list[str]:
    """Rejoin paragraphs that were split mid-sentence; leave headings alone.

    A paragraph that does not end a sentence (。！？；…, closing quotes allowed after
    it, or a trailing bracketed note such as 「（完）」) is joined to the next one when

    * the next one starts with a character that cannot start a sentence
      (，、。；： or a closing quote/bracket), or this one ends with one after which a
      sentence must go on (，、： or an opening quote/bracket); or
    * both are prose: this one is longer than ``HEADING_MAX_CHARS`` (40) characters or
      contains a sentence end inside, and the next one is not heading-like.

    Headings, subtitles and bylines are short lines without final punctuation
    (「锚定道路专精特新企业跑出加速度」, 「新华社记者张辛欣」), or lines that start
    with an enumerator (「一、」「（二）」「3.」) and hold no sentence: they stay
    paragraphs of their own.  A mid-sentence split into a fragment longer than 40
    characters (「…会计事务所、律师」 / 「事务所、孵化器等资源方。」) is rejoined.
    Joining adds no character between CJK text and a space between two ASCII words.
    """
    out: list[str] = []
    for p in paragraphs:
        if not p.strip():
            continue
        if out and _continues(out[-1], p):
            out[-1] = _glue(out[-1], p)
        else:
            out.append(p)
    return out


def paragraphs_from_texts(texts: Sequence[str]) -> tuple[Paragraph, ...]:
    """Number paragraphs from 1 and give each its offsets in the joined ``Article.text``."""
    result = []
    pos = 0
    for n, text in enumerate(texts, start=1):
        result.append(Paragraph(number=n, text=text, start=pos, end=pos + len(text)))
        pos += len(text) + len(PARAGRAPH_SEPARATOR)
    return tuple(result)


@dataclass(frozen=True)
class ChunkSettings:
    """Chunk sizes in characters.

    The defaults suit a 512-token encoder: XLM-R tokenises Chinese at about one token
    per character, and a short title may be prepended to each chunk.
    """

    max_chars: int = 400
    min_chars: int = 60

    def __post_init__(self) -> None:
        if self.max_chars < 1:
            raise ValueError(f"max_chars must be at least 1, not {self.max_chars}")
        if not 0 <= self.min_chars <= self.max_chars:
            raise ValueError(f"min_chars must be between 0 and max_chars ({self.max_chars}), not {self.min_chars}")


def _hard_split(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Cut an over-long sentence into pieces ≤ limit, after a comma in the second half if there is one."""
    pieces = []
    while end - start > limit:
        window = text[start + limit // 2 : start + limit]
        cut = max(window.rfind(c) for c in _HARD_BREAKS)
        stop = start + limit // 2 + cut + 1 if cut >= 0 else start + limit
        while stop < start + limit and text[stop] in CLOSERS:
            stop += 1
        pieces.append((start, stop))
        start = stop
    pieces.append((start, end))
    return pieces


def split_paragraph(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Spans that cover ``text`` exactly, each ≤ ``max_chars``, cut only between sentences.

    Sentences are packed into pieces of about equal size; a sentence longer than
    ``max_chars`` alone is cut, preferably after a comma (，、).
    """
    if len(text) <= max_chars:
        return [(0, len(text))]
    units: list[tuple[int, int]] = []
    for a, b in sentence_spans(text):
        units.extend(_hard_split(text, a, b, max_chars) if b - a > max_chars else [(a, b)])
    target = len(text) / math.ceil(len(text) / max_chars)
    pieces: list[tuple[int, int]] = []
    start = end = 0
    for a, b in units:
        size = b - a
        if end > start and (b - start > max_chars or (end - start) + size / 2 > target):
            pieces.append((start, end))
            start = a
        end = b
    pieces.append((start, end))
    return pieces


def _make_chunk(doc_id: str, full: str, chunk_id: str, span: tuple[int, int], start: int, end: int) -> Chunk:
    text = full[start:end]
    return Chunk(
        id=chunk_id,
        doc_id=doc_id,
        text=text,
        paragraphs=span,
        start=start,
        end=end,
        hash=hashlib.sha1(text.encode("utf-8")).hexdigest(),
    )


def _group_paragraphs(paragraphs: Sequence[Paragraph], settings: ChunkSettings) -> list[list[Paragraph]]:
    """Whole paragraphs grouped: a short group takes in the next paragraph while the result fits."""
    sep = len(PARAGRAPH_SEPARATOR)
    groups: list[list[Paragraph]] = []
    for p in paragraphs:
        if groups:
            cur = groups[-1]
            size = cur[-1].end - cur[0].start
            if size < settings.min_chars and size + sep + len(p.text) <= settings.max_chars:
                cur.append(p)
                continue
        groups.append([p])
    # A short group left over (the last one, or one before a long paragraph) joins the one
    # before it, unless it is a heading, which belongs with what follows.
    merged: list[list[Paragraph]] = []
    for g in groups:
        size = g[-1].end - g[0].start
        prev = merged[-1] if merged else None
        if prev is not None and size < settings.min_chars and _complete(g[-1].text) and g[-1].end - prev[0].start <= settings.max_chars:
            prev.extend(g)
        else:
            merged.append(g)
    return merged


def chunk_article(article: Article, settings: ChunkSettings = ChunkSettings()) -> list[Chunk]:
    """Cut an article into chunks with stable ids ``<doc_id>:p<n>`` / ``<doc_id>:p<n>.<k>``.

    A chunk is one paragraph; neighbours shorter than ``min_chars`` are merged (joined
    by ``PARAGRAPH_SEPARATOR``) while the merge stays ≤ ``max_chars``; a paragraph
    longer than ``max_chars`` is split at sentence boundaries into pieces
    ``p<n>.1``, ``p<n>.2`` …  No chunk is longer than ``max_chars``: a single sentence
    over the limit is cut, preferably after a comma.
    """
    full = article.text
    doc = article.id
    chunks: list[Chunk] = []
    for group in _group_paragraphs(article.paragraphs, settings):
        first, last = group[0], group[-1]
        span = (first.number, last.number)
        if len(group) > 1 or len(first.text) <= settings.max_chars:
            chunks.append(_make_chunk(doc, full, f"{doc}:p{first.number}", span, first.start, last.end))
            continue
        for k, (a, b) in enumerate(split_paragraph(first.text, settings.max_chars), start=1):
            chunk_id = f"{doc}:p{first.number}.{k}"
            chunks.append(_make_chunk(doc, full, chunk_id, span, first.start + a, first.start + b))
    return chunks
