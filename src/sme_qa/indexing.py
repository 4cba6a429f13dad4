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

from ._version import __version__
from .chunking import ChunkSettings
from .corpus import Skipped, read_source, scan
from .errors import IndexWriteError, InputFileError, SmeQaError
from .index_parts import (
    CACHE_SLICE,
    SMALL_BATCH,
    TITLE_CONTEXT,
    IndexSummary,
    _config,
    _embedder,
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
from .reuse import assemble_tf, previous_generation, reuse_source, rows_maybe_containing, vector_store
from .settings import Settings
from .store import (
    FORMAT_VERSION,
    Generation,
    index_lock,
    remove_stale,
    write_generation,
)
from .vector_cache import VectorBank, VectorCache

if TYPE_CHECKING:
    from collections.abc import Callable

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

_rows_maybe_containing = rows_maybe_containing  # the name the tests know

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")


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
    old = previous_generation(settings, config, rebuild)
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
        got = None if reread else reuse_source(src, prev, old_docs, light=not retokenise)
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
    store, vids, next_vid, in_place = vector_store(old, config["index_type"], embedder.dimension, input_hashes, reuse, row_of)

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

        maybe = rows_maybe_containing(added_words, lex_old.tf, table)
        for i, r in enumerate(lex_reuse):
            if r is not None and (maybe is None or maybe[r]) and any(w in to_simplified(normalize(lex_inputs[i])) for w in added_words):
                lex_reuse[i] = None
    fresh = [i for i, r in enumerate(lex_reuse) if r is None]
    if progress:
        progress("tokenising", 0, len(fresh))
    tf_new = count_matrix([tokenizer.tokens(lex_inputs[i]) for i in fresh], table)
    tf = assemble_tf(lex_old.tf if lex_old is not None else None, lex_reuse, fresh, tf_new, len(table.terms))

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
