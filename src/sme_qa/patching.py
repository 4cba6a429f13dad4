"""An update that writes O(changed articles) bytes: the base files linked, a new delta written.

When the previous index is of this format, built with the same settings, pipeline and
weights, and its vector store can take removals (flat or IVF), ``patch`` brings it up to
date without reading its million rows: unchanged source files are recognised by the
manifest's stamps alone, changed files are read and their articles compared by content
hash, and only the articles that were added, changed or removed are touched.  Their new
chunk rows, term counts and vectors go into the generation's delta (with the rows the
delta already held); the base articles they replace or remove are tombstoned; the base
files are hard links to the previous generation's.  A chunk whose embedded text is
unchanged keeps its vector id, so the vector store is not touched for it.

Once the delta holds more than ``COMPACT_SHARE`` of the base's chunks (or the store would
need re-training, or ``--index auto`` would choose another kind) ``patch`` returns None
and the full writer (:mod:`sme_qa.indexing`) writes the whole index as a new base.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ._version import __version__
from .chunking import ChunkSettings
from .corpus import Skipped, SourceFile, read_source, scan
from .errors import IndexWriteError, InputFileError, SmeQaError
from .generation import Generation, delta_counts, load_generation
from .index_parts import (
    IndexSummary,
    _content_config,
    _file_sha1,
    article_hash,
    embed_missing,
    lexical_input,
    new_rows,
    pipeline_versions,
    summary_time,
)
from .lexical import BM25, TermTable, Tokenizer, corpus_vocabulary, count_matrix
from .manifest import FORMAT_VERSION, read_manifest, store_backend
from .progress import Progress
from .records import Article
from .settings import Settings
from .store import remove_stale, resolve_kind, write_patch
from .vector_cache import VectorBank, VectorCache
from .vector_store import open_store

if TYPE_CHECKING:
    from .embedding import Embedder

__all__ = ["COMPACT_SHARE", "patch"]

log = logging.getLogger(__name__)

# The delta is merged into a new base once it holds this share of the base's chunks: a
# searcher applies the delta on load (its vectors added to the store, its counts turned
# term-major), and every patch rewrites it, so its size bounds both.  bench/bench_scale.py
# times an update at 1M chunks either way (a patch, and the full write this triggers).
COMPACT_SHARE = 0.05
# … or once it holds this many, whatever the base's size (small indexes stay one base).
COMPACT_MIN = 2_000


def patch(
    settings: Settings,
    config: dict[str, Any],
    chunking: ChunkSettings,
    progress: Progress | None,
    choose: Callable[[int], Embedder],
    embedder: Embedder | None,
    started: float,
) -> IndexSummary | None:
    """The summary of a patch written (or of no change), or None: the full writer must run."""
    try:
        manifest = read_manifest(settings.vectors)
    except SmeQaError:
        return None
    found = manifest.get("vector_store")
    described: dict[str, Any] = found if isinstance(found, dict) else {}
    if (
        manifest.get("format") != FORMAT_VERSION
        or _content_config(manifest.get("config")) != _content_config(config)
        or manifest["config"].get("index_type") != config["index_type"]
        or manifest.get("pipeline") != pipeline_versions()
        or described.get("kind") not in ("flat", "ivf")
        or described.get("legacy")
        or not isinstance(manifest.get("documents"), dict)
    ):
        return None
    if embedder is not None:
        current: str | None = embedder.fingerprint
    else:
        from .embedding import local_fingerprint

        current = local_fingerprint(settings.model)
    if current is not None and current != manifest["fingerprint"]:
        return None
    try:
        gen = load_generation(settings.vectors, lazy=True, with_store=False, manifest=manifest)
    except SmeQaError:
        return None  # the full writer says what is wrong and rebuilds
    return _Patch(settings, gen, chunking, progress, choose, started).run()


class _Patch:
    def __init__(
        self,
        settings: Settings,
        gen: Generation,
        chunking: ChunkSettings,
        progress: Progress | None,
        choose: Callable[[int], Embedder],
        started: float,
    ) -> None:
        self.settings, self.gen, self.chunking, self.progress, self.choose, self.started = (
            settings,
            gen,
            chunking,
            progress,
            choose,
            started,
        )
        self.manifest = gen.manifest
        assert gen.tables is not None
        self.tables = gen.tables
        doc_ids = self.tables["doc_ids"].tolist()
        live_docs = gen.live_docs if gen.live_docs is not None else np.ones(len(doc_ids), dtype=bool)
        self.doc_row = {doc_ids[i]: i for i in np.flatnonzero(live_docs).tolist()}

    def _old_hash(self, doc_id: str) -> str | None:
        entry = self.manifest["documents"].get(doc_id)
        return entry.get("hash") if isinstance(entry, dict) else None

    def run(self) -> IndexSummary | None:
        settings = self.settings
        old_sources: dict[str, dict[str, Any]] = self.manifest["sources"]
        scanned, scan_skips = scan(settings.corpus)
        skipped = list(scan_skips)
        new_sources: dict[str, dict[str, Any]] = {}
        read: dict[str, Article] = {}  # articles of the files read again
        kept_ids: set[str] = set()  # articles of unchanged files (and of unreadable ones)
        seen: dict[str, str | SourceFile] = {}
        for src in scanned:
            prev = old_sources.get(src.rel)
            if prev is not None and prev["mtime_ns"] == src.mtime_ns and prev["size"] == src.size:
                # untouched since the last run (nearly every file of a large corpus): its entry as it was
                docs = prev["docs"]
                if all(d in self.doc_row and d not in seen for d in docs):
                    seen.update(dict.fromkeys(docs, src))
                    kept_ids.update(docs)
                    new_sources[src.rel] = prev
                    continue
            stamp: dict[str, Any] = {"size": src.size, "mtime_ns": src.mtime_ns}
            if prev is not None and all(d in self.doc_row for d in prev["docs"]) and _same(src, prev):
                got_ids = list(prev["docs"])
                stamp["sha1"] = prev["sha1"]
                got: list[Article] = []
            else:
                try:
                    got, line_skips = read_source(src, max_bytes=settings.max_file_bytes)
                    skipped.extend(line_skips)
                except InputFileError as exc:
                    if prev is None:
                        skipped.append(Skipped(exc.location, exc.reason))
                        continue
                    if not all(d in self.doc_row for d in prev["docs"]):
                        return None
                    got, got_ids = [], list(prev["docs"])
                    skipped.append(Skipped(exc.location, f"{exc.reason} (its previously indexed version is kept)"))
                    stamp = {"size": prev["size"], "mtime_ns": prev["mtime_ns"], "sha1": prev["sha1"]}
                else:
                    stamp["sha1"] = _file_sha1(src.real)
                    got_ids = []
            kept = []
            for doc_id, article in [(i, None) for i in got_ids] + [(a.id, a) for a in got]:
                if doc_id in seen:
                    location = article.location if article is not None else str(src.path)
                    first = seen[doc_id]
                    where = first if isinstance(first, str) else str(first.path)
                    skipped.append(Skipped(location, f"duplicate document id {doc_id!r}, already read from {where}; rename one"))
                    continue
                seen[doc_id] = article.location if article is not None else src  # its path made only if needed
                kept.append(doc_id)
                if article is None:
                    kept_ids.add(doc_id)
                else:
                    read[doc_id] = article
            new_sources[src.rel] = {**stamp, "docs": kept}
        for s in skipped:
            log.warning("skipped %s: %s", s.location, s.reason)

        fresh = [a for i, a in read.items() if self._old_hash(i) != article_hash(a) or i not in self.doc_row]
        removed = [i for i in self.doc_row if i not in kept_ids and i not in read]
        if not fresh and not removed and new_sources == old_sources:
            remove_stale(settings.vectors, self.manifest["generation"])  # what a killed indexer left
            VectorCache(settings.vectors).clear()
            n = int(self.manifest["counts"]["chunks"])
            return IndexSummary(
                vectors=str(settings.vectors),
                articles_unchanged=len(self.doc_row),
                chunks_total=n,
                chunks_reused=n,
                seconds=summary_time(self.started),
                skipped=tuple(skipped),
            )
        return self._write(fresh, removed, new_sources, skipped)

    def _write(
        self, fresh: list[Article], removed: list[str], sources: dict[str, dict[str, Any]], skipped: list[Skipped]
    ) -> IndexSummary | None:
        settings, gen, tables = self.settings, self.gen, self.tables
        lexical = gen.lexical
        vocab_old = set(lexical["vocabulary"])
        vocabulary = vocab_old | corpus_vocabulary(a.title + "\n" + a.text for a in fresh)
        table = TermTable(lexical["terms"])
        fresh_ids = {a.id for a in fresh}
        recount = self._rows_with_new_words(vocabulary - vocab_old, table, fresh_ids | set(removed))
        if recount is None:
            return None
        articles = fresh + [Article.from_dict(gen.documents[self.doc_row[i]]) for i in recount]
        gone_ids = [i for i in [*fresh_ids, *recount, *removed] if i in self.doc_row]
        gone_rows = np.array(sorted(self.doc_row[i] for i in gone_ids), dtype=np.int64)

        # -- chunk rows of the new and re-counted articles; a text embedded before keeps its vid
        rows: list[dict[str, Any]] = []
        inputs: list[str] = []
        lex_inputs: list[str] = []
        for article in articles:
            made = new_rows(article, self.chunking)
            rows.extend(made[0])
            inputs.extend(made[1])
            lex_inputs.extend(made[2])
        chunk_doc = tables["chunk_doc"]
        live = gen.live if gen.live is not None else np.ones(len(chunk_doc), dtype=bool)
        old_rows = np.flatnonzero(np.isin(chunk_doc, gone_rows) & live)
        pool: dict[str, list[int]] = {}
        for r in old_rows.tolist():
            pool.setdefault(gen.chunks[r]["input_hash"], []).append(int(gen.vids[r]))
        input_hashes = [r["input_hash"] for r in rows]
        vids = np.full(len(rows), -1, dtype=np.int64)
        for i, h in enumerate(input_hashes):
            if pool.get(h):
                vids[i] = pool[h].pop(0)
        todo = np.flatnonzero(vids < 0).tolist()
        released = np.array(sorted(v for vs in pool.values() for v in vs), dtype=np.int64)

        n_live = int(live.sum()) - len(old_rows) + len(rows)
        delta_old = gen.delta
        delta_rows_kept = np.flatnonzero(live[gen.base_chunks :] & ~np.isin(chunk_doc[gen.base_chunks :], gone_rows))
        n_delta = len(delta_rows_kept) + len(rows)
        described = self.manifest["vector_store"]
        if (
            n_delta > max(COMPACT_MIN, COMPACT_SHARE * gen.base_chunks)
            or resolve_kind(self.manifest["config"]["index_type"], n_live) != (described["kind"])
        ):
            return None
        if described["kind"] == "ivf" and n_live > 2.0 * max(int(described.get("trained_on", 0)), 1):
            return None

        # -- vectors of the rows no old row covers
        cache = VectorCache(settings.vectors)
        cached_fp, cached = cache.load(settings.model)
        embedder = self.choose(len({input_hashes[i] for i in todo if input_hashes[i] not in cached}))
        if embedder.fingerprint != self.manifest["fingerprint"]:
            return None
        if cached_fp != embedder.fingerprint:
            cached = {}
        embedded = embed_missing(settings, embedder, cache, cached, inputs, input_hashes, todo, self.progress, len(rows) - len(todo))
        next_vid = int(self.manifest["next_vid"])
        vids[todo] = np.arange(next_vid, next_vid + len(todo), dtype=np.int64)
        next_vid += len(todo)
        new_vectors = np.stack([embedded.row_of[input_hashes[i]] for i in todo]).astype(np.float32) if todo else None
        delta_entry = self.manifest.get("delta")
        misfits = int(delta_entry.get("misfits", 0)) if isinstance(delta_entry, dict) else 0
        if described["kind"] == "ivf" and new_vectors is not None:
            # new topics its lists were not trained on: the full writer re-trains (the vectors
            # just embedded are in the cache, so nothing is embedded again)
            store = open_store(
                store_backend(self.manifest), settings.vectors / self.manifest["generation"] / "index.faiss", described, mapped=True
            )
            misfits += store.misfits(new_vectors)
            if not store.can_update(n_live, misfits):
                log.info("%d of the vectors added since the IVF store was trained fit its lists poorly: re-training it", misfits)
                return None

        # -- the delta's vectors: those it held that are still used, and the new ones
        dim = int(self.manifest["dimension"])
        old_ids = delta_old["vector_ids"] if delta_old is not None else np.zeros(0, dtype=np.int64)
        old_vecs = delta_old["vectors"] if delta_old is not None else np.zeros((0, dim), dtype=np.float32)
        keep = ~np.isin(old_ids, released)
        vector_ids = np.concatenate([old_ids[keep], vids[todo]]).astype(np.int64)
        vectors = np.concatenate(
            [old_vecs[keep].reshape(-1, dim), new_vectors.reshape(-1, dim) if new_vectors is not None else np.zeros((0, dim))]
        )
        base_removed = released[~np.isin(released, old_ids)]
        removed_vids = np.concatenate([delta_old["removed_vids"], base_removed]) if delta_old is not None else base_removed
        dead_docs = np.union1d(
            delta_old["dead_docs"] if delta_old is not None else np.zeros(0, dtype=np.int64), gone_rows[gone_rows < gen.base_documents]
        )

        # -- term counts: the delta rows kept, then the new rows
        if self.progress:
            self.progress("tokenising", 0, len(rows))
        # jieba's dictionary takes 1.5-2.5 s to load on the shared cores: only when there is text to count
        tokenizer = Tokenizer(vocabulary) if lex_inputs else None
        counts = count_matrix([tokenizer.tokens(t) for t in lex_inputs] if tokenizer is not None else [], table)
        n_terms = len(table.terms)
        counts.resize((counts.shape[0], n_terms))
        import scipy.sparse as sp

        if delta_old is not None:
            kept_counts = delta_counts(delta_old, len(lexical["terms"]))[delta_rows_kept]
            kept_counts.resize((kept_counts.shape[0], n_terms))
            counts = sp.vstack([kept_counts, counts], format="csr")
        counts = sp.csr_matrix(counts, dtype=np.int32)

        base_n = gen.base_chunks
        kept_delta_chunks = [gen.chunks[base_n + int(i)] for i in delta_rows_kept]
        chunk_rows = kept_delta_chunks + [{**r, "vid": v} for r, v in zip(rows, vids.tolist())]
        gone_doc_set = set(gone_ids)
        delta_docs = [
            gen.documents[gen.base_documents + j]
            for j in range(len(gen.documents) - gen.base_documents)
            if bool(gen.live_docs is None or gen.live_docs[gen.base_documents + j])
            and gen.documents[gen.base_documents + j]["id"] not in gone_doc_set
        ]
        recount_docs = {i: gen.documents[self.doc_row[i]] for i in recount}
        delta_docs += [{**a.to_dict(), "hash": article_hash(a)} for a in fresh] + [recount_docs[i] for i in recount]

        documents = dict(self.manifest["documents"])
        for doc_id in removed:
            documents.pop(doc_id, None)
        for d in delta_docs[len(delta_docs) - len(fresh) - len(recount) :]:
            documents[d["id"]] = {"hash": d["hash"]}
        old_fresh = [a for a in fresh if a.id in self.doc_row]
        manifest = {
            **self.manifest,
            "package": f"sme-qa {__version__}",
            "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "next_vid": next_vid,
            "updated_in_place": True,
            "counts": {"documents": len(documents), "chunks": n_live, "terms": n_terms},
            "sources": sources,
            "documents": documents,
            "vector_store": {**described, "count": n_live},
            "delta": {"chunks": len(chunk_rows), "documents": len(delta_docs), "removed_documents": len(dead_docs), "misfits": misfits},
        }
        arrays = {
            "lex_indptr": counts.indptr.astype(np.int64),
            "lex_indices": counts.indices.astype(np.int32),
            "lex_data": counts.data.astype(np.int32),
            "vector_ids": vector_ids,
            "vectors": vectors.astype(np.float32),
            "removed_vids": removed_vids.astype(np.int64),
            "dead_docs": dead_docs.astype(np.int64),
        }
        new_lexical = {**lexical, "terms": table.terms, "vocabulary": sorted(vocabulary)}
        base = settings.vectors / self.manifest["generation"]
        try:
            write_patch(settings.vectors, manifest, base, chunk_rows, delta_docs, arrays, new_lexical)
        except IndexWriteError as exc:
            if cache.kept:
                raise IndexWriteError(
                    f"{exc}; the {cache.kept} embeddings computed are kept in {cache.dir}/ so the retry does not compute them again"
                ) from None
            raise
        VectorBank(settings.vectors).keep(cache, settings.model, embedder.fingerprint)
        cache.clear()
        log.info("patched: %d chunk rows added, %d removed; the delta holds %d", len(rows), len(old_rows), len(chunk_rows))
        changed = len(old_fresh)
        return IndexSummary(
            vectors=str(settings.vectors),
            articles_added=len(fresh) - changed,
            articles_changed=changed,
            articles_removed=len(removed),
            articles_unchanged=len(documents) - len(fresh),
            chunks_embedded=len(todo) - embedded.from_cache - embedded.from_bank,
            chunks_reused=n_live - len(todo) + embedded.from_cache + embedded.from_bank,
            chunks_removed=len(released),
            chunks_total=n_live,
            seconds=summary_time(self.started),
            written=True,
            skipped=tuple(skipped),
        )

    def _rows_with_new_words(self, words: set[str], table: TermTable, excluded: set[str]) -> list[str] | None:
        """Ids of live articles (not in ``excluded``) whose counted text holds one of ``words``, a
        word added to the tokenizer's dictionary, so that their terms are counted again; None when
        a word has no Han bigram to find it by (the full writer checks every row)."""
        if not words:
            return []
        from . import lexical as _lexical
        from .text import normalize, to_simplified

        gen = self.gen
        assert gen.lengths is not None
        bm25 = BM25.from_segments(gen.postings, gen.lengths, gen.live)
        candidates: set[int] = set()
        for word in words:
            runs = _lexical._HAN_RUN.findall(to_simplified(normalize(word)))
            grams = {"#" + run[i : i + 2] for run in runs for i in range(len(run) - 1)}
            if not grams:
                return None
            if all(g in table.ids for g in grams):
                candidates.update(bm25.rows_with_all([table.ids[g] for g in grams]).tolist())
        hits: list[str] = []
        doc_ids = self.tables["doc_ids"]
        for r in sorted(candidates):
            c = gen.chunks[r]
            doc_id = str(doc_ids[int(self.tables["chunk_doc"][r])])
            if doc_id in excluded or doc_id in hits:
                continue
            text = to_simplified(normalize(lexical_input(c.get("title", ""), c["text"])))
            if any(w in text for w in words):
                hits.append(doc_id)
        return hits


def _same(src: Any, prev: dict[str, Any]) -> bool:
    if prev["size"] != src.size:
        return False
    return bool(prev["mtime_ns"] == src.mtime_ns or _file_sha1(src.real) == prev["sha1"])
