"""Answers → what the chat shows and what the API returns.  Pure functions, no Gradio.

Every piece of corpus text (answer sentences, titles, excerpts, publishers) is
HTML-escaped here before it reaches a chat message; Gradio's own sanitiser
(``sanitize_html=True``) is a second wall, not the first.  ``[n]`` markers become
links to the citation's article page, opened in a new tab so the chat stays.

The answer text is Markdown that carries article text (titles, publishers, quotes,
excerpts, LLM output), so everything in it that could make a link, an image or HTML
is made inert: brackets and backslashes are escaped, ``<``/``&`` become entities and
bare URLs and e-mail addresses (GFM autolinks) are broken with a backslash.  The only
live links in a message are the app's own ``[n]`` citations and source cards.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from ..compose import NEAR_EN, NEAR_ZH
from ..followup import understood_note
from ..records import Answer, Citation, Hit
from .pages import safe_url

__all__ = [
    "absolute",
    "answer_messages",
    "answer_payload",
    "error_message",
    "excerpt_html",
    "history_messages",
    "inert_markdown",
    "linked_text",
    "pending_message",
    "plain_text",
    "source_groups",
]

_MARKER = re.compile(r"\[(\d{1,3})\]")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]#|~])")
_NEWLINES = re.compile(r"\s*\n\s*")
_LINK_SYNTAX = re.compile(r"[\\\[\]`]")  # links, images, reference definitions, code spans
_AUTOLINK = re.compile(r"(?i)(?<=[a-z0-9])(?=://)|(?<=\bwww)(?=\.)|(?=@)")  # GFM bare URLs and e-mails
EXCERPT_CHARS = 90  # context kept on each side of the cited sentence in a source card


def _html(text: str) -> str:
    """Corpus text for an HTML block: escaped, on one line (a blank line would end the block in Markdown)."""
    return _NEWLINES.sub(" ", escape(text))


def _md_text(text: str) -> str:
    """Corpus text made inert for Markdown + HTML: escaped, Markdown punctuation backslashed."""
    return _AUTOLINK.sub("\\\\", _MD_SPECIAL.sub(r"\\\1", escape(text, quote=False)))


def inert_markdown(text: str) -> str:
    """Markdown that cannot make a link, an image or HTML: emphasis and lists stay, the rest is text."""
    return _AUTOLINK.sub("\\\\", _LINK_SYNTAX.sub(lambda m: "\\" + m.group(), escape(text, quote=False)))


def _link(href: str) -> str:
    """A local link made safe for an attribute (already percent-encoded ids stay as they are)."""
    return escape(quote(href, safe="/?=&#%-_.~:"), quote=True)


def _attr(text: str) -> str:
    return escape(text, quote=True)


def linked_text(answer: Answer) -> str:
    """The answer's Markdown, corpus text escaped, each known ``[n]`` a link to its citation."""
    by_number = {c.number: c for c in answer.citations}
    parts: list[str] = []
    pos = 0
    for m in _MARKER.finditer(answer.text):
        c = by_number.get(int(m.group(1)))
        if c is None:
            continue
        parts.append(_escape_answer(answer.text[pos : m.start()]))
        parts.append(f"[\\[{c.number}\\]]({_link(c.link)})")
        pos = m.end()
    parts.append(_escape_answer(answer.text[pos:]))
    return "".join(parts)


def _escape_answer(text: str) -> str:
    # Answer text is Markdown written by answer.py (paragraphs, lists) around article text
    # (titles, publishers, quotes; all of an LLM's output): keep its structure, nothing live.
    return inert_markdown(text)


def _locate(citation: Citation, text: str, offset: int) -> tuple[int, int] | None:
    """Where ``citation.quote`` stands in ``text`` (which starts at ``offset`` in the article)."""
    a, b = citation.start - offset, citation.end - offset
    if 0 <= a < b <= len(text) and text[a:b] == citation.quote:
        return a, b
    found = text.find(citation.quote) if citation.quote else -1
    return (found, found + len(citation.quote)) if found >= 0 else None


