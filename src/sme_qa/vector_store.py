"""The dense leg's storage behind one small interface, so a second backend is a new file.

A ``VectorStore`` holds L2-normalised vectors under caller-chosen ``int64`` ids (the
indexer gives every chunk row a stable id, ``vid``, kept across updates), answers
inner-product top-k searches optionally restricted to some ids, and is saved to and
loaded from one file of a generation directory.  FAISS (:mod:`sme_qa.faiss_store`) is
the one backend today; the manifest names it (``vector_store.backend``), and
:func:`open_store` / :func:`new_store` pick the class from that name.

To add a backend (Milvus Lite, Qdrant local): write ``<name>_store.py`` with a class that
satisfies this protocol and add it to ``BACKENDS``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["BACKENDS", "VectorStore", "new_store", "open_store"]

# backend name → "module:Class" (imported on use)
BACKENDS = {"faiss": "sme_qa.faiss_store:FaissStore"}


@runtime_checkable
class VectorStore(Protocol):
    """Vectors under int64 ids; inner-product search over L2-normalised rows."""

    backend: str
    kind: str  # "flat", "ivf", "hnsw", …: what the manifest records as index_type
    misfit_count: int  # vectors added since it was trained that ``misfits`` counted (0: exact kinds)

    @property
    def ntotal(self) -> int: ...

    @property
    def dimension(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` (n × d float32, normalised) under ``ids`` (n int64, not yet present)."""

    def remove(self, ids: np.ndarray) -> None:
        """Remove ``ids``; raises ``NotImplementedError`` when this kind cannot (then rebuild)."""

    def can_update(self, n_after: int, misfits: int = 0) -> bool:
        """Whether adding/removing in place serves a store of ``n_after`` vectors, ``misfits`` of the
        added ones poorly (False: rebuild it, e.g. an IVF index grown past its re-training factor or
        fed new topics its lists were not trained on, or an HNSW graph that cannot delete)."""

    def misfits(self, vectors: np.ndarray) -> int:
        """How many of ``vectors`` the store would serve poorly if added (0 for exact kinds)."""

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each ``len(queries)`` × ≤k, best first; ``-1`` ids mean "no more".
        ``allowed``: only these ids may be returned (a filter applied inside the search)."""

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (float32, in the order given)."""

    def ids(self) -> np.ndarray:
        """Every id held, in no particular order."""

    def save(self, path: Path) -> None:
        """Write the store to ``path`` (one file); an ``OSError`` carries the errno of a failed write."""

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the store (backend, kind, sizes, tuning)."""


def _class(backend: str) -> Any:
    try:
        module, name = BACKENDS[backend].split(":")
    except KeyError:
        raise ValueError(f"unknown vector store backend {backend!r}: this sme-qa knows {', '.join(BACKENDS)}") from None
    return getattr(importlib.import_module(module), name)


def new_store(backend: str, dimension: int, kind: str, vectors: np.ndarray, ids: np.ndarray) -> VectorStore:
    """A store of ``kind`` trained on (where it trains) and holding ``vectors`` under ``ids``."""
    store: VectorStore = _class(backend).build(dimension, kind, vectors, ids)
    return store


def open_store(backend: str, path: Path, description: dict[str, Any] | None = None, *, mapped: bool = False) -> VectorStore:
    """The store saved at ``path`` by ``backend`` (``description``: what the manifest recorded);
    ``mapped``: memory-mapped read-only, to consult, not to change."""
    store: VectorStore = _class(backend).load(path, description or {}, mapped=mapped)
    return store
