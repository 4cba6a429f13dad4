"""BM25 over term-major postings, scored per query from the postings of its terms only.

A lexical index is one or more *segments* of postings (the base written with a
generation, and a small delta of the rows added since), each three arrays:

    indptr   int64, terms + 1: term t's postings are ``rows[indptr[t]:indptr[t + 1]]``
    rows     int32, the chunk row of each posting (within the segment)
    tf       uint16, how often the term occurs in that row

plus one length (number of terms, float32) per chunk row.  The base's arrays are plain
``.npy`` files, memory-mapped on load: a query reads the pages of its own terms, and
loading costs no transpose and no resident copy of the count matrix.  Rows removed since
the base was written are masked out (``live``); document frequencies count live rows only,
per term, when a query or the reader asks (Okapi BM25 with Lucene's idf, so the scores are
those of an index built afresh over the live rows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BM25", "POSTINGS_FILES", "Postings", "read_postings", "write_postings"]

# The files of a base segment, in the generation directory.
POSTINGS_FILES = ("lexical.indptr.npy", "lexical.rows.npy", "lexical.tf.npy", "lexical.lengths.npy")
_TF_MAX = np.iinfo(np.uint16).max


@dataclass
class Postings:
    """One segment: term-major postings over ``n_rows`` chunk rows starting at global row ``offset``."""

    indptr: np.ndarray
    rows: np.ndarray
    tf: np.ndarray
    n_rows: int
    offset: int = 0

    @classmethod
    def from_counts(cls, counts: Any, offset: int = 0) -> Postings:
        """The postings of a chunk × term count matrix (any scipy.sparse)."""
        import scipy.sparse as sp

        csr = sp.csr_matrix(counts)
        return cls.from_csr(csr.indptr, csr.indices, csr.data, csr.shape[1], offset)

    @classmethod
    def from_csr(cls, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n_terms: int, offset: int = 0) -> Postings:
        """The postings of a chunk-major (CSR) count matrix given as its three arrays (numpy only)."""
        n_rows = len(indptr) - 1
        order = np.argsort(indices, kind="stable")  # by term, rows ascending within a term
        rows = np.repeat(np.arange(n_rows, dtype=np.int32), np.diff(indptr))[order]
        per_term = np.bincount(np.asarray(indices, dtype=np.int64), minlength=n_terms)
        term_ptr = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(per_term, dtype=np.int64)])
        return cls(term_ptr, rows, np.minimum(np.asarray(data)[order], _TF_MAX).astype(np.uint16), n_rows, offset)

    @property
    def n_terms(self) -> int:
        return len(self.indptr) - 1

    def term(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(global rows, tf) of term ``t`` in this segment (empty when it never occurs here)."""
        if t >= self.n_terms:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint16)
        lo, hi = int(self.indptr[t]), int(self.indptr[t + 1])
        return self.rows[lo:hi].astype(np.int64) + self.offset, self.tf[lo:hi]

    def to_counts(self, n_terms: int) -> Any:
        """The chunk × term count matrix (CSR int32) of this segment (transposes: the indexer's use)."""
        import scipy.sparse as sp

        indptr = np.asarray(self.indptr, dtype=np.int64)
        if len(indptr) - 1 < n_terms:
            indptr = np.append(indptr, np.full(n_terms - (len(indptr) - 1), indptr[-1]))
        csc = sp.csc_matrix((np.asarray(self.tf, dtype=np.int32), np.asarray(self.rows), indptr), shape=(self.n_rows, n_terms))
        return csc.tocsr()


def write_postings(gdir: Path, counts: Any) -> None:
    """Write the base segment of ``counts`` (chunk × term) as the ``POSTINGS_FILES`` of ``gdir``."""
    import scipy.sparse as sp

    p = Postings.from_counts(counts)
    lengths = np.asarray(sp.csr_matrix(counts).sum(axis=1), dtype=np.float32).ravel()
    for name, array in zip(POSTINGS_FILES, (p.indptr, p.rows, p.tf, lengths)):
        np.save(gdir / name, array, allow_pickle=False)


