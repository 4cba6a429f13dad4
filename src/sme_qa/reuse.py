"""What the full index writer takes over from the previous generation: vector ids and
vectors (the store updated in place, or built again from the stored vectors, never
re-embedding), the rows whose term counts a new dictionary word may change, and the
count matrix re-assembled from reused and fresh rows."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from . import lexical as _lexical
from .corpus import SourceFile
from .errors import IndexDamagedError, SmeQaError
from .generation import Generation, load_generation, salvage_vectors
from .index_parts import _content_config, _file_sha1
from .lexical import TermTable
from .manifest import read_manifest
from .records import Article
from .settings import Settings
from .store import resolve_kind
from .vector_cache import VectorBank, VectorCache
from .vector_store import VectorStore, new_store

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = ["assemble_tf", "previous_generation", "reuse_source", "rows_maybe_containing", "vector_store"]

log = logging.getLogger(__name__)


def vector_store(
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
    if old is not None and old_store is not None and old_store.kind == kind and old.manifest.get("format") != 1 and old_store.can_update(n):
        # misfits are counted (a quantizer search of every new vector) only where growth allows in place
        misfits = old_store.misfits(fresh_vectors)
        if old_store.can_update(n, misfits):
            gone = old.vids[np.isin(old.vids, vids[claimed], invert=True)]
            old_store.remove(gone)
            old_store.add(vids[fresh], fresh_vectors)
            old_store.misfit_count += misfits
            log.info("vector store updated in place: %d removed, %d added", len(gone), len(fresh))
            return old_store, vids, next_vid, True
    vectors = np.zeros((n, dimension), dtype=np.float32)
    if old is not None and len(fresh) < n:
        keep = np.flatnonzero(claimed)
        assert old_store is not None
        vectors[keep] = old_store.vectors(vids[keep])
    vectors[fresh] = fresh_vectors
    return new_store("faiss", dimension, kind, vectors, vids), vids, next_vid, False


def rows_maybe_containing(words: set[str], tf: Any, table: TermTable) -> np.ndarray | None:
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


def assemble_tf(old_tf: sp.spmatrix | None, reuse: list[int | None], fresh: list[int], tf_new: sp.spmatrix, n_terms: int) -> sp.csr_matrix:
    """Reused rows of the old count matrix and fresh rows, in chunk order (one fancy-index)."""
    import scipy.sparse as sp

    old_tf = sp.csr_matrix(old_tf if old_tf is not None else (0, n_terms), dtype=np.int32)
    old_tf.resize((old_tf.shape[0], n_terms))
    tf_new = sp.csr_matrix(tf_new, dtype=np.int32)
    tf_new.resize((tf_new.shape[0], n_terms))
    fresh_pos = {i: j for j, i in enumerate(fresh)}
    order = np.array([r if r is not None else old_tf.shape[0] + fresh_pos[i] for i, r in enumerate(reuse)], dtype=np.int64)
    return sp.vstack([old_tf, tf_new], format="csr")[order]


def previous_generation(settings: Settings, config: dict[str, Any], rebuild: bool) -> Generation | None:
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


def reuse_source(
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
