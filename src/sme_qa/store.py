"""The on-disk index: a manifest plus plain files, written atomically, read with checks.

Layout of a vectors directory::

    vectors/
      manifest.json          the commit point: names the live generation, model, counts, hashes
      g-<stamp>/             one generation, never modified after it is written
        index.faiss          the vector store (FAISS: flat, IVF or HNSW under chunk ids ``vid``)
        chunks.jsonl         one chunk a line (its ``vid`` names its vector)
        documents.jsonl      one article a line (metadata and clean paragraphs)
        rows.npz             line offsets and per-row ids of both tables (read without parsing them)
        lexical.npz          chunk × term counts (CSR) for BM25
        lexical.json         term list, tokenizer vocabulary and BM25 parameters
      .lock                  held (flock) by the one indexer allowed at a time

A writer builds a new generation directory, fsyncs it, then ``os.replace``s
``manifest.json``; older generations are removed afterwards.  A crash at any moment
leaves the previous manifest pointing at a complete generation; a failed write (full
disk, no permission) removes the partial generation at once.  No pickle anywhere.

A reader checks every file of the generation against the manifest and the others; any
missing, truncated or inconsistent file is an ``IndexDamagedError`` naming the index and
the command that rebuilds it.

Format 2 (this version) stores vectors under stable chunk ids (``vid``), so an update
adds and removes rows of the vector store in place (:mod:`sme_qa.vector_store`); an
index of format 1 (row i is vector i) is still read, and the next ``sme-qa index``
writes it again as format 2.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .errors import (
    IndexDamagedError,
    IndexLockedError,
    IndexMismatchError,
    IndexMissingError,
    IndexWriteError,
)
from .tables import ROWS_FILE, LazyRows, read_row_arrays, row_arrays
from .vector_store import VectorStore, new_store, open_store

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
MANIFEST = "manifest.json"
# Above this many vectors ``--index auto`` chooses IVF (updated in place; HNSW cannot
# delete): exact search costs ~16 ms at 100k and ~230 ms at 1M vectors on 2 cores
# (bench/bench_retrieval.py, bench/bench_scale.py).
ANN_THRESHOLD = 200_000
GENERATION_FILES = ("index.faiss", "chunks.jsonl", "documents.jsonl", "rows.npz", "lexical.npz", "lexical.json")
_FORMAT_1_FILES = tuple(f for f in GENERATION_FILES if f != ROWS_FILE)
_GENERATION_NAME = re.compile(r"g-[\w-]+")
# What the readers use; a manifest or row without one of these is damaged, not merely old.
_MANIFEST_KEYS: dict[str, type | tuple[type, ...]] = {
    "generation": str,
    "config": dict,
    "fingerprint": str,
    "dimension": int,
    "counts": dict,
    "sources": dict,
}
_CHUNK_KEYS = frozenset({"id", "doc_id", "text", "hash", "input_hash", "lexical_hash", "paragraphs", "start", "end"})
_SOURCE_KEYS = frozenset({"size", "mtime_ns", "sha1", "docs"})
_DOCUMENT_KEYS = frozenset({"id", "title", "paragraphs"})
_LEXICAL_KEYS: dict[str, type | tuple[type, ...]] = {"terms": list, "vocabulary": list, "k1": (int, float), "b": (int, float)}
# Everything reading a damaged file can raise (numpy, scipy, zipfile, faiss and json included).
_READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError, EOFError, zipfile.BadZipFile)


# ---------------------------------------------------------------- vector index


def resolve_kind(kind: str, n: int) -> str:
    """The index type ``kind`` ("auto", "flat", "ivf", "hnsw") means for ``n`` vectors."""
    if kind == "auto":
        return "ivf" if n >= ANN_THRESHOLD else "flat"
    if kind not in ("flat", "ivf", "hnsw"):
        raise ValueError(f"unknown index type {kind!r}: use flat, hnsw, ivf or auto")
    return kind


def build_faiss(vectors: np.ndarray, kind: str = "auto", ids: np.ndarray | None = None) -> VectorStore:
    """A FAISS vector store over ``vectors`` (rows L2-normalised) under ``ids`` (default: row numbers)."""
    n, dim = vectors.shape if vectors.ndim == 2 else (0, 0)
    ids = np.arange(n, dtype=np.int64) if ids is None else ids
    return new_store("faiss", dim, resolve_kind(kind, n), vectors, ids)


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


# ---------------------------------------------------------------- files


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    # orjson: a million rows parse in seconds, not tens of seconds
    with path.open("rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """One compact JSON object a line (UTF-8, no ASCII escapes)."""
    with path.open("wb") as fh:
        for lo in range(0, len(rows), 10_000):
            fh.write(b"".join(orjson.dumps(row) + b"\n" for row in rows[lo : lo + 10_000]))


def read_manifest(vectors: Path) -> dict[str, Any]:
    """The manifest of ``vectors``; typed errors say what to run when it is missing or too new."""
    path = Path(vectors) / MANIFEST
    if not path.is_file():
        raise IndexMissingError(f"no index in {vectors}/: run `sme-qa index --vectors {vectors}` to build one")
    try:
        manifest = orjson.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise damaged(vectors, f"{MANIFEST} is unreadable ({_short(exc)})") from None
    if not isinstance(manifest, dict):
        raise damaged(vectors, f"{MANIFEST} is not a JSON object")
    version = manifest.get("format")
    if version not in READABLE_FORMATS:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise IndexMismatchError(
            f"{path} has index format {version}, this sme-qa reads formats {', '.join(map(str, READABLE_FORMATS))}: "
            + ("upgrade sme-qa" if newer else f"run `sme-qa index --rebuild --vectors {vectors}`")
        )
    for key, kind in _MANIFEST_KEYS.items():
        if not isinstance(manifest.get(key), kind):
            raise damaged(vectors, f"{MANIFEST} lacks {key!r}" if key not in manifest else f"{MANIFEST} has a bad {key!r}")
    if not _GENERATION_NAME.fullmatch(manifest["generation"]):
        raise damaged(vectors, f"{MANIFEST} names no valid generation ({manifest['generation'][:40]!r})")
    if not isinstance(manifest["config"].get("model"), str):
        raise damaged(vectors, f"{MANIFEST} names no model")
    if not all(isinstance(v, dict) and v.keys() >= _SOURCE_KEYS for v in manifest["sources"].values()):
        raise damaged(vectors, f"{MANIFEST} has source entries without size, time, hash or articles")
    return manifest


def damaged(vectors: Path, what: str) -> IndexDamagedError:
    """The one-line error for a damaged index: which index, what is wrong, what to run."""
    return IndexDamagedError(
        f"the index in {vectors}/ is damaged: {what}; run `sme-qa index --vectors {vectors}` to rebuild it from the corpus"
    )


def _short(exc: BaseException) -> str:
    """An exception as a short phrase on one line (faiss messages span a C++ stack)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "…"


