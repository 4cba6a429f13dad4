"""Writing the on-disk index: a new generation, fsynced, committed by replacing the manifest.

The layout is described in :mod:`sme_qa.generation` (which reads it).  A writer builds a
new generation directory, fsyncs it, then ``os.replace``s ``manifest.json``; older
generations are removed afterwards.  A crash at any moment leaves the previous manifest
pointing at a complete generation; a failed write (full disk, no permission) removes the
partial generation at once.  A patch (``write_patch``) links the previous generation's
base files into the new one (hard links: nothing is copied, and removing the old
generation leaves them) and writes only the delta.  No pickle anywhere.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .errors import IndexLockedError, IndexWriteError
from .generation import (
    DELTA_FILES,
    GENERATION_FILES,
    Generation,
    RowVectors,
    all_vectors,
    chunk_vids,
    load_generation,
    read_jsonl,
    salvage_vectors,
)
from .manifest import FORMAT_VERSION, MANIFEST, READABLE_FORMATS, damaged, manifest_stamp, read_manifest, short, store_backend
from .postings import write_postings
from .tables import ROWS_FILE, row_arrays, without_text
from .vector_store import VectorStore, new_store

__all__ = [
    "DELTA_FILES",
    "FORMAT_VERSION",
    "GENERATION_FILES",
    "MANIFEST",
    "READABLE_FORMATS",
    "Generation",
    "RowVectors",
    "all_vectors",
    "build_faiss",
    "chunk_vids",
    "damaged",
    "index_lock",
    "load_generation",
    "manifest_stamp",
    "read_jsonl",
    "read_manifest",
    "remove_stale",
    "resolve_kind",
    "salvage_vectors",
    "store_backend",
    "write_generation",
    "write_patch",
]

log = logging.getLogger(__name__)

# Above this many vectors ``--index auto`` chooses IVF (updated in place; HNSW cannot
# delete): exact search costs ~16 ms at 100k and ~230 ms at 1M vectors on 2 cores
# (bench/bench_retrieval.py, bench/bench_scale.py).
ANN_THRESHOLD = 200_000
_short = short


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


# ---------------------------------------------------------------- files


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """One compact JSON object a line (UTF-8, no ASCII escapes)."""
    with path.open("wb") as fh:
        for lo in range(0, len(rows), 10_000):
            fh.write(b"".join(orjson.dumps(row) + b"\n" for row in rows[lo : lo + 10_000]))


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

    manifest = {**manifest, "vector_store": store.describe()}
    manifest.pop("delta", None)
    lexical_text = json.dumps(lexical, ensure_ascii=False)

    def write(gdir: Path, at: list[Path]) -> None:
        at[0] = gdir / "index.faiss"
        write_faiss(store, at[0])
        at[0] = gdir / "chunks.jsonl"
        write_jsonl(at[0], [without_text(c) for c in chunks])
        at[0] = gdir / "documents.jsonl"
        write_jsonl(at[0], documents)
        at[0] = gdir / ROWS_FILE
        np.savez(at[0], allow_pickle=False, **row_arrays(chunks, documents, gdir / "chunks.jsonl", gdir / "documents.jsonl"))
        at[0] = gdir / "lexical.indptr.npy"
        write_postings(gdir, sp.csr_matrix(tf))
        at[0] = gdir / "lexical.json"
        at[0].write_text(lexical_text, encoding="utf-8")

    needed = estimate_bytes(store, chunks, documents, tf, len(lexical_text.encode()))
    return _commit(Path(vectors), manifest, needed, write)


def write_patch(
    vectors: Path,
    manifest: dict[str, Any],
    base: Path,
    chunks: list[dict[str, Any]],
    documents: list[dict[str, Any]],
    arrays: dict[str, np.ndarray],
    lexical: dict[str, Any],
) -> dict[str, Any]:
    """Commit a generation made of ``base``'s files (hard links) and a new delta: ``chunks`` and
    ``documents`` (the delta rows) and ``arrays`` (delta.npz less the row arrays, which are made
    here).  Call under index_lock; fails like ``write_generation``."""
    lexical_text = json.dumps(lexical, ensure_ascii=False)

    def write(gdir: Path, at: list[Path]) -> None:
        for name in GENERATION_FILES:
            if name == "lexical.json":
                continue
            at[0] = gdir / name
            try:
                os.link(base / name, at[0])
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
                    raise
                shutil.copyfile(base / name, at[0])  # a file system without hard links
        at[0] = gdir / "delta.chunks.jsonl"
        write_jsonl(at[0], [without_text(c) for c in chunks])
        at[0] = gdir / "delta.documents.jsonl"
        write_jsonl(at[0], documents)
        at[0] = gdir / "delta.npz"
        rows = row_arrays(chunks, documents, gdir / "delta.chunks.jsonl", gdir / "delta.documents.jsonl")
        np.savez(at[0], allow_pickle=False, **rows, **arrays)
        at[0] = gdir / "lexical.json"
        at[0].write_text(lexical_text, encoding="utf-8")

    size = sum(a.nbytes for a in arrays.values()) + len(lexical_text.encode())
    for rows in (chunks, documents):
        size += sum(len(orjson.dumps(r)) + 1 for r in rows[:200]) * len(rows) // max(1, min(len(rows), 200))
    return _commit(Path(vectors), manifest, int(size * 1.1) + 64 * 1024, write, synced=(*DELTA_FILES, "lexical.json"))


def _commit(vectors: Path, manifest: dict[str, Any], needed: int, write: Any, synced: Sequence[str] | None = None) -> dict[str, Any]:
    """Make a generation directory, ``write(gdir, at)`` its files (``at[0]``: the path being
    written, for the error), fsync them (``synced``: only these; linked files are durable
    already), then commit the manifest naming it."""
    name = f"g-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    gdir = vectors / name
    manifest = {"format": FORMAT_VERSION, **manifest, "generation": name}
    needed += len(orjson.dumps(manifest)) + 4096
    with contextlib.suppress(OSError):
        if shutil.disk_usage(vectors).free < needed:
            raise write_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), vectors, gdir, needed)
    tmp = vectors / f".{MANIFEST}.{os.getpid()}.tmp"
    at = [gdir]
    try:
        gdir.mkdir(parents=True)
        write(gdir, at)
        # each file's size, so that a reader notices a truncated or replaced file without reading it
        manifest["files"] = {p.name: p.stat().st_size for p in sorted(gdir.iterdir())}
        manifest_text = orjson.dumps(manifest, option=orjson.OPT_INDENT_2).decode("utf-8")
        for path in sorted(gdir.iterdir()) if synced is None else [gdir / n for n in synced]:
            at[0] = path
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        at[0] = gdir
        _fsync_dir(gdir)
        at[0] = tmp
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(manifest_text)
            fh.flush()
            os.fsync(fh.fileno())
        at[0] = vectors / MANIFEST
        os.replace(tmp, at[0])
    except OSError as exc:
        shutil.rmtree(gdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise write_error(exc, vectors, at[0], needed) from None
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
