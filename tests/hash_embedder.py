"""A deterministic stand-in embedder for tests of the vector store at a few thousand chunks.

Each text's vector is a random unit vector seeded by its sha1, so equal texts get equal
vectors and a query equal to a chunk's text finds that chunk first.  It spares the tests
embedding thousands of passages with the real model; everything else (chunking, jieba,
FAISS, the store files) is the real code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


class HashEmbedder:
    model = "test/hash-embedder"
    backend = "sha1-seeded"
    fingerprint = "hash-embedder:1"
    dimension = 32

    def __init__(self) -> None:
        self.embedded = 0

    def _vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dimension).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_passages(self, texts: Sequence[str], *, batch_size: int = 32, progress=None) -> np.ndarray:
        self.embedded += len(texts)
        out = np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)
        if progress is not None:
            progress(len(texts), len(texts))
        return out

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts])
