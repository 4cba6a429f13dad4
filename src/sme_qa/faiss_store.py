"""The FAISS backend of :class:`sme_qa.vector_store.VectorStore`.

Kinds (the manifest's ``index_type``):

* ``flat`` — ``IndexIDMap2(IndexFlatIP)``: exact search; add and remove in place.
* ``ivf`` — ``IndexIVFScalarQuantizer`` (8-bit codes trained per dimension: a quarter of the
  bytes of float32, so the index does not hold a second full copy beside the fp16 vector
  bank; an index written with fp16 codes is read as it is) with a hash-table id map: add
  and remove in place; the coarse quantiser
  is trained once and re-trained only when the store has grown past
  ``RETRAIN_GROWTH`` × the size it was trained at (``can_update``).
* ``hnsw`` — ``IndexIDMap2(IndexHNSWFlat)``: cannot delete, so any update rebuilds it.

An index written by sme-qa's index format 1 (no id map: row i has id i) is read as a
``legacy`` store: searchable, never updated in place (the next update rebuilds it).
All vectors are L2-normalised; the metric is inner product (= cosine).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RETRAIN_GROWTH", "FaissStore", "ivf_lists"]

# An IVF store is re-trained once it holds this many times the vectors it was trained on:
# its lists are then up to this much longer than designed, so a search scans up to this
# much more (recall at a fixed nprobe does not fall while new vectors follow the old
# distribution); bench/bench_ivf_growth.py measures both.
RETRAIN_GROWTH = 2.0
# … or once the vectors added since training that its lists serve poorly (less similar to
# their nearest centroid than all but MISFIT_PERCENTILE % of the training vectors: new topics)
# number more than MISFIT_SHARE of the vectors it was trained on.  bench/bench_ivf_growth.py
# (250,000 trained, 2,000 centres; load 1.8-3): growth drawn like the training vectors keeps
# recall@10 at 0.978-0.985 up to 3×, so the count alone is safe there; growth with half its
# vectors from 500 unseen centres fell to 0.920 at 1.25× and 0.858 at 2×, re-trained 0.97-0.98.
MISFIT_PERCENTILE, MISFIT_SHARE = 1.0, 0.03
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128
# Lists probed per search as a fraction of nlist, at least IVF_MIN_PROBE.  Measured on the
# bench_scale 1M index (2,000 lists, synthetic vectors, load 2.5): recall@10 against exact
# search 1.0 at any nprobe ≥ 8 for queries drawn like the vectors, and for uniformly random
# queries (the hard case) 0.909 at nprobe 63 (1/32), 0.959 at 128 (1/16), 7.5 ms a search.
IVF_PROBE_FRACTION, IVF_MIN_PROBE = 1 / 16, 8
# A filter allowing at most this many ids is searched exactly (on the stored vectors) by the
# approximate kinds, whose probes a narrow filter would leave empty.
EXACT_FILTERED = 50_000
# A search of at most this many queries runs on one OpenMP thread: one query's flat search at
# 100k vectors took 51-69 ms on two threads and 19-21 ms on one (2 shared cores, load 3.4):
# the threads' start and wait cost more than they save on a loaded machine.
FEW_QUERIES = 4
# k-means on at most this many points per list, for this many iterations (training cost).
IVF_TRAIN_POINTS, IVF_TRAIN_ITERATIONS = 40, 10


def _faiss() -> Any:
    import faiss

    return faiss


def ivf_lists(n: int) -> int:
    """nlist for ``n`` vectors: ~2·√n, at least 39 training points per list (FAISS's minimum);
    a small store gets one list, i.e. exact search."""
    return max(1, min(8192, int(2 * math.sqrt(max(n, 1))), n // 39))


def ivf_probes(nlist: int) -> int:
    """Lists probed per search for an IVF store of ``nlist`` lists."""
    return int(min(nlist, max(IVF_MIN_PROBE, math.ceil(nlist * IVF_PROBE_FRACTION))))


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _i64(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.int64)


class FaissStore:
    backend = "faiss"

    def __init__(
        self,
        index: Any,
        kind: str,
        *,
        trained_on: int = 0,
        legacy: bool = False,
        fit_floor: float | None = None,
        misfits: int = 0,
    ) -> None:
        self.index = index
        self.kind = kind
        self.trained_on = trained_on
        self.legacy = legacy
        # IVF: the similarity to its nearest centroid under which a vector is served poorly
        # (None: not known, for a store written before it was recorded), and how many of the
        # vectors added since training fell under it
        self.fit_floor = fit_floor
        self.misfit_count = misfits

    # ------------------------------------------------------------ making

    @classmethod
    def build(cls, dimension: int, kind: str, vectors: np.ndarray, ids: np.ndarray) -> FaissStore:
        faiss = _faiss()
        n = len(vectors)
        if kind == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        elif kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            inner.hnsw.efSearch = HNSW_EF_SEARCH
            index = faiss.IndexIDMap2(inner)
        elif kind == "ivf":
            nlist = ivf_lists(n)
            quantizer = faiss.IndexFlatIP(dimension)
            index = faiss.IndexIVFScalarQuantizer(quantizer, dimension, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            index.own_fields = True
            quantizer.this.disown()
            index.cp.max_points_per_centroid = IVF_TRAIN_POINTS
            index.cp.niter = IVF_TRAIN_ITERATIONS
            index.cp.seed = 1234
            if n:
                index.train(_f32(vectors))
            index.set_direct_map_type(faiss.DirectMap.Hashtable)
            index.nprobe = ivf_probes(nlist)
        else:
            raise ValueError(f"unknown index type {kind!r}: use flat, hnsw, ivf or auto")
        store = cls(index, kind, trained_on=n if kind == "ivf" else 0)
        if kind == "ivf" and n and index.nlist > 1:  # one list is an exact search: nothing fits poorly
            sample = vectors[:: max(1, n // 100_000)]
            store.fit_floor = float(np.percentile(store._fit(sample), MISFIT_PERCENTILE))
        if n:
            store.add(ids, vectors)
        return store

    @classmethod
    def load(cls, path: Path, description: dict[str, Any], *, mapped: bool = False) -> FaissStore:
        """``mapped``: memory-map the file read-only (to consult it, e.g. ``misfits``, not to change it)."""
        faiss = _faiss()
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY) if mapped else faiss.read_index(str(path))
        if isinstance(index, faiss.IndexIDMap):  # IndexIDMap2 is one
            kind = "hnsw" if isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW) else "flat"
            return cls(index, kind)
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = ivf_probes(index.nlist)  # today's tuning, not the one it was written with
            hashed = index.direct_map.type == faiss.DirectMap.Hashtable
            floor = description.get("fit_floor")
            return cls(
                index,
                "ivf",
                trained_on=int(description.get("trained_on", index.ntotal)),
                legacy=not hashed,
                fit_floor=float(floor) if isinstance(floor, (int, float)) else None,
                misfits=int(description.get("misfits", 0)),
            )
        kind = "hnsw" if isinstance(index, faiss.IndexHNSW) else "flat"
        return cls(index, kind, legacy=True)  # format 1: row i is id i

    # ------------------------------------------------------------ reading

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dimension(self) -> int:
        return int(self.index.d)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        k = min(k, self.ntotal)
        if k <= 0 or (allowed is not None and len(allowed) == 0):
            empty = np.empty((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        params = None
        if allowed is not None and self.kind != "flat" and len(allowed) <= EXACT_FILTERED:
            # an approximate index probes only some lists / graph nodes, which a narrow filter may
            # leave empty: score the allowed vectors exactly instead
            allowed = _i64(allowed)
            scores = _f32(queries) @ self.vectors(allowed).T
            top = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, len(allowed))]
            return np.take_along_axis(scores, top, axis=1), allowed[top]
        if allowed is not None:
            selector = faiss.IDSelectorBatch(_i64(allowed))
            if self.kind == "ivf":  # probe more lists the fewer ids may match
                share = len(allowed) / max(self.ntotal, 1)
                nprobe = min(int(self.index.nlist), math.ceil(self.index.nprobe / max(share, 1e-9)))
                params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
            elif self.kind == "hnsw" and not isinstance(self.index, faiss.IndexIDMap):
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=self.index.hnsw.efSearch)
            else:
                params = faiss.SearchParameters(sel=selector)
        threads = faiss.omp_get_max_threads()
        if len(queries) <= FEW_QUERIES and threads > 1:
            faiss.omp_set_num_threads(1)
        try:
            scores, ids = self.index.search(_f32(queries), k, params=params)  # ``selector`` lives until here
        finally:
            faiss.omp_set_num_threads(threads)
        return np.asarray(scores), np.asarray(ids)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        ids = _i64(ids)
        if len(ids) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.legacy and self.kind != "ivf" and np.array_equal(ids, np.arange(len(ids))) and len(ids) == self.ntotal:
            return np.asarray(self.index.reconstruct_n(0, self.ntotal), dtype=np.float32)
        if self.kind == "ivf":
            return np.asarray(self.index.reconstruct_batch(ids), dtype=np.float32)
        return np.stack([self.index.reconstruct(int(i)) for i in ids]).astype(np.float32, copy=False)

    def ids(self) -> np.ndarray:
        faiss = _faiss()
        if self.legacy:
            return np.arange(self.ntotal, dtype=np.int64)
        if isinstance(self.index, faiss.IndexIDMap):
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        lists = self.index.invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy() for i in range(self.index.nlist) if lists.list_size(i)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def describe(self) -> dict[str, Any]:
        faiss = _faiss()
        out: dict[str, Any] = {"backend": self.backend, "kind": self.kind, "count": self.ntotal, "dimension": self.dimension}
        if self.kind == "ivf":
            codes = "fp16" if self.index.sq.qtype == faiss.ScalarQuantizer.QT_fp16 else "sq8"
            out.update(nlist=int(self.index.nlist), nprobe=int(self.index.nprobe), trained_on=self.trained_on, codes=codes)
            if self.fit_floor is not None:
                out.update(fit_floor=round(self.fit_floor, 6), misfits=self.misfit_count)
        if self.legacy:
            out["legacy"] = True
        return out

    # ------------------------------------------------------------ changing

    def can_update(self, n_after: int, misfits: int = 0) -> bool:
        if self.legacy or self.kind == "hnsw":
            return False
        if self.kind == "ivf":
            trained = max(self.trained_on, 1)
            return n_after <= RETRAIN_GROWTH * trained and self.misfit_count + misfits <= MISFIT_SHARE * trained
        return True

    def misfits(self, vectors: np.ndarray) -> int:
        """How many of ``vectors`` an IVF store's lists would serve poorly (0 for the other kinds)."""
        if self.kind != "ivf" or self.fit_floor is None or self.index.nlist <= 1 or not len(vectors):
            return 0
        return int((self._fit(vectors) < self.fit_floor).sum())

    def _fit(self, vectors: np.ndarray) -> np.ndarray:
        """Each vector's inner product with its nearest IVF centroid."""
        scores, _ = self.index.quantizer.search(_f32(vectors), 1)
        return np.asarray(scores[:, 0])

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if self.legacy:
            raise NotImplementedError("an index of format 1 is not updated in place")
        if len(ids):
            self.index.add_with_ids(_f32(vectors), _i64(ids))

    def remove(self, ids: np.ndarray) -> None:
        faiss = _faiss()
        if self.legacy or self.kind == "hnsw":
            raise NotImplementedError(f"a {self.kind} index cannot remove vectors in place")
        if not len(ids):
            return
        # the IVF hash-table id map removes by lookup and takes only an IDSelectorArray
        selector = faiss.IDSelectorArray(_i64(ids)) if self.kind == "ivf" else faiss.IDSelectorBatch(_i64(ids))
        removed = self.index.remove_ids(selector)
        if removed != len(ids):
            raise ValueError(f"removed {removed} of {len(ids)} vectors: the ids and the store disagree")

    def save(self, path: Path) -> None:
        """``faiss.write_index`` through a Python file, so a full disk is an OSError with its errno."""
        faiss = _faiss()
        with open(path, "wb") as fh:
            writer = faiss.PyCallbackIOWriter(fh.write)
            try:
                faiss.write_index(self.index, writer)
            finally:
                del writer
