"""Reading a committed index: the manifest, its generation's files, checked against each other.

Layout of a vectors directory (format 3)::

    vectors/
      manifest.json            the commit point: names the live generation, model, counts, hashes
      g-<stamp>/               one generation, never modified after it is written
        index.faiss            the base vector store (FAISS: flat, IVF or HNSW under chunk ids ``vid``)
        chunks.jsonl           one chunk a line (its ``vid`` names its vector)
        documents.jsonl        one article a line (metadata and clean paragraphs)
        rows.npz               line offsets and per-row ids of both tables (read without parsing them)
        lexical.*.npy          term-major BM25 postings and row lengths (memory-mapped, :mod:`sme_qa.postings`)
        lexical.json           term list, tokenizer vocabulary and BM25 parameters
        delta.chunks.jsonl     } present when the manifest has "delta": the articles added or
        delta.documents.jsonl  } changed since the base files were written, their term counts and
        delta.npz              } vectors, and which base articles and vectors are gone (tombstones)
      .lock                    held (flock) by the one indexer allowed at a time

An update that changes a few articles writes a new generation whose base files are hard
links to the previous generation's (nothing is copied) plus a new delta; once the delta
has grown past ``COMPACT_SHARE`` of the base, the next update writes the whole index again
as a new base (:mod:`sme_qa.patching`).  A reader applies the delta on load.

A reader checks every file of the generation against the manifest and the others; any
missing, truncated or inconsistent file is an ``IndexDamagedError`` naming the index and
the command that rebuilds it.  Indexes of format 1 (row i is vector i) and 2 (chunk-major
counts in ``lexical.npz``) are still read; the next ``sme-qa index`` writes format 3.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .errors import IndexDamagedError
from .manifest import (
    MANIFEST,
    damaged,
    read_manifest,
    short,
    store_backend,
    valid_generation_name,
)
from .postings import POSTINGS_FILES, Postings, read_postings
from .tables import ROWS_FILE, ChunkRows, ConcatRows, LazyRows, attach_texts, read_row_arrays
from .vector_store import VectorStore, open_store

GENERATION_FILES = ("index.faiss", "chunks.jsonl", "documents.jsonl", ROWS_FILE, *POSTINGS_FILES, "lexical.json")
DELTA_FILES = ("delta.chunks.jsonl", "delta.documents.jsonl", "delta.npz")
DELTA_ARRAYS = (
    "chunk_offsets",
    "doc_offsets",
    "vids",
    "chunk_doc",
    "doc_ids",
    "doc_dates",
    "doc_sources",
    "lex_indptr",
    "lex_indices",
    "lex_data",
    "vector_ids",
    "vectors",
    "removed_vids",
    "dead_docs",
)
_FORMAT_2_FILES = ("index.faiss", "chunks.jsonl", "documents.jsonl", ROWS_FILE, "lexical.npz", "lexical.json")
_FORMAT_1_FILES = tuple(f for f in _FORMAT_2_FILES if f != ROWS_FILE)
_CHUNK_KEYS = frozenset({"id", "doc_id", "text", "hash", "input_hash", "lexical_hash", "paragraphs", "start", "end"})
_DOCUMENT_KEYS = frozenset({"id", "title", "paragraphs"})
_LEXICAL_KEYS: dict[str, type | tuple[type, ...]] = {"terms": list, "vocabulary": list, "k1": (int, float), "b": (int, float)}
# Everything reading a damaged file can raise (numpy, scipy, zipfile, faiss and json included).
READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError, EOFError, zipfile.BadZipFile)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    # orjson: a million rows parse in seconds, not tens of seconds
    with path.open("rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]


def generation_files(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The files the manifest's generation must hold."""
    version = manifest.get("format")
    if version == 1:
        return _FORMAT_1_FILES
    if version == 2:
        return _FORMAT_2_FILES
    return GENERATION_FILES + (DELTA_FILES if manifest.get("delta") else ())


class RowVectors:
    """A generation's vectors in chunk-row order (what ``all_vectors`` reads)."""

    def __init__(self, store: VectorStore, vids: np.ndarray) -> None:
        self.store, self.vids = store, vids

    @property
    def ntotal(self) -> int:
        return self.store.ntotal

    @property
    def d(self) -> int:
        return self.store.dimension