def excerpt_html(citations: Citation | Sequence[Citation]) -> str:
    """The passage around the quote(s), trimmed, each quoted sentence in ``<mark>``.

    Several citations of one paragraph (a merged source card) are marked in one excerpt,
    which runs from the first quote to the last with some context either side.
    """
    group = [citations] if isinstance(citations, Citation) else list(citations)
    hit = group[0].hit
    text = hit.text
    spans = sorted({s for c in group if (s := _locate(c, text, hit.start)) is not None})
    merged: list[tuple[int, int]] = []
    for a, b in spans:  # overlapping quotes become one mark
        if merged and a < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    if not merged:
        quote = next((c.quote for c in group if c.quote), "")
        return f"<mark>{_html(quote)}</mark>" if quote else _html(_trim(text))
    left, right = max(0, merged[0][0] - EXCERPT_CHARS), min(len(text), merged[-1][1] + EXCERPT_CHARS)
    parts = ["…" if left > 0 else ""]
    pos = left
    for a, b in merged:
        parts.append(_html(text[pos:a]) + f"<mark>{_html(text[a:b])}</mark>")
        pos = b
    parts.append(_html(text[pos:right]) + ("…" if right < len(text) else ""))
    return "".join(parts)


def source_groups(citations: Sequence[Citation]) -> list[list[Citation]]:
    """Citations grouped per paragraph (same article, same paragraph range), in first-number order:
    two sentences of one paragraph are one source card, not two near-identical ones."""
    groups: dict[tuple[str, tuple[int, int]], list[Citation]] = {}
    for c in sorted(citations, key=lambda c: c.number):
        groups.setdefault((c.hit.doc_id, tuple(c.hit.paragraphs)), []).append(c)  # type: ignore[arg-type]
    return list(groups.values())


def _trim(text: str, n: int = 2 * EXCERPT_CHARS) -> str:
    return text if len(text) <= n else text[:n] + "…"


def _meta(hit: Hit) -> str:
    bits = [_html(x) for x in (hit.date, hit.source) if x]
    return " · ".join(bits)


def _card(group: Sequence[Citation]) -> str:
    first = group[0]
    hit = first.hit
    url = safe_url(hit.url)
    original = f'<a class="sme-orig" href="{_attr(url)}" target="_blank" rel="noopener noreferrer">原始链接</a>' if url else ""
    numbers = "".join(f'<span class="sme-num">[{c.number}]</span>' for c in group)
    return (
        f'<div class="sme-card" id="sme-src-{first.number}">'
        f'<div class="sme-card-head">{numbers} '
        f'<span class="sme-title">{_html(hit.title)}</span></div>'
        f'<div class="sme-meta">{_meta(hit)}</div>'
        f'<div class="sme-excerpt">{excerpt_html(group)}</div>'
        f'<div class="sme-links"><a class="sme-view" href="{_link(first.link)}" target="_blank" rel="noopener">查看原文</a>'
        f"{original}</div></div>"
    )


def _near_miss(hit: Hit) -> str:
    meta = _meta(hit)
    return (
        f'<li><a href="{_link(hit.link)}" target="_blank" rel="noopener">{_html(hit.title)}</a>'
        + (f' <span class="sme-meta">{meta}</span>' if meta else "")
        + f'<div class="sme-excerpt">{_html(_trim(hit.text, 120))}</div></li>'
    )


def refusal_text(answer: Answer) -> str:
    """A refusal's own words, without the near-miss list the text carries (shown as cards instead)."""
    text = answer.text
    for label in (NEAR_ZH, NEAR_EN):
        cut = text.find("\n\n" + label)
        if cut >= 0 and answer.near_misses:
            text = text[:cut]
    return text.strip()


def answer_messages(answer: Answer, *, final: bool = True) -> list[str]:
    """The assistant's messages: the answer (plain Markdown, so 「复制」 copies readable text) and,
    once final, the source cards; a refusal is one boxed message with its near misses."""
    notice = f'\n\n<div class="sme-notice">{_html(answer.notice)}</div>' if answer.notice else ""
    note = understood_note(answer)
    understood = f'<div class="sme-understood">{_html(note)}</div>\n\n' if note else ""
    if not answer.answered:
        message = understood + _boxed("sme-refusal", "未找到可靠答案", _escape_answer(refusal_text(answer))) + notice
        if final and answer.near_misses:
            items = "".join(_near_miss(h) for h in answer.near_misses)
            message += f'\n\n<div class="sme-near"><div class="sme-near-head">可能相关（并非答案）</div><ul>{items}</ul></div>'
        return [message]
    messages = [understood + linked_text(answer) + notice]
    if final and answer.citations:
        cards = "".join(_card(g) for g in source_groups(answer.citations))
        messages.append(f'<div class="sme-sources"><div class="sme-sources-head">来源</div>{cards}</div>')
    return messages


