"""The conversation as the browser keeps it: a list of turns in ``gr.BrowserState``.

A turn is a plain JSON dict, so it survives a reload and the way back from an article::

    {"question": str, "messages": [assistant message HTML, ...], "text": answer text,
     "answered": bool, "settings": {...}, "citations": [{number, doc_id, title, link, quote}],
     "time": ISO time, "rating": "up" | "down" | None, "error": error line | None}

The chat is redrawn from the turns (``chat_messages``); follow-up questions get them as
role/content messages (``history``); a 👍/👎 on a message finds its turn (``turn_at``).
Pure functions, no Gradio.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape
from typing import Any

from ..records import Answer
from .render import absolute, plain_text

__all__ = [
    "MAX_TURNS",
    "append",
    "chat_messages",
    "feedback_values",
    "history",
    "new_turn",
    "rate",
    "settings_line",
    "tools_html",
    "turn_at",
]

MAX_TURNS = 30  # kept in the browser; older turns are dropped (localStorage is small)
MODE_NAMES = {"hybrid": "混合检索", "dense": "语义检索", "lexical": "关键词检索"}

Turn = dict[str, Any]


def settings_line(options: dict[str, Any], answer: Answer | None = None) -> str:
    """The settings an answer was produced with, e.g. ``混合检索 · 5 个段落 · 2022-01-01 至 不限 · 0.31 秒``."""
    bits = [MODE_NAMES.get(str(options.get("mode")), str(options.get("mode"))), f"{options.get('k')} 个段落"]
    date_from, date_to = options.get("date_from"), options.get("date_to")
    if date_from or date_to:
        bits.append(f"{date_from or '不限'} 至 {date_to or '不限'}")
    if answer is not None and answer.mode == "llm":
        bits.append("大模型撰写")
    total_ms = (answer.timings or {}).get("total_ms") if answer is not None else None
    if isinstance(total_ms, (int, float)):
        bits.append(f"{total_ms / 1000:.2f} 秒")
    return " · ".join(bits)


def tools_html(question: str, copy_text: str, settings: str) -> str:
    """What ends each answer: its plain text and question (hidden ``<pre>`` blocks, escaped; Gradio's
    sanitiser drops ``data-*`` attributes), then one 「复制回答」 button and the settings used.

    ``static/chat.js`` copies the text when the button is pressed.  A ``<pre>`` is one HTML
    block to the Markdown renderer even across blank lines, so the text arrives as written."""
    one_line = " ".join(question.split())
    return (
        f'<pre class="sme-copytext">{escape(copy_text, quote=False)}</pre>'
        f'<pre class="sme-copyq">{escape(one_line, quote=False)}</pre>\n\n'
        '<div class="sme-tools"><button type="button" class="sme-copy">复制回答</button>'
        f'<span class="sme-settings">{escape(settings)}</span></div>'
    )


def new_turn(
    question: str,
    messages: Sequence[str],
    options: dict[str, Any],
    answer: Answer | None = None,
    *,
    base: str | None = None,
    error: str | None = None,
    now: dt.datetime | None = None,
) -> Turn:
    """A finished turn: the answer and its source cards as one message (one 👍/👎 pair, one copy
    button), followed by the tools row (copy + settings)."""
    settings = settings_line(options, answer)
    copy = plain_text(answer, base) if answer is not None else (error or "")
    message = "\n\n".join([*messages, tools_html(question, copy, settings)])
    return {
        "question": question,
        "messages": [message],
        "text": answer.text if answer is not None else (error or ""),
        "answered": bool(answer is not None and answer.answered),
        "settings": {k: options.get(k) for k in ("k", "mode", "date_from", "date_to")},
        "citations": [
            {"number": c.number, "doc_id": c.hit.doc_id, "title": c.hit.title, "link": absolute(c.link, base), "quote": c.quote}
            for c in (answer.citations if answer is not None else ())
        ],
        "time": (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds"),
        "rating": None,  # "up" / "down" once the user gave 👍/👎
        "error": error,  # the error line shown instead of an answer, else None
    }


def _valid(turns: object) -> list[Turn]:
    """Turns as read back from the browser: anything malformed is dropped, not trusted."""
    if not isinstance(turns, list):
        return []
    good = [
        t
        for t in turns
        if isinstance(t, dict)
        and isinstance(t.get("question"), str)
        and isinstance(t.get("messages"), list)
        and all(isinstance(m, str) for m in t["messages"])
    ]
    return good[-MAX_TURNS:]


def chat_messages(turns: object) -> list[dict[str, str]]:
    """The Chatbot value for ``turns``: each question, then its assistant messages."""
    out: list[dict[str, str]] = []
    for turn in _valid(turns):
        out.append({"role": "user", "content": turn["question"]})
        out.extend({"role": "assistant", "content": m} for m in turn["messages"])
    return out


def feedback_values(turns: object) -> list[str | None]:
    """Gradio's ``feedback_value`` for ``chat_messages(turns)``: the 👍/👎 shown on each assistant message."""
    shown = {"up": "Like", "down": "Dislike"}
    return [shown.get(str(turn.get("rating"))) for turn in _valid(turns) for _ in turn["messages"]]


def rate(turns: object, index: int, rating: str) -> tuple[list[Turn], Turn | None]:
    """``turns`` with the turn of chat message ``index`` rated; that turn (None if there is none)."""
    kept = _valid(turns)
    turn = turn_at(kept, index)
    if turn is None:
        return kept, None
    rated = {**turn, "rating": None if rating == "cleared" else rating}
    return [rated if t is turn else t for t in kept], rated


def history(turns: object) -> list[dict[str, str]]:
    """The conversation so far as role/content messages (answer text, not HTML), for follow-ups;
    a turn that ended in an error keeps its question, with no answer text."""
    out: list[dict[str, str]] = []
    for turn in _valid(turns):
        out.append({"role": "user", "content": turn["question"]})
        out.append({"role": "assistant", "content": "" if turn.get("error") else str(turn.get("text") or "")})
    return out


def turn_at(turns: object, index: int) -> Turn | None:
    """The turn that chat message number ``index`` (0-based, as in ``chat_messages``) belongs to."""
    pos = 0
    for turn in _valid(turns):
        size = 1 + len(turn["messages"])
        if pos <= index < pos + size:
            return turn
        pos += size
    return None


def append(turns: object, turn: Turn) -> list[Turn]:
    return [*_valid(turns), turn][-MAX_TURNS:]
