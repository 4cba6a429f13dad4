"""Text utilities shared by every stage: normalisation for matching, sentence spans.

Display text is never changed; ``normalize`` produces a separate form for matching
(NFKC folds full-width digits and ``％``, so ``99．5％`` matches ``99.5%``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

# Sentence-final punctuation; a run of closers after it stays with the sentence.
SENTENCE_END = "。！？；!?;…"
CLOSERS = "”’」』》）)】\"'"
_SENTENCE_RE = re.compile(
    rf"[^{re.escape(SENTENCE_END)}]*?(?:[{re.escape(SENTENCE_END)}]+[{re.escape(CLOSERS)}]*|\.(?=\s)|$)",
    re.S,
)
_WS_RE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Matching form: NFKC, lower case, runs of white space folded to one space."""
    return _WS_RE.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


def compact(text: str) -> str:
    """Matching form without any white space (how eval answers are compared)."""
    return _WS_RE.sub("", unicodedata.normalize("NFKC", text)).lower()


def ends_sentence(text: str) -> bool:
    """True when ``text`` ends in sentence-final punctuation (closing quotes allowed after it)."""
    stripped = text.rstrip().rstrip(CLOSERS)
    return bool(stripped) and (stripped[-1] in SENTENCE_END or stripped[-1] == ".")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Split ``text`` into sentences as (start, end) spans that cover it exactly, in order.

    Splits after 。！？；!?; (and ``.`` before white space); closing quotes and
    brackets stay with their sentence.  Leading white space of a sentence is left
    to the previous span so that concatenating the spans gives back ``text``.
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _SENTENCE_RE.match(text, pos)
        end = m.end() if m and m.end() > pos else n
        while end < n and text[end].isspace():
            end += 1
        spans.append((pos, end))
        pos = end
    return spans


def split_sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


@functools.lru_cache(maxsize=1)
def _t2s() -> tuple[Any, frozenset[str]]:
    """The OpenCC t2s converter and the set of characters it changes."""
    from pathlib import Path

    import opencc  # opencc-python-reimplemented: pure Python, offline

    table = Path(opencc.__file__).parent / "dictionary" / "TSCharacters.txt"
    traditional = frozenset(line.split("\t", 1)[0] for line in table.read_text(encoding="utf-8").splitlines() if "\t" in line)
    return opencc.OpenCC("t2s"), traditional


_TRAD_PROBE = re.compile(r"[\u4e00-\u9fff]")


def to_simplified(text: str) -> str:
    """Traditional → simplified Chinese.  Text with no traditional-only character is returned
    as it is without running the (pure-Python, slow) converter."""
    converter, traditional = _t2s()
    if traditional.isdisjoint(text):
        return text
    return str(converter.convert(text))


def has_traditional(text: str) -> bool:
    """True when ``text`` holds a character that t2s conversion would change."""
    return not _t2s()[1].isdisjoint(text)


def has_han(text: str) -> bool:
    return bool(_TRAD_PROBE.search(text))


# A sentence that only says who said the quote before it: 「……”，工信部部长金壮龙表示。」
ATTRIBUTION = re.compile(r"(?:表示|说|指出|介绍|称|透露|强调|认为|坦言|告诉记者|说道|谈到)[。！!.]?$")