def all_vectors(rows: RowVectors | VectorStore) -> np.ndarray:
    """Every stored vector, bit-identical, in chunk-row order (for reuse on re-indexing)."""
    if isinstance(rows, RowVectors):
        return rows.store.vectors(rows.vids)
    return rows.vectors(np.sort(rows.ids()))


@dataclass
class Generation:
    """One committed index.

    Loaded lazily (what a searcher wants), ``chunks``/``documents`` are the base rows then the
    delta's, removed base rows included: ``live`` (per chunk row) and ``live_docs`` (per
    document row) say which count, ``postings``/``lengths`` are the lexical segments.  Loaded
    whole (what the full indexer wants), they are lists of the live rows only, ``tf`` is their
    chunk × term count matrix and ``live`` is None."""

    manifest: dict[str, Any]
    store: VectorStore | None
    chunks: Sequence[dict[str, Any]]
    documents: Sequence[dict[str, Any]]
    tf: Any  # scipy.sparse.csr_matrix, chunks × terms (whole loads)
    lexical: dict[str, Any]
    vids: np.ndarray  # chunk row → its id in the vector store
    tables: dict[str, np.ndarray] | None = None  # per-row arrays over all rows (formats 2 and 3)
    postings: list[Postings] = field(default_factory=list)
    lengths: np.ndarray | None = None
    live: np.ndarray | None = None
    live_docs: np.ndarray | None = None
    delta: dict[str, np.ndarray] | None = None  # delta.npz (format 3 with a delta)
    base_chunks: int = 0  # rows of the base tables
    base_documents: int = 0

    @property
    def index(self) -> RowVectors:
        """The vectors in chunk-row order (``.ntotal``, ``.d``; ``all_vectors`` reads them)."""
        assert self.store is not None, "loaded without its vector store"
        return RowVectors(self.store, self.vids if self.live is None else self.vids[self.live])


def chunk_vids(manifest: dict[str, Any], chunks: Sequence[dict[str, Any]]) -> np.ndarray:
    """Each chunk row's vector id: its ``vid`` (format 2) or its row number (format 1)."""
    if manifest.get("format") == 1:
        return np.arange(len(chunks), dtype=np.int64)
    return np.fromiter((c["vid"] for c in chunks), dtype=np.int64, count=len(chunks))


def read_delta(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in DELTA_ARRAYS}


def delta_counts(delta: dict[str, np.ndarray], n_terms: int) -> Any:
    """The delta rows' chunk × term counts (CSR int32)."""
    import scipy.sparse as sp

    indptr = delta["lex_indptr"]
    return sp.csr_matrix((delta["lex_data"], delta["lex_indices"], indptr), shape=(len(indptr) - 1, n_terms))


def load_generation(vectors: Path, *, lazy: bool = False, with_store: bool = True, manifest: dict[str, Any] | None = None) -> Generation:
    """The committed generation; ``lazy``: tables memory-mapped and parsed row by row, postings
    memory-mapped, removed rows masked (what a searcher wants), else the live rows parsed whole
    with their count matrix (what the full indexer wants).  ``with_store=False`` skips the vector store;
    ``manifest``: the one ``read_manifest`` just returned (at a million chunks it takes ~0.5 s to read)."""
    vectors = Path(vectors)
    manifest = read_manifest(vectors) if manifest is None else manifest  # read once by a caller that needed it first
    gdir = vectors / manifest["generation"]
    current = None
    try:
        recorded = manifest.get("files")
        sizes: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
        for current in generation_files(manifest):
            if not (gdir / current).is_file():
                raise damaged(vectors, f"{gdir.name}/{current} is missing")
            size = (gdir / current).stat().st_size
            if current in sizes and sizes[current] != size:
                raise damaged(vectors, f"{gdir.name}/{current} has {size} bytes, the manifest says {sizes[current]}")
        gen = _read(vectors, gdir, manifest, lazy, with_store)
    except IndexDamagedError:
        raise
    except _Failed as failed:
        raise damaged(vectors, f"{gdir.name}/{failed.name} is unreadable ({short(failed.cause)})") from None
    return gen