def manifest_stamp(vectors: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of the manifest, to notice a rebuild by another process cheaply."""
    try:
        st = (Path(vectors) / MANIFEST).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


@dataclass
class Generation:
    """Everything one committed index holds, loaded into memory."""

    manifest: dict[str, Any]
    store: VectorStore
    chunks: Sequence[dict[str, Any]]  # a list, or LazyRows when loaded lazily
    documents: Sequence[dict[str, Any]]
    tf: Any  # scipy.sparse.csr_matrix, chunks × terms
    lexical: dict[str, Any]
    vids: np.ndarray  # chunk row → its id in the vector store
    tables: dict[str, np.ndarray] | None = None  # rows.npz (format 2)

    @property
    def index(self) -> RowVectors:
        """The vectors in chunk-row order (``.ntotal``, ``.d``; ``all_vectors`` reads them)."""
        return RowVectors(self.store, self.vids)


def store_backend(manifest: dict[str, Any]) -> str:
    described = manifest.get("vector_store")
    return str(described.get("backend", "faiss")) if isinstance(described, dict) else "faiss"


def chunk_vids(manifest: dict[str, Any], chunks: list[dict[str, Any]]) -> np.ndarray:
    """Each chunk row's vector id: its ``vid`` (format 2) or its row number (format 1)."""
    if manifest.get("format") == 1:
        return np.arange(len(chunks), dtype=np.int64)
    return np.fromiter((c["vid"] for c in chunks), dtype=np.int64, count=len(chunks))


def load_generation(vectors: Path, *, lazy: bool = False) -> Generation:
    """The committed generation; ``lazy``: the chunk and document tables are memory-mapped and
    parsed row by row when read (what a searcher wants), not parsed whole (what the indexer wants)."""
    import scipy.sparse as sp

    vectors = Path(vectors)
    manifest = read_manifest(vectors)
    gdir = vectors / manifest["generation"]
    legacy = manifest.get("format") == 1
    current = None
    tables = None
    chunks: Sequence[dict[str, Any]]
    documents: Sequence[dict[str, Any]]
    try:
        for current in _FORMAT_1_FILES if legacy else GENERATION_FILES:
            if not (gdir / current).is_file():
                raise damaged(vectors, f"{gdir.name}/{current} is missing")
        current = "index.faiss"
        described = manifest.get("vector_store")
        store = open_store(store_backend(manifest), gdir / current, described if isinstance(described, dict) else None)
        if not legacy:
            current = ROWS_FILE
            tables = read_row_arrays(gdir / current)
        if tables is not None and lazy:
            current = "chunks.jsonl"
            chunks = LazyRows(gdir / current, tables["chunk_offsets"])
            current = "documents.jsonl"
            documents = LazyRows(gdir / current, tables["doc_offsets"])
            vids = tables["vids"]
        else:
            current = "chunks.jsonl"
            chunks = read_jsonl(gdir / current)
            vids = chunk_vids(manifest, chunks)
            current = "documents.jsonl"
            documents = read_jsonl(gdir / current)
        current = "lexical.npz"
        tf = sp.load_npz(gdir / current).tocsr()
        current = "lexical.json"
        lexical = json.loads((gdir / current).read_text(encoding="utf-8"))
        current = "chunks.jsonl"
        problem = _table_inconsistency(gdir, tables, chunks, documents, vids) if tables is not None else None
        problem = problem or _inconsistency(manifest, store, vids, chunks, documents, tf, lexical, rows=not isinstance(chunks, LazyRows))
    except IndexDamagedError:
        raise
    except _READ_ERRORS as exc:
        raise damaged(vectors, f"{gdir.name}/{current} is unreadable ({_short(exc)})") from None
    if problem:
        raise damaged(vectors, f"{gdir.name}: {problem}")
    return Generation(manifest, store, chunks, documents, tf, lexical, vids, tables)


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


def salvage_vectors(vectors: Path) -> tuple[str, str, dict[str, np.ndarray]] | None:
    """(model, fingerprint, input hash → vector) from a damaged generation whose vectors and chunk
    table still agree, so rebuilding it does not embed those chunks again; None when they do not."""
    try:
        manifest = json.loads((Path(vectors) / MANIFEST).read_text(encoding="utf-8"))
        name, model, fingerprint = manifest["generation"], manifest["config"]["model"], manifest["fingerprint"]
        if not (isinstance(name, str) and _GENERATION_NAME.fullmatch(name) and isinstance(fingerprint, str)):
            return None
        store = open_store(store_backend(manifest), Path(vectors) / name / "index.faiss", manifest.get("vector_store"))
        chunks = read_jsonl(Path(vectors) / name / "chunks.jsonl")
        if store.ntotal != len(chunks) or store.dimension != manifest.get("dimension"):
            return None
        rows = store.vectors(chunk_vids(manifest, chunks))
        return model, fingerprint, {c["input_hash"]: v for c, v in zip(chunks, rows)}
    except _READ_ERRORS:
        return None


def _inconsistency(
    manifest: dict[str, Any],
    store: VectorStore,
    vids: np.ndarray,
    chunks: Sequence[dict[str, Any]],
    documents: Sequence[dict[str, Any]],
    tf: Any,
    lexical: dict[str, Any],
    *,
    rows: bool = True,
) -> str | None:
    """What makes the loaded files unusable together, or None (``rows``: check every table row too)."""
    if store.dimension != manifest["dimension"]:
        return f"index.faiss has dimension {store.dimension}, the manifest says {manifest['dimension']}"
    if store.ntotal != len(chunks) or tf.shape[0] != len(chunks):
        return (
            f"index.faiss holds {store.ntotal} vectors, chunks.jsonl {len(chunks)} chunks and lexical.npz {tf.shape[0]} rows: they disagree"
        )
    if manifest.get("format") != 1 and not np.array_equal(np.sort(vids), np.sort(store.ids())):
        return "chunks.jsonl and index.faiss name different vector ids"
    if rows:
        if not all(isinstance(c, dict) and c.keys() >= _CHUNK_KEYS for c in chunks):
            return "chunks.jsonl has rows without the fields of a chunk"
        if not all(isinstance(d, dict) and d.keys() >= _DOCUMENT_KEYS for d in documents):
            return "documents.jsonl has rows without the fields of an article"
        ids = {d["id"] for d in documents}
        if not all(c["doc_id"] in ids for c in chunks):
            return "chunks.jsonl names articles that documents.jsonl does not hold"
    if not isinstance(lexical, dict) or not all(isinstance(lexical.get(k), t) for k, t in _LEXICAL_KEYS.items()):
        return "lexical.json lacks the term list, vocabulary or BM25 parameters"
    if tf.shape[1] != len(lexical["terms"]):
        return f"lexical.npz has {tf.shape[1]} terms, lexical.json {len(lexical['terms'])}"
    return None


# ---------------------------------------------------------------- writing


@contextlib.contextmanager
def index_lock(vectors: Path) -> Iterator[None]:
    """Hold the indexer lock; a second indexer gets IndexLockedError at once (no waiting)."""
    vectors = Path(vectors)
    try:
        vectors.mkdir(parents=True, exist_ok=True)
        fh = open(vectors / ".lock", "a+")  # noqa: SIM115 - held for the lock's lifetime, closed below
    except OSError as exc:
        raise write_error(exc, vectors, exc.filename or vectors) from None
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise IndexLockedError(f"{vectors}/ is being indexed by {holder}; wait for it to finish (or stop it) and run again") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()}")
            fh.flush()
        except OSError as exc:
            raise write_error(exc, vectors, vectors / ".lock") from None
        yield
    finally:
        fh.close()  # closing releases the flock; the kernel also does on any death


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def write_error(exc: OSError, vectors: Path, path: Path | str, needed: int | None = None) -> IndexWriteError:
    """One line for a failed index write: the path, why, what to do (and the space needed on a full disk)."""
    again = "and run `sme-qa index` again; the previous index is untouched"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f", {_mb(shutil.disk_usage(vectors).free)} free"
        except OSError:
            free = ""
        need = f": the new index needs about {_mb(needed)}{free}" if needed else ""
        return IndexWriteError(f"no space left on the disk to write {path}{need}; free some space (or point --vectors elsewhere) {again}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return IndexWriteError(f"permission denied writing {path}: make {vectors}/ writable (or point --vectors elsewhere) {again}")
    if exc.errno == errno.EROFS:
        return IndexWriteError(f"cannot write {path}: read-only file system; point --vectors at a writable folder {again}")
    return IndexWriteError(f"cannot write {path}: {exc.strerror or _short(exc)}; {again}")


def estimate_bytes(store: VectorStore, chunks: list[dict[str, Any]], documents: list[dict[str, Any]], tf: Any, extra: int = 0) -> int:
    """About how many bytes a generation of these parts takes on disk (a little more than it does)."""
    n, d = store.ntotal, store.dimension
    kind = store.kind
    size = 8 * n + (n * (4 * d + 2 * 32 * 4 + 32) if kind == "hnsw" else n * 2 * d + 8 * n if kind == "ivf" else 4 * n * d)
    for rows in (chunks, documents):
        sample = rows[:: max(1, len(rows) // 500)]
        if sample:
            per_row = sum(len(json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode()) + 1 for r in sample)
            size += per_row * len(rows) // len(sample)
    size += tf.data.nbytes + tf.indices.nbytes + tf.indptr.nbytes
    size += 32 * len(chunks) + 200 * len(documents)  # rows.npz
    return int((size + extra) * 1.02) + 64 * 1024  # headers, zip directories, file-system blocks


def write_faiss(store: VectorStore, path: Path) -> None:
    """Write the vector store's file (a failed write is an OSError with its errno)."""
    store.save(path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_generation(
    vectors: Path,
    manifest: dict[str, Any],
    store: VectorStore,
    chunks: list[dict[str, Any]],
    documents: list[dict[str, Any]],
    tf: Any,
    lexical: dict[str, Any],
) -> dict[str, Any]:
    """Write a complete new generation and commit it by replacing the manifest.  Call under index_lock.

    Raises ``IndexWriteError`` (one line: path, cause, space needed) when the disk is full or
    not writable; whatever was written of the new generation is removed at once and the
    previous manifest and generation stay as they were.  A disk that cannot hold the
    estimated size is refused before anything is written.
    """
    import scipy.sparse as sp

    vectors = Path(vectors)
    name = f"g-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    gdir = vectors / name
    manifest = {"format": FORMAT_VERSION, "generation": name, **manifest, "vector_store": store.describe()}
    manifest_text = orjson.dumps(manifest, option=orjson.OPT_INDENT_2).decode("utf-8")
    lexical_text = json.dumps(lexical, ensure_ascii=False)
    needed = estimate_bytes(store, chunks, documents, tf, len(manifest_text.encode()) + len(lexical_text.encode()))
    with contextlib.suppress(OSError):
        if shutil.disk_usage(vectors).free < needed:
            raise write_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), vectors, gdir, needed)
    tmp = vectors / f".{MANIFEST}.{os.getpid()}.tmp"
    path: Path = gdir
    try:
        gdir.mkdir(parents=True)
        path = gdir / "index.faiss"
        write_faiss(store, path)
        path = gdir / "chunks.jsonl"
        write_jsonl(path, chunks)
        path = gdir / "documents.jsonl"
        write_jsonl(path, documents)
        path = gdir / ROWS_FILE
        np.savez(path, allow_pickle=False, **row_arrays(chunks, documents, gdir / "chunks.jsonl", gdir / "documents.jsonl"))
        path = gdir / "lexical.npz"
        sp.save_npz(path, tf.tocsr(), compressed=False)
        path = gdir / "lexical.json"
        path.write_text(lexical_text, encoding="utf-8")
        for path in sorted(gdir.iterdir()):
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        path = gdir
        _fsync_dir(gdir)
        path = tmp
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(manifest_text)
            fh.flush()
            os.fsync(fh.fileno())
        path = vectors / MANIFEST
        os.replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(gdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise write_error(exc, vectors, path, needed) from None
    with contextlib.suppress(OSError):  # committed: a failing directory fsync cannot undo that
        _fsync_dir(vectors)
    remove_stale(vectors, keep=name)
    return manifest


def remove_stale(vectors: Path, keep: str | None) -> None:
    """Remove generations and temp files other than ``keep`` (left by crashes or superseded)."""
    for entry in Path(vectors).iterdir():
        if entry.name.startswith("g-") and entry.name != keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(f".{MANIFEST}.") and entry.name.endswith(".tmp"):
            entry.unlink(missing_ok=True)