def read_postings(gdir: Path, *, mmap: bool = True) -> tuple[Postings, np.ndarray]:
    """(base segment, per-row lengths) from ``gdir``; memory-mapped unless ``mmap`` is False.

    Sizes are checked against each other (a truncated or mismatched file raises ValueError)."""
    indptr, rows, tf, lengths = (np.load(gdir / name, mmap_mode="r" if mmap else None, allow_pickle=False) for name in POSTINGS_FILES)
    if indptr.ndim != 1 or len(indptr) < 1 or rows.shape != tf.shape or rows.ndim != 1:
        raise ValueError("postings arrays of the wrong shape")
    if int(indptr[0]) != 0 or int(indptr[-1]) != len(rows):
        raise ValueError(f"postings index ends at {int(indptr[-1])}, the postings hold {len(rows)}")
    if lengths.ndim != 1:
        raise ValueError("row lengths of the wrong shape")
    return Postings(indptr, rows, tf, len(lengths)), lengths


class BM25:
    """Okapi BM25 (Lucene's idf) over postings segments, optionally masking removed rows.

    ``BM25(counts)`` indexes a chunk × term count matrix in memory (one segment);
    :meth:`from_segments` takes segments read from disk."""

    def __init__(self, tf: Any = None, k1: float = 1.2, b: float = 0.75) -> None:
        import scipy.sparse as sp

        counts = sp.csr_matrix(tf if tf is not None else (0, 0))
        lengths = np.asarray(counts.sum(axis=1), dtype=np.float32).ravel()
        self._setup([Postings.from_counts(counts)], lengths, None, k1, b)

    @classmethod
    def from_segments(
        cls, segments: Sequence[Postings], lengths: np.ndarray, live: np.ndarray | None, k1: float = 1.2, b: float = 0.75
    ) -> BM25:
        self = cls.__new__(cls)
        self._setup(list(segments), lengths, live, k1, b)
        return self

    def _setup(self, segments: list[Postings], lengths: np.ndarray, live: np.ndarray | None, k1: float, b: float) -> None:
        self.segments = segments
        self.n_rows = len(lengths)
        self.live = live
        self.n_docs = int(live.sum()) if live is not None else self.n_rows
        live_lengths = lengths[live] if live is not None else lengths
        avg = float(live_lengths.mean()) if len(live_lengths) else 1.0
        self.k1, self.b = float(k1), float(b)
        self.norm = (k1 * (1 - b + b * np.asarray(lengths, dtype=np.float32) / (avg or 1.0))).astype(np.float32)
        self._df: dict[int, int] = {}

    def _postings(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        parts = [seg.term(t) for seg in self.segments]
        rows = np.concatenate([r for r, _ in parts]) if len(parts) > 1 else parts[0][0]
        tf = np.concatenate([f for _, f in parts]) if len(parts) > 1 else parts[0][1]
        if self.live is not None and len(rows):
            keep = self.live[rows]
            rows, tf = rows[keep], tf[keep]
        return rows, tf

    def document_frequency(self, t: int) -> int:
        """How many live chunk rows hold term ``t``."""
        found = self._df.get(t)
        if found is None:
            found = self._df[t] = len(self._postings(t)[0])
        return found

    def idf(self, df: int) -> float:
        return math.log1p((self.n_docs - df + 0.5) / (df + 0.5))

    def scores(self, term_ids: Sequence[int]) -> np.ndarray:
        """One score per chunk row (0 where no term occurs, and for removed rows)."""
        out = np.zeros(self.n_rows, dtype=np.float32)
        if not len(term_ids) or self.n_docs == 0:
            return out
        ids, counts = np.unique(np.asarray(term_ids, dtype=np.int64), return_counts=True)
        k1p = np.float32(self.k1 + 1)
        for t, c in zip(ids.tolist(), counts.tolist()):
            rows, tf = self._postings(t)
            if not len(rows):
                continue
            self._df.setdefault(t, len(rows))
            f = tf.astype(np.float32)
            w = f * k1p / (f + self.norm[rows])
            w *= np.float32(self.idf(len(rows)) * c)
            out[rows] += w  # a term's rows are distinct
        return out

    def top(self, term_ids: Sequence[int], k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` (rows, scores) with a positive score, optionally only rows where ``mask`` is True."""
        scores = self.scores(term_ids)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        positive = np.flatnonzero(scores > 0)
        if len(positive) > k:
            positive = positive[np.argpartition(-scores[positive], k - 1)[:k]]
        order = positive[np.lexsort((positive, -scores[positive]))]
        return order, scores[order]

    def rows_with_all(self, term_ids: Sequence[int]) -> np.ndarray:
        """Live rows holding every one of ``term_ids`` (sorted)."""
        found: np.ndarray | None = None
        for t in term_ids:
            rows = np.unique(self._postings(int(t))[0])
            found = rows if found is None else np.intersect1d(found, rows, assume_unique=True)
            if not len(found):
                break
        return found if found is not None else np.zeros(0, dtype=np.int64)
