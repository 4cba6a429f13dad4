"""One index generation as a searcher holds it: both indexes, the row tables, the reader's view.

``load_state`` reads the generation ``vectors/manifest.json`` names (lazily: memory-mapped
postings and tables, the vector store in memory) and jieba's dictionary beside it;
``IndexState`` is what queries run on, swapped whole by ``Searcher.refresh``; ``IndexView``
is the typed view of it that the reader is handed (``reader.CorpusView``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import SmeQaError
from .store import Generation, load_generation, manifest_stamp

if TYPE_CHECKING:
    from .crosslingual import PinyinNames
    from .lexical import LexicalIndex, Tokenizer
    from .vector_store import VectorStore

__all__ = ["IndexState", "IndexView", "load_state"]

log = logging.getLogger(__name__)


@dataclass
class IndexState:
    """One generation as the searcher uses it: the two indexes it is handed, and row tables."""

    generation: Generation
    stamp: tuple[int, int] | None
    bm25: LexicalIndex  # the lexical leg (BM25 today)
    tokenizer: Tokenizer
    term_ids: dict[str, int]
    doc_index: dict[str, int]
    chunk_doc_rows: np.ndarray  # chunk row → document row
    chunk_dates: np.ndarray  # ISO date strings ("" when unknown), per chunk
    chunk_sources: np.ndarray
    row_of_vid: np.ndarray  # vector-store id → chunk row (-1: none)
    view: IndexView | None = None  # made on first use by Searcher.view
    # the vocabulary's names by pinyin, made for the first English question (~0.1 s per 16k terms,
    # plus ~1 s once to read jieba's dictionary tags)
    pinyin: PinyinNames | None = None

    @property
    def dense(self) -> VectorStore:
        """The dense leg: the generation's vector store (FAISS today)."""
        store = self.generation.store
        assert store is not None  # a searcher loads it
        return store


class IndexView:
    """One index generation's statistics and the query embedder: what the reader is handed
    (``reader.CorpusView``).  Idf and place names are computed on first use and kept with
    the generation, so a hot swap never mixes two indexes in one answer."""

    def __init__(self, state: IndexState, embed: Callable[[Sequence[str]], np.ndarray]) -> None:
        self._state = state
        self._embed = embed
        self._places: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()

    @property
    def bundled(self) -> bool:
        """Whether the index's vectors come from the bundled default model, on whose cosine scale
        the reader's cosine thresholds were fitted."""
        from .bundled import is_default

        return is_default(self._state.generation.manifest["config"].get("model"))

    def idf(self, term: str) -> float:
        """BM25 idf of ``term`` over the chunks (a word the index never saw gets the highest)."""
        n = self._state.bm25.n_docs
        row = self._state.term_ids.get(term)
        d = self._state.bm25.document_frequency(row) if row is not None else 0
        return math.log1p((n - d + 0.5) / (d + 0.5))

    def tokens(self, text: str) -> list[str]:
        return self._state.tokenizer.tokens(text)

    def words(self, text: str) -> list[str]:
        """The words of ``text`` as they stand in it (for answer spans)."""
        return self._state.tokenizer.words(text, normalized=False)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts)

    def places(self, text: str) -> frozenset[str]:
        """The place names (jieba tag ns) among the words of ``text``; cached by text."""
        found = self._places.get(text)
        if found is None:
            from .question import PLACE_TAGS, tag

            found = frozenset(w for w in self._state.tokenizer.words(text) if tag(w) in PLACE_TAGS)
            with self._lock:
                if len(self._places) > PLACES_CACHE_SIZE:
                    self._places.clear()
                self._places[text] = found
        return found


PLACES_CACHE_SIZE = 50_000  # sentences whose place names are remembered per generation


def load_state(vectors: Path) -> IndexState:
    """The generation the manifest in ``vectors`` names, ready for queries."""
    from concurrent.futures import ThreadPoolExecutor

    from .lexical import BM25, Tokenizer

    stamp = manifest_stamp(vectors)
    with ThreadPoolExecutor(1) as pool:
        # jieba's dictionary loads meanwhile (its C-free parts release the GIL little, but the
        # FAISS read and the file reads below do): the manifest names the vocabulary
        manifest, vocabulary = _vocabulary(vectors)
        tokenizer_job = pool.submit(Tokenizer, vocabulary) if vocabulary is not None else None
        for attempt in range(3):  # a concurrent indexer may remove the generation we are reading
            try:
                gen = load_generation(vectors, lazy=True, manifest=manifest if attempt == 0 else None)
                break
            except SmeQaError:
                if attempt == 2 or manifest_stamp(vectors) == stamp:
                    raise
                stamp = manifest_stamp(vectors)
        lex = gen.lexical
        tokenizer = tokenizer_job.result() if tokenizer_job is not None else None
    if tokenizer is None or tokenizer.vocabulary != sorted(set(lex["vocabulary"])):
        tokenizer = Tokenizer(lex["vocabulary"])
    if gen.tables is not None:  # formats 2 and 3: per-row ids without parsing the tables
        doc_ids = gen.tables["doc_ids"].tolist()
        live_docs = range(len(doc_ids)) if gen.live_docs is None else np.flatnonzero(gen.live_docs).tolist()
        doc_index = {doc_ids[i]: i for i in live_docs}
        rows = gen.tables["chunk_doc"]
        dates = np.array(gen.tables["doc_dates"].tolist(), dtype=object)
        sources = np.array(gen.tables["doc_sources"].tolist(), dtype=object)
    else:
        doc_index = {d["id"]: i for i, d in enumerate(gen.documents)}
        rows = np.array([doc_index[c["doc_id"]] for c in gen.chunks], dtype=np.int64)
        dates = np.array([d.get("date") or "" for d in gen.documents], dtype=object)
        sources = np.array([d.get("source") or "" for d in gen.documents], dtype=object)
    assert gen.lengths is not None
    bm25 = BM25.from_segments(gen.postings, gen.lengths, gen.live, lex["k1"], lex["b"])
    row_of_vid = np.full(int(gen.vids.max()) + 1 if len(gen.vids) else 0, -1, dtype=np.int64)
    live_rows = np.arange(len(gen.vids)) if gen.live is None else np.flatnonzero(gen.live)
    row_of_vid[gen.vids[live_rows]] = live_rows
    log.info("loaded %s: %d documents, %d chunks", vectors, len(doc_index), len(live_rows))
    return IndexState(
        gen,
        stamp,
        bm25,
        tokenizer,
        {t: i for i, t in enumerate(lex["terms"])},
        doc_index,
        rows,
        dates[rows],
        sources[rows],
        row_of_vid,
    )


def _vocabulary(vectors: Path) -> tuple[dict[str, Any] | None, list[str] | None]:
    """(manifest, the tokenizer vocabulary its generation's lexical.json names); either None
    when unreadable: the load that follows reports what is wrong."""
    import json

    from .store import read_manifest

    try:
        manifest = read_manifest(vectors)
    except SmeQaError:
        return None, None
    try:
        lexical = json.loads((vectors / manifest["generation"] / "lexical.json").read_text(encoding="utf-8"))
        words = lexical["vocabulary"]
    except (OSError, ValueError, KeyError, TypeError):
        return manifest, None
    return manifest, words if isinstance(words, list) and all(isinstance(w, str) for w in words) else None
