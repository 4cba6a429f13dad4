"""The on-disk index: a manifest plus plain files, written atomically, read with checks.

Layout of a vectors directory::

    vectors/
      manifest.json          the commit point: names the live generation, model, counts, hashes
      g-<stamp>/             one generation, never modified after it is written
        index.faiss          FAISS inner-product index over L2-normalised vectors
        chunks.jsonl         one chunk a line, in FAISS row order
        documents.jsonl      one article a line (metadata and clean paragraphs)
        lexical.npz          chunk × term counts (CSR) for BM25
        lexical.json         term list, tokenizer vocabulary and BM25 parameters
      .lock                  held (flock) by the one indexer allowed at a time

A writer builds a new generation directory, fsyncs it, then ``os.replace``s
``manifest.json``; older generations are removed afterwards.  A crash at any moment
leaves the previous manifest pointing at a complete generation.  No pickle anywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import IndexLockedError, IndexMismatchError, IndexMissingError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Above this many vectors an HNSW index is chosen automatically: exact search costs
# ~16 ms at 100k and ~230 ms at 1M vectors on 2 cores (see bench/bench_retrieval.py).
HNSW_THRESHOLD = 200_000


def _faiss():
    import faiss

    return faiss


# ---------------------------------------------------------------- vector index


def build_faiss(vectors: np.ndarray, kind: str = "auto"):
    """An inner-product FAISS index over ``vectors`` (rows must be L2-normalised)."""
    faiss = _faiss()
    n, dim = vectors.shape if vectors.ndim == 2 else (0, 0)
    if kind == "auto":
        kind = "hnsw" if n >= HNSW_THRESHOLD else "flat"
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
    elif kind == "ivf":
        nlist = max(1, min(4096, int(4 * np.sqrt(max(n, 1)))))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = max(1, nlist // 16)
        index.make_direct_map()
    else:
        raise ValueError(f"unknown index type {kind!r}: use flat, hnsw, ivf or auto")
    if n:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def index_kind(index) -> str:
    faiss = _faiss()
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVF):
        return "ivf"
    return "flat"


def search_faiss(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, row ids) per query; k clamped to the index size, ``-1`` rows dropped by callers."""
    k = min(k, index.ntotal)
    if k <= 0:
        empty = np.empty((len(queries), 0))
        return empty.astype(np.float32), empty.astype(np.int64)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def all_vectors(index) -> np.ndarray:
    """Every stored vector, bit-identical, in row order (for reuse on re-indexing)."""
    if index.ntotal == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    return index.reconstruct_n(0, index.ntotal)


# ---------------------------------------------------------------- files


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
            fh.write("\n")


def read_manifest(vectors: Path) -> dict[str, Any]:
    """The manifest of ``vectors``; typed errors say what to run when it is missing or too new."""
    path = Path(vectors) / MANIFEST
    if not path.is_file():
        raise IndexMissingError(
            f"no index in {vectors}/: run `sme-qa index --vectors {vectors}` to build one"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexMismatchError(
            f"{path} is unreadable ({exc}): run `sme-qa index --rebuild --vectors {vectors}`"
        ) from exc
    version = manifest.get("format")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise IndexMismatchError(
            f"{path} has index format {version}, this sme-qa reads format {FORMAT_VERSION}: "
            + ("upgrade sme-qa" if newer else f"run `sme-qa index --rebuild --vectors {vectors}`")
        )
    return manifest


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
    index: Any  # faiss.Index
    chunks: list[dict[str, Any]]
    documents: list[dict[str, Any]]
    tf: Any  # scipy.sparse.csr_matrix, chunks × terms
    lexical: dict[str, Any]


def load_generation(vectors: Path) -> Generation:
    import scipy.sparse as sp

    vectors = Path(vectors)
    manifest = read_manifest(vectors)
    gdir = vectors / manifest["generation"]
    try:
        index = _faiss().read_index(str(gdir / "index.faiss"))
        chunks = read_jsonl(gdir / "chunks.jsonl")
        documents = read_jsonl(gdir / "documents.jsonl")
        tf = sp.load_npz(gdir / "lexical.npz").tocsr()
        lexical = json.loads((gdir / "lexical.json").read_text(encoding="utf-8"))
    except (OSError, RuntimeError, ValueError) as exc:
        raise IndexMismatchError(
            f"index files in {gdir} are damaged ({exc}): run `sme-qa index --rebuild --vectors {vectors}`"
        ) from exc
    if index.ntotal != len(chunks) or tf.shape[0] != len(chunks):
        raise IndexMismatchError(
            f"{gdir}: {index.ntotal} vectors, {len(chunks)} chunks and {tf.shape[0]} lexical rows disagree: "
            f"run `sme-qa index --rebuild --vectors {vectors}`"
        )
    return Generation(manifest, index, chunks, documents, tf, lexical)


# ---------------------------------------------------------------- writing


@contextlib.contextmanager
def index_lock(vectors: Path) -> Iterator[None]:
    """Hold the indexer lock; a second indexer gets IndexLockedError at once (no waiting)."""
    vectors = Path(vectors)
    vectors.mkdir(parents=True, exist_ok=True)
    fh = open(vectors / ".lock", "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise IndexLockedError(
                f"{vectors}/ is being indexed by {holder}; wait for it to finish (or stop it) and run again"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        yield
    finally:
        fh.close()  # closing releases the flock; the kernel also does on any death


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_generation(
    vectors: Path,
    manifest: dict[str, Any],
    index,
    chunks: list[dict[str, Any]],
    documents: list[dict[str, Any]],
    tf,
    lexical: dict[str, Any],
) -> dict[str, Any]:
    """Write a complete new generation and commit it by replacing the manifest.  Call under index_lock."""
    import scipy.sparse as sp

    vectors = Path(vectors)
    name = f"g-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    gdir = vectors / name
    gdir.mkdir(parents=True)
    _faiss().write_index(index, str(gdir / "index.faiss"))
    write_jsonl(gdir / "chunks.jsonl", chunks)
    write_jsonl(gdir / "documents.jsonl", documents)
    sp.save_npz(gdir / "lexical.npz", tf.tocsr(), compressed=False)
    (gdir / "lexical.json").write_text(json.dumps(lexical, ensure_ascii=False), encoding="utf-8")
    for f in gdir.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(gdir)

    manifest = {"format": FORMAT_VERSION, "generation": name, **manifest}
    tmp = vectors / f".{MANIFEST}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, ensure_ascii=False, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, vectors / MANIFEST)
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