class _Failed(Exception):
    def __init__(self, name: str, cause: BaseException) -> None:
        super().__init__(name)
        self.name, self.cause = name, cause


def _read(vectors: Path, gdir: Path, manifest: dict[str, Any], lazy: bool, with_store: bool) -> Generation:
    version = manifest.get("format")
    name = "index.faiss"

    def step(n: str) -> None:
        nonlocal name
        name = n

    try:
        store = None
        if with_store:
            described = manifest.get("vector_store")
            store = open_store(store_backend(manifest), gdir / name, described if isinstance(described, dict) else None)
        tables = None
        if version != 1:
            step(ROWS_FILE)
            tables = read_row_arrays(gdir / name)
        step("lexical.json")
        lexical = json.loads((gdir / name).read_text(encoding="utf-8"))
        if not isinstance(lexical, dict) or not all(isinstance(lexical.get(k), t) for k, t in _LEXICAL_KEYS.items()):
            raise damaged(vectors, f"{gdir.name}: lexical.json lacks the term list, vocabulary or BM25 parameters")
        n_terms = len(lexical["terms"])
        delta = None
        if manifest.get("delta"):
            step("delta.npz")
            delta = read_delta(gdir / name)
        if version == 3:
            step(POSTINGS_FILES[0])
            base_postings, base_lengths = read_postings(gdir, mmap=lazy)
        else:
            import scipy.sparse as sp  # formats 1 and 2 only: a searcher of format 3 never imports scipy

            step("lexical.npz")
            base_postings, base_lengths = None, None
            counts = sp.load_npz(gdir / name).tocsr()
        if tables is not None and lazy:
            step("chunks.jsonl")
            base_chunks: Sequence[dict[str, Any]] = LazyRows(gdir / name, tables["chunk_offsets"])
            step("documents.jsonl")
            base_docs: Sequence[dict[str, Any]] = LazyRows(gdir / name, tables["doc_offsets"])
            base_vids = tables["vids"]
        else:
            step("chunks.jsonl")
            base_chunks = read_jsonl(gdir / name)
            base_vids = chunk_vids(manifest, base_chunks)
            step("documents.jsonl")
            base_docs = read_jsonl(gdir / name)
        if version == 3 and tables is not None:  # chunk rows are stored without their text
            if isinstance(base_chunks, list):
                attach_texts(base_chunks, base_docs, tables["chunk_doc"])
            else:
                base_chunks = ChunkRows(base_chunks, base_docs, tables["chunk_doc"])
        if version != 3:
            if counts.shape[1] != n_terms:
                raise damaged(vectors, f"{gdir.name}: lexical.npz has {counts.shape[1]} terms, lexical.json {n_terms}")
            base_postings = Postings.from_counts(counts)
            base_lengths = np.asarray(counts.sum(axis=1), dtype=np.float32).ravel()
        assert base_postings is not None and base_lengths is not None
        step("chunks.jsonl")
        problem = _table_inconsistency(gdir, tables, base_chunks, base_docs, base_vids) if tables is not None else None
        if problem is None and base_postings.n_terms > n_terms:
            problem = f"the lexical postings have {base_postings.n_terms} terms, lexical.json {n_terms}"
        if problem is None and len(base_lengths) != len(base_chunks):
            problem = f"the lexical postings cover {len(base_lengths)} rows, chunks.jsonl holds {len(base_chunks)}"
        if problem:
            raise damaged(vectors, f"{gdir.name}: {problem}")
        gen = Generation(manifest, store, base_chunks, base_docs, None, lexical, base_vids, tables)
        gen.postings, gen.lengths = [base_postings], base_lengths
        gen.base_chunks, gen.base_documents = len(base_chunks), len(base_docs)
        if delta is not None:
            step("delta.npz")
            _apply_delta(vectors, gdir, gen, delta, n_terms)
        if not lazy:
            step("lexical.json")
            _materialise(gen, n_terms)
        step("index.faiss")
        problem = _inconsistency(manifest, gen, rows=not lazy)
    except (IndexDamagedError, _Failed):
        raise
    except READ_ERRORS as exc:
        raise _Failed(name, exc) from None
    if problem:
        raise damaged(vectors, f"{gdir.name}: {problem}")
    return gen


