"""A conversation as the follow-up rules read it: chat messages → validated history → turns.

``history`` follows the chat messages convention: ``[{"role": "user"|"assistant", "content":
str}, ...]``; ``check_history`` validates it and ``turns`` pairs each user question with the
assistant text after it.  ``Resolution`` is what :func:`sme_qa.followup.resolve` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import QueryError

__all__ = ["CONTEXT_TURNS", "Lookup", "Resolution", "Turn", "check_history", "turns"]

# text → passages that may hold it (the searcher's lexical leg); lets a rule read the paragraph
# around a quoted sentence, for the speaker named beside it.  None: the history alone is used.
Lookup = Callable[[str], Sequence[str]]

MAX_HISTORY_MESSAGES = 200  # older messages are ignored (only the last few turns are used)
MAX_MESSAGE_CHARS = 20_000
CONTEXT_TURNS = 3  # how many previous user turns are searched for a subject

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