def pending_message() -> str:
    return '<span class="sme-pending">正在检索相关报道…</span>'


def error_message(text: str) -> str:
    return _boxed("sme-refusal sme-error", "出错了", _md_text(text))


def _boxed(cls: str, head: str, markdown: str) -> str:
    """A styled box around Markdown: the blank lines let the Markdown inside be rendered."""
    return f'<div class="{cls}">\n<div class="sme-box-head">{escape(head)}</div>\n\n{markdown}\n\n</div>'


_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1")


def absolute(link: str, base: str | None) -> str:
    """``/articles/…`` under ``base`` (``http://host:port``); unchanged when no base is known."""
    return base.rstrip("/") + link if base and link.startswith("/") else link


def plain_text(answer: Answer, base: str | None = None) -> str:
    """What 「复制」 puts on the clipboard: the answer without Markdown or HTML, then one line per
    source, ``[1] 标题（来源，日期）URL``, with absolute article links when ``base`` is known."""
    text = refusal_text(answer) if not answer.answered else answer.text
    blocks = [_EMPHASIS.sub(r"\2", text).strip()]
    if answer.notice:
        blocks.append(answer.notice)
    if answer.citations:
        refs = ["参考来源："]
        for c in sorted(answer.citations, key=lambda c: c.number):
            about = "，".join(x for x in (c.hit.source, c.hit.date) if x)
            refs.append(f"[{c.number}] {c.hit.title}" + (f"（{about}）" if about else "") + " " + absolute(c.link, base))
        blocks.append("\n".join(refs))
    elif answer.near_misses:
        blocks.append("\n".join(["可能相关（并非答案）：", *(f"- {h.title} {absolute(h.link, base)}" for h in answer.near_misses)]))
    return "\n\n".join(blocks)


def answer_payload(answer: Answer, base: str | None = None) -> dict[str, Any]:
    """Structured data for the ``/ask`` API: text, answered flag, citations, near misses.

    With ``base`` (the server's public address) every ``link`` is absolute, so a notebook
    or a bot can follow it as is."""
    return {
        "question": answer.question,
        "text": answer.text,
        "answered": answer.answered,
        "mode": answer.mode,
        "notice": answer.notice,
        "understood": answer.understood,
        "citations": [
            {
                "number": c.number,
                "doc_id": c.hit.doc_id,
                "title": c.hit.title,
                "date": c.hit.date,
                "source": c.hit.source,
                "link": absolute(c.link, base),
                "url": c.hit.url,
                "quote": c.quote,
                "start": c.start,
                "end": c.end,
            }
            for c in answer.citations
        ],
        "near_misses": [
            {"doc_id": h.doc_id, "title": h.title, "date": h.date, "link": absolute(h.link, base), "url": h.url} for h in answer.near_misses
        ],
        "timings": dict(answer.timings),
    }


_TAG = re.compile(r"<[^>]+>")
_DROPPED = re.compile(r'^\s*<(?:div|span) class="sme-(?:sources|pending|refusal sme-error)')
_DROPPED_BLOCK = re.compile(r'<div class="sme-(?:understood|notice|near)">.*?</div>(?:</ul></div>)?', re.DOTALL)
_MD_LINK = re.compile(r"\[\\\[(\d+)\\\]\]\([^)]*\)")
# A finished answer is one message (``turns.new_turn``): its text, then the source cards and the
# copy/settings row; everything from the cards on is not answer text.
_TAIL = re.compile(r'<div class="sme-sources">|<pre class="sme-copytext">')


def history_messages(chat: list) -> list[dict[str, str]]:
    """The chat's messages as plain ``{"role", "content"}`` text for ``Searcher.ask(history=…)``:
    the user's questions as typed and each answer's text (markup, source cards, notices and
    the 「按…理解」 line removed; consecutive assistant messages joined)."""
    from html import unescape

    out: list[dict[str, str]] = []
    for message in chat or ():
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            continue
        content = message.get("content")
        if isinstance(content, list):  # multimodal form: [{"type": "text", "text": …}, …]
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            continue
        if message["role"] == "assistant":
            if _DROPPED.match(content):
                continue
            content = _TAIL.split(content, maxsplit=1)[0]
            content = unescape(_TAG.sub("", _DROPPED_BLOCK.sub("", _MD_LINK.sub(r"[\1]", content)))).strip()
            if out and out[-1]["role"] == "assistant":
                out[-1]["content"] += "\n" + content
                continue
        out.append({"role": message["role"], "content": content})
    return out