def _apply_delta(vectors: Path, gdir: Path, gen: Generation, delta: dict[str, np.ndarray], n_terms: int) -> None:
    """Add the delta's rows, postings and vectors to ``gen`` and mask the removed base rows."""
    chunks = read_jsonl(gdir / "delta.chunks.jsonl")
    docs = read_jsonl(gdir / "delta.documents.jsonl")
    nb, nd = gen.base_chunks, gen.base_documents
    indptr, indices, data = delta["lex_indptr"], delta["lex_indices"], delta["lex_data"]
    if len(indptr) != len(chunks) + 1 or int(indptr[-1]) != len(indices) or len(indices) != len(data):
        raise damaged(vectors, f"{gdir.name}: delta.chunks.jsonl and delta.npz disagree")
    if len(indices) and int(indices.max()) >= n_terms:
        raise damaged(vectors, f"{gdir.name}: delta.npz counts terms lexical.json does not hold")
    if len(delta["vids"]) != len(chunks) or len(delta["chunk_doc"]) != len(chunks):
        raise damaged(vectors, f"{gdir.name}: delta.chunks.jsonl and delta.npz disagree")
    if len(docs) != len(delta["doc_ids"]) or (len(chunks) and int(delta["chunk_doc"].max(initial=0)) >= len(docs)):
        raise damaged(vectors, f"{gdir.name}: delta.documents.jsonl and delta.npz disagree")
    if len(delta["dead_docs"]) and not (int(delta["dead_docs"].min()) >= 0 and int(delta["dead_docs"].max()) < nd):
        raise damaged(vectors, f"{gdir.name}: delta.npz removes documents the base does not hold")
    attach_texts(chunks, docs, delta["chunk_doc"])
    live_docs = np.ones(nd + len(docs), dtype=bool)
    live_docs[delta["dead_docs"]] = False
    tables = gen.tables
    assert tables is not None
    base_doc_of = tables["chunk_doc"]
    gen.tables = {
        **{k: np.concatenate([tables[k], delta[k]]) for k in ("vids", "doc_ids", "doc_dates", "doc_sources")},
        "chunk_doc": np.concatenate([base_doc_of, delta["chunk_doc"] + nd]),
    }
    gen.live_docs = live_docs
    gen.live = live_docs[gen.tables["chunk_doc"]]
    gen.vids = gen.tables["vids"]
    gen.chunks = ConcatRows([gen.chunks, chunks])
    gen.documents = ConcatRows([gen.documents, docs])
    gen.postings.append(Postings.from_csr(indptr, indices, data, n_terms, offset=nb))
    assert gen.lengths is not None
    row_sums = np.add.reduceat(np.append(data, 0).astype(np.float32), indptr[:-1]) if len(chunks) else np.zeros(0, np.float32)
    row_sums[np.diff(indptr) == 0] = 0  # reduceat repeats the next value for empty rows
    gen.lengths = np.concatenate([gen.lengths, row_sums.astype(np.float32)])
    gen.delta = delta
    if gen.store is not None:
        gen.store.remove(delta["removed_vids"])
        gen.store.add(delta["vector_ids"], delta["vectors"])
        described = gen.manifest.get("delta")
        gen.store.misfit_count += int(described.get("misfits", 0)) if isinstance(described, dict) else 0


def _materialise(gen: Generation, n_terms: int) -> None:
    """Turn a loaded generation into lists of its live rows with their count matrix."""
    import scipy.sparse as sp

    parts = [seg.to_counts(n_terms) for seg in gen.postings]
    tf = sp.vstack(parts, format="csr") if len(parts) > 1 else parts[0]
    if gen.live is None:
        gen.chunks, gen.documents, gen.tf = list(gen.chunks), list(gen.documents), tf
        return
    rows = np.flatnonzero(gen.live)
    assert gen.live_docs is not None
    gen.chunks = [gen.chunks[int(i)] for i in rows]
    gen.documents = [gen.documents[int(i)] for i in np.flatnonzero(gen.live_docs)]
    gen.tf = tf[rows]
    gen.vids = gen.vids[rows]
    gen.tables, gen.live, gen.live_docs = None, None, None


