"""Lexical retrieval: BM25 over jieba tokens, backed by character bigrams.

Text for matching is NFKC-normalised, lower-cased and converted to simplified
characters, so a question in traditional characters finds simplified text and the
other way round.  Tokens are jieba's search-mode words (a private ``jieba.Tokenizer``
whose dictionary is extended with the corpus's own quoted terms) plus the
character bigrams of every Han run, so names jieba has never seen (海创汇, 卡奥斯)
still match.  Stop words and punctuation are dropped.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .postings import BM25  # re-exported: BM25 lives with its postings files
from .text import normalize, to_simplified

log = logging.getLogger(__name__)

# Bump when a change to tokenisation (here or in text.normalize / to_simplified) can change
# the terms of a text: the next `sme-qa index` recounts every chunk's terms (vectors are
# kept; indexing.pipeline_versions, recorded in the manifest).
TOKENIZER_VERSION = 1

_HAN_RUN = re.compile(r"[\u3400-\u9fff]+")
_WORDISH = re.compile(r"[\w%.]+", re.UNICODE)
# Terms the corpus marks as names: 《policy titles》, “quoted terms”, 「…」.
_QUOTED = re.compile(r"[《“「『\"]([\u3400-\u9fffA-Za-z0-9]{2,12})[》”」』\"]")

STOP_WORDS = frozenset(
    """的 了 是 在 和 与 及 或 等 也 都 就 而 之 其 这 那 有 为 对 中 上 下 将 从 被 把 由 以 于 并 向 到 个
    一个 我们 你们 他们 它们 什么 多少 哪 哪些 哪个 哪里 哪一年 如何 怎么 怎样 为什么 吗 呢 吧 啊 谁 几 何时 是否
    the a an of to in on at is are was were be been what how many much which who whom when where why
    does do did has have had for by with from and or as that this these those it its""".split()
)


class Tokenizer:
    """Turns text into BM25 terms.  Query tokenisation never changes the vocabulary."""

    def __init__(self, vocabulary: Iterable[str] = (), *, bigrams: bool = True, t2s: bool = True) -> None:
        import jieba

        jieba.setLogLevel(logging.WARNING)  # its own console handler chats at DEBUG
        self.vocabulary = sorted(set(vocabulary))
        self.bigrams = bigrams
        self.t2s = t2s
        self._jieba = jieba.Tokenizer()
        self._jieba.initialize()
        for word in self.vocabulary:
            self._jieba.add_word(word, freq=max(self._jieba.suggest_freq(word), 10))

    def tokens(self, text: str) -> list[str]:
        text = normalize(text)
        if self.t2s:
            text = to_simplified(text)
        out = [w for w in self._jieba.cut_for_search(text) if w not in STOP_WORDS and _WORDISH.fullmatch(w)]
        if self.bigrams:
            for run in _HAN_RUN.findall(text):
                out.extend("#" + run[i : i + 2] for i in range(len(run) - 1))
        return out

    def words(self, text: str, *, normalized: bool = True) -> list[str]:
        """jieba's precise-mode words of ``text`` (no search-mode sub-words, no bigrams): in matching
        form, or with ``normalized=False`` exactly as they stand in ``text``."""
        if normalized:
            text = normalize(text)
            if self.t2s:
                text = to_simplified(text)
        return [w for w in self._jieba.cut(text, HMM=False) if w.strip()]


def corpus_vocabulary(texts: Iterable[str]) -> set[str]:
    """Quoted names and titles in the corpus (《…》, “…”, 「…」) to add to the tokenizer's dictionary."""
    found: set[str] = set()
    for text in texts:
        for term in _QUOTED.findall(to_simplified(normalize(text))):
            if not term.isascii():
                found.add(term)
    return found


class TermTable:
    """A growing term → column mapping."""

    def __init__(self, terms: Sequence[str] = ()) -> None:
        self.terms = list(terms)
        self.ids = {t: i for i, t in enumerate(self.terms)}

    def add(self, term: str) -> int:
        i = self.ids.get(term)
        if i is None:
            i = self.ids[term] = len(self.terms)
            self.terms.append(term)
        return i


def count_matrix(token_lists: Sequence[Sequence[str]], table: TermTable) -> Any:
    """Chunk × term count matrix (CSR, int32), adding unseen terms to ``table``."""
    import scipy.sparse as sp

    indptr = [0]
    indices: list[int] = []
    data: list[int] = []
    for tokens in token_lists:
        for term, n in Counter(tokens).items():
            indices.append(table.add(term))
            data.append(n)
        indptr.append(len(indices))
    return sp.csr_matrix(
        (np.asarray(data, dtype=np.int32), np.asarray(indices, dtype=np.int64), np.asarray(indptr, dtype=np.int64)),
        shape=(len(token_lists), len(table.terms)),
    )


@runtime_checkable
class LexicalIndex(Protocol):
    """The lexical leg as the searcher uses it: scores over chunk rows for a bag of term ids."""

    n_docs: int  # live chunk rows

    def document_frequency(self, t: int) -> int:
        """How many live chunk rows hold term ``t``."""

    def scores(self, term_ids: Sequence[int]) -> np.ndarray:
        """One score per chunk row (0 where no term occurs)."""

    def top(self, term_ids: Sequence[int], k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` (rows, scores) with a positive score, only rows where ``mask`` is True if given."""


__all__ = ["BM25", "LexicalIndex", "TermTable", "Tokenizer", "corpus_vocabulary", "count_matrix"]