def _table_inconsistency(
    gdir: Path, tables: dict[str, np.ndarray], chunks: Sequence[dict[str, Any]], documents: Sequence[dict[str, Any]], vids: np.ndarray
) -> str | None:
    """What makes rows.npz disagree with the two tables (sizes, counts, ids), or None."""
    for name, rows, offsets in (("chunks.jsonl", chunks, tables["chunk_offsets"]), ("documents.jsonl", documents, tables["doc_offsets"])):
        if len(offsets) != len(rows) + 1 or int(offsets[-1]) != (gdir / name).stat().st_size:
            return f"{name} and {ROWS_FILE} disagree (size or number of rows)"
    if len(tables["vids"]) != len(chunks) or not np.array_equal(tables["vids"], vids):
        return f"chunks.jsonl and {ROWS_FILE} name different vector ids"
    n_docs = len(documents)
    if len(tables["chunk_doc"]) != len(chunks) or any(len(tables[k]) != n_docs for k in ("doc_ids", "doc_dates", "doc_sources")):
        return f"{ROWS_FILE} has arrays of the wrong length"
    if len(chunks) and not (tables["chunk_doc"].min() >= 0 and tables["chunk_doc"].max() < n_docs):
        return f"{ROWS_FILE} names document rows that documents.jsonl does not hold"
    for rows, keys in ((chunks, _CHUNK_KEYS), (documents, _DOCUMENT_KEYS)):
        for j in {0, len(rows) - 1} if len(rows) else ():  # the first and the last row, parsed
            if not (isinstance(rows[j], dict) and rows[j].keys() >= keys):
                return "chunks.jsonl or documents.jsonl has rows without their fields"
    return None


def _inconsistency(manifest: dict[str, Any], gen: Generation, *, rows: bool = True) -> str | None:
    """What makes the loaded parts unusable together, or None (``rows``: check every table row too)."""
    live = gen.vids if gen.live is None else gen.vids[gen.live]
    store = gen.store
    if store is not None:
        if store.dimension != manifest["dimension"]:
            return f"index.faiss has dimension {store.dimension}, the manifest says {manifest['dimension']}"
        if store.ntotal != len(live):
            return f"index.faiss holds {store.ntotal} vectors, the tables {len(live)} chunks: they disagree"
        if manifest.get("format") != 1 and not np.array_equal(np.sort(live), np.sort(store.ids())):
            return "chunks.jsonl and index.faiss name different vector ids"
    if rows:
        if not all(isinstance(c, dict) and c.keys() >= _CHUNK_KEYS for c in gen.chunks):
            return "chunks.jsonl has rows without the fields of a chunk"
        if not all(isinstance(d, dict) and d.keys() >= _DOCUMENT_KEYS for d in gen.documents):
            return "documents.jsonl has rows without the fields of an article"
        ids = {d["id"] for d in gen.documents}
        if not all(c["doc_id"] in ids for c in gen.chunks):
            return "chunks.jsonl names articles that documents.jsonl does not hold"
    return None


def salvage_vectors(vectors: Path) -> tuple[str, str, dict[str, np.ndarray]] | None:
    """(model, fingerprint, input hash → vector) from a damaged generation whose vectors and chunk
    table still agree, so rebuilding it does not embed those chunks again; None when they do not."""
    try:
        manifest = json.loads((Path(vectors) / MANIFEST).read_text(encoding="utf-8"))
        name, model, fingerprint = manifest["generation"], manifest["config"]["model"], manifest["fingerprint"]
        if not (isinstance(name, str) and valid_generation_name(name) and isinstance(fingerprint, str)):
            return None
        if manifest.get("delta"):
            return None  # the vector bank holds every committed vector; nothing more to save
        store = open_store(store_backend(manifest), Path(vectors) / name / "index.faiss", manifest.get("vector_store"))
        chunks = read_jsonl(Path(vectors) / name / "chunks.jsonl")
        if store.ntotal != len(chunks) or store.dimension != manifest.get("dimension"):
            return None
        rows = store.vectors(chunk_vids(manifest, chunks))
        return model, fingerprint, {c["input_hash"]: v for c, v in zip(chunks, rows)}
    except READ_ERRORS:
        return None
