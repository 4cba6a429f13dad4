"""The vector-store interface and its FAISS backend: in-place updates checked against numpy brute
force, the IVF re-training rule, and the indexer's large path (IVF on ~2,000 chunks) under SIGKILL."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from hash_embedder import HashEmbedder
from sme_qa.chunking import ChunkSettings
from sme_qa.faiss_store import RETRAIN_GROWTH, FaissStore
from sme_qa.indexing import build_index
from sme_qa.search import Searcher
from sme_qa.settings import Settings
from sme_qa.store import all_vectors, load_generation, read_manifest
from sme_qa.vector_store import VectorStore, new_store, open_store

TESTS = Path(__file__).resolve().parent
CHUNKING = ChunkSettings(max_chars=120, min_chars=20)
ARTICLES, PARAGRAPHS = 150, 12


def unit(n: int, d: int = 48, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    return ids[np.argsort(-(x @ q), kind="stable")[:k]].tolist()


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_add_remove_in_place_equals_brute_force_and_survives_save(tmp_path, kind):
    x, ids = unit(3000), np.arange(3000, dtype=np.int64) * 7 + 3  # ids that are not row numbers
    store = new_store("faiss", 48, kind, x, ids)
    assert isinstance(store, VectorStore) and store.kind == kind and store.ntotal == 3000
    if kind == "ivf":
        assert store.describe()["nlist"] > 1
        store.index.nprobe = store.index.nlist  # every list: exact, comparable with numpy
    gone = ids[::3]
    store.remove(gone)
    extra, extra_ids = unit(500, seed=1), np.arange(500, dtype=np.int64) + 100_000
    store.add(extra_ids, extra)
    keep = ~np.isin(ids, gone)
    all_x, all_ids = np.vstack([x[keep], extra]), np.concatenate([ids[keep], extra_ids])
    store.save(tmp_path / "index.faiss")
    loaded = open_store("faiss", tmp_path / "index.faiss", store.describe())
    assert loaded.ntotal == len(all_ids) and sorted(loaded.ids().tolist()) == sorted(all_ids.tolist())
    if kind == "ivf":
        loaded.index.nprobe = loaded.index.nlist
        # 8-bit codes: the search scores the decoded vectors, which stay close to the originals
        # (a component outside the range the codes were trained on is clipped to it)
        decoded = loaded.vectors(all_ids)
        assert np.percentile(np.abs(decoded - all_x), 99) <= 5e-3
        all_x = decoded
    for q in unit(5, seed=2):
        _, got = loaded.search(q[None], 10)
        assert got[0].tolist() == brute(all_x, all_ids, q, 10)
        allowed = all_ids[::50]  # a filter applied inside the search
        _, got = loaded.search(q[None], 5, allowed)
        assert got[0].tolist() == brute(all_x[::50], allowed, q, 5)
    error = np.abs(loaded.vectors(extra_ids[:20]) - extra[:20])
    assert (np.percentile(error, 99) <= 5e-3) if kind == "ivf" else error.max() == 0.0  # IVF keeps 8-bit codes
    with pytest.raises(ValueError, match="disagree"):
        loaded.remove(gone[:2])  # already removed: the ids and the store disagree


def test_ivf_is_retrained_only_past_the_growth_factor_and_hnsw_never_updates():
    store = FaissStore.build(48, "ivf", unit(2000), np.arange(2000))
    assert store.can_update(int(2000 * RETRAIN_GROWTH)) and not store.can_update(int(2000 * RETRAIN_GROWTH) + 1)
    assert store.can_update(10)  # shrinking keeps the lists
    hnsw = FaissStore.build(48, "hnsw", unit(200), np.arange(200))
    assert not hnsw.can_update(200)
    with pytest.raises(NotImplementedError):
        hnsw.remove(np.arange(3))
    with pytest.raises(ValueError, match="unknown vector store backend 'milvus'"):
        open_store("milvus", Path("nowhere"))


def clustered(n: int, centres: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, len(centres), n)] + 0.2 * rng.standard_normal((n, centres.shape[1])).astype(np.float32) / 7
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_ivf_is_retrained_when_new_topics_fill_it_not_when_more_of_the_same_does(tmp_path):
    old_topics, new_topics = unit(20, seed=5), unit(20, seed=6)
    store = FaissStore.build(48, "ivf", clustered(3000, old_topics, 1), np.arange(3000))
    assert store.describe()["fit_floor"] > 0 and store.describe()["misfits"] == 0
    same = clustered(1500, old_topics, 2)
    assert store.misfits(same) <= 0.03 * len(same)  # ~1 % by the floor's definition
    fresh = clustered(1500, new_topics, 3)
    misfits = store.misfits(fresh)
    assert misfits >= 0.9 * len(fresh)  # vectors of topics the lists were not trained on
    assert store.can_update(4500, store.misfits(same)) and not store.can_update(4500, misfits)
    store.misfit_count += misfits  # what the indexer records when it adds them anyway
    store.save(tmp_path / "index.faiss")
    mapped = open_store("faiss", tmp_path / "index.faiss", store.describe(), mapped=True)  # as a patch consults it
    assert mapped.misfit_count == misfits and mapped.misfits(fresh[:100]) == store.misfits(fresh[:100])
    assert not mapped.can_update(3100)
    assert FaissStore.build(48, "flat", same, np.arange(1500)).misfits(fresh) == 0  # exact search serves any vector


def test_a_format_1_index_file_is_read_as_a_legacy_store(tmp_path):
    x = unit(300)
    plain = faiss.IndexFlatIP(48)
    plain.add(x)
    faiss.write_index(plain, str(tmp_path / "index.faiss"))
    store = open_store("faiss", tmp_path / "index.faiss")
    assert store.describe()["legacy"] and not store.can_update(300)
    assert store.search(x[7:8], 1)[1][0].tolist() == [7]
    assert np.array_equal(store.vectors(np.array([5, 9])), x[[5, 9]])


# ---------------------------------------------------------------- the indexer's large path


def _paragraph(i: int, j: int) -> str:
    return f"第{i}号企业在第{j}个领域的产品年产量达到了{i * 37 + j}台，该企业的{j}号技术获得了{(i * 7 + j) % 97}项专利授权。"


def _article(i: int, version: int = 0) -> str:
    body = "\n".join(f"<p>{_paragraph(i, j + 100 * version)}</p>" for j in range(PARAGRAPHS))
    return f"---\ntitle: 企业{i}的发展\ndate: 2023-01-{1 + i % 28:02d}\n---\n{body}\n"


def _index(corpus: Path, vectors: Path, embedder: HashEmbedder | None = None):
    return build_index(corpus, vectors, embedder=embedder or HashEmbedder(), index_type="ivf", chunking=CHUNKING)


@pytest.fixture(scope="module")
def ivf_index(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("ivf")
    corpus = base / "corpus"
    corpus.mkdir()
    for i in range(ARTICLES):
        (corpus / f"a{i:03d}.md").write_text(_article(i), encoding="utf-8")
    summary = _index(corpus, base / "vectors")
    assert summary.chunks_total == ARTICLES * PARAGRAPHS
    return corpus, base / "vectors"


@pytest.fixture
def ivf_copy(ivf_index, tmp_path) -> tuple[Path, Path]:
    corpus, vectors = tmp_path / "corpus", tmp_path / "vectors"
    shutil.copytree(ivf_index[0], corpus)
    shutil.copytree(ivf_index[1], vectors)
    return corpus, vectors


def _searcher(vectors: Path) -> Searcher:
    return Searcher(Settings.load(vectors=vectors), embedder=HashEmbedder())


def test_one_article_edited_and_one_deleted_change_only_their_rows(ivf_copy):
    corpus, vectors = ivf_copy
    before = load_generation(vectors)
    assert before.manifest["vector_store"]["nlist"] > 1 and before.manifest["format"] == 3
    (corpus / "a010.md").write_text(_article(10, version=1), encoding="utf-8")
    (corpus / "a020.md").unlink()
    embedder = HashEmbedder()
    summary = _index(corpus, vectors, embedder)
    assert embedder.embedded == PARAGRAPHS and summary.articles_changed == 1 and summary.articles_removed == 1
    after = load_generation(vectors)
    assert after.manifest["updated_in_place"] is True
    assert after.manifest["vector_store"]["trained_on"] == before.manifest["vector_store"]["trained_on"]  # not re-trained
    old_vid = {c["id"]: (c["vid"], c["hash"]) for c in before.chunks}
    new_vectors, old_vectors = all_vectors(after.index), all_vectors(before.index)
    old_row = {c["vid"]: i for i, c in enumerate(before.chunks)}
    for i, c in enumerate(after.chunks):
        if c["doc_id"] == "a010":
            assert c["vid"] >= before.manifest["next_vid"]  # new rows get new ids
        else:  # every other row keeps its id and its vector, bit for bit
            assert (c["vid"], c["hash"]) == old_vid[c["id"]]
            assert np.array_equal(new_vectors[i], old_vectors[old_row[c["vid"]]])
    assert not any(c["doc_id"] == "a020" for c in after.chunks)
    assert sorted(after.store.ids().tolist()) == sorted(c["vid"] for c in after.chunks)
    searcher = _searcher(vectors)
    question = _paragraph(10, 105)
    assert searcher.retrieve(question, 1, mode="dense")[0].chunk_id.startswith("a010:")
    assert searcher.retrieve(question, 1)[0].text == question
    assert all(h.doc_id != "a020" for h in searcher.retrieve(_paragraph(20, 3), 5))


class TopicEmbedder(HashEmbedder):
    """Vectors near one of 8 topic directions (chosen by the text's hash), like the clusters of real
    embeddings; a text about 新领域 lies near one of 8 other directions: a topic the IVF lists never saw."""

    fingerprint = "topic-embedder:1"
    OLD, NEW = unit(8, 32, seed=11), unit(8, 32, seed=12)

    def _vector(self, text: str) -> np.ndarray:
        noise = super()._vector(text)
        centres = self.NEW if "新领域" in text else self.OLD
        x = centres[int(abs(noise[0]) * 1e6) % 8] + 0.2 * noise
        return (x / np.linalg.norm(x)).astype(np.float32)


def test_an_update_of_new_topics_retrains_the_ivf_one_of_the_same_topics_does_not(tmp_path):
    corpus, vectors = tmp_path / "corpus", tmp_path / "vectors"
    corpus.mkdir()
    for i in range(ARTICLES):
        (corpus / f"a{i:03d}.md").write_text(_article(i), encoding="utf-8")
    _index(corpus, vectors, TopicEmbedder())
    trained = read_manifest(vectors)["vector_store"]["trained_on"]
    for i in range(ARTICLES, ARTICLES + 5):  # 60 chunks more of the same topics: patched in place
        (corpus / f"a{i:03d}.md").write_text(_article(i), encoding="utf-8")
    _index(corpus, vectors, TopicEmbedder())
    manifest = read_manifest(vectors)
    assert manifest["updated_in_place"] is True and manifest["vector_store"]["trained_on"] == trained
    assert manifest["delta"]["misfits"] <= 0.1 * 5 * PARAGRAPHS  # ~1 % expected: the floor is the 1st percentile
    # 60 chunks of a new topic, 3.3 % of what it was trained on: re-trained, nothing embedded twice
    for i in range(ARTICLES + 5, ARTICLES + 10):
        (corpus / f"a{i:03d}.md").write_text(_article(i).replace("领域", "新领域"), encoding="utf-8")
    embedder = TopicEmbedder()
    summary = _index(corpus, vectors, embedder)
    manifest = read_manifest(vectors)
    assert embedder.embedded == 5 * PARAGRAPHS and summary.chunks_total == (ARTICLES + 10) * PARAGRAPHS
    assert manifest["updated_in_place"] is False and manifest["vector_store"]["trained_on"] == summary.chunks_total
    assert manifest["vector_store"]["misfits"] == 0 and not manifest.get("delta")
    searcher = Searcher(Settings.load(vectors=vectors), embedder=TopicEmbedder())
    question = _paragraph(ARTICLES + 7, 3).replace("领域", "新领域")
    assert searcher.retrieve(question, 1, mode="dense")[0].text == question


def test_growth_past_the_factor_retrains_and_changing_the_type_embeds_nothing(ivf_copy):
    corpus, vectors = ivf_copy
    trained = read_manifest(vectors)["vector_store"]["trained_on"]
    for i in range(ARTICLES, int(ARTICLES * (RETRAIN_GROWTH + 0.2))):
        (corpus / f"a{i:03d}.md").write_text(_article(i), encoding="utf-8")
    _index(corpus, vectors)
    manifest = read_manifest(vectors)
    assert manifest["updated_in_place"] is False and manifest["vector_store"]["trained_on"] > RETRAIN_GROWTH * trained
    embedder = HashEmbedder()
    summary = build_index(corpus, vectors, embedder=embedder, index_type="flat", chunking=CHUNKING)
    assert summary.written and embedder.embedded == 0 and read_manifest(vectors)["index_type"] == "flat"
    # a damaged vector file: the rebuild takes every vector from the vector bank
    gen = vectors / read_manifest(vectors)["generation"]
    (gen / "index.faiss").write_bytes(b"garbage")
    summary = build_index(corpus, vectors, embedder=embedder, index_type="flat", chunking=CHUNKING)
    assert summary.rebuilt and embedder.embedded == 0 and summary.chunks_reused == summary.chunks_total
    assert list((vectors / "bank").glob("b-*.npy"))


_KILLABLE = """
import os, signal, sys
sys.path.insert(0, sys.argv[4])
import sme_qa.patching as patching
import sme_qa.store as store
from hash_embedder import HashEmbedder
from sme_qa.chunking import ChunkSettings
from sme_qa.indexing import build_index

point = sys.argv[3]
real_write_faiss, real_write_jsonl, real_replace = store.write_faiss, store.write_jsonl, os.replace
if point == "mid-vectors":  # a delta past the compaction share: the whole index is written again
    patching.COMPACT_MIN, patching.COMPACT_SHARE = 0, 0.0
def write_faiss(vstore, path):
    if point == "mid-vectors":
        with open(path, "wb") as fh:
            fh.write(b"IxMp half a file")
            fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    real_write_faiss(vstore, path)
def write_jsonl(path, rows):
    if point == "mid-delta" and path.name == "delta.chunks.jsonl":
        with path.open("w") as fh:
            fh.write('{"half": ')
            fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    real_write_jsonl(path, rows)
def replace(src, dst):
    if point == "before-commit" and str(dst).endswith("manifest.json"):
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
store.write_faiss, store.write_jsonl = write_faiss, write_jsonl
store.os.replace = replace
build_index(sys.argv[1], sys.argv[2], embedder=HashEmbedder(), index_type="ivf", chunking=ChunkSettings(max_chars=120, min_chars=20))
"""


@pytest.mark.parametrize("point", ["mid-delta", "before-commit", "mid-vectors"])
def test_sigkill_during_an_in_place_update_leaves_the_previous_index(ivf_copy, point):
    corpus, vectors = ivf_copy
    (corpus / "a011.md").write_text(_article(11, version=1), encoding="utf-8")
    assert _index(corpus, vectors).written and read_manifest(vectors).get("delta")  # a patch: a delta over the base
    before = read_manifest(vectors)["generation"]
    (corpus / "a010.md").write_text(_article(10, version=1), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", _KILLABLE, str(corpus), str(vectors), point, str(TESTS)], check=False)
    assert proc.returncode == -signal.SIGKILL
    assert read_manifest(vectors)["generation"] == before
    assert _searcher(vectors).retrieve(_paragraph(10, 3), 1)[0].text == _paragraph(10, 3)  # the old text
    embedder = HashEmbedder()
    summary = _index(corpus, vectors, embedder)
    assert summary.written and embedder.embedded == 0  # the killed run's vectors were kept
    assert _searcher(vectors).retrieve(_paragraph(10, 103), 1)[0].text == _paragraph(10, 103)
    assert sorted(p.name for p in vectors.iterdir() if p.name.startswith(("g-", ".manifest"))) == [read_manifest(vectors)["generation"]]


def test_an_index_of_format_1_loads_and_the_next_index_upgrades_it(ivf_copy):
    corpus, vectors = ivf_copy
    manifest = read_manifest(vectors)
    gen = load_generation(vectors)
    gdir = vectors / manifest["generation"]
    # rewrite it as the previous version wrote it: a plain index, row i = vector i, no vids
    plain = faiss.IndexFlatIP(gen.store.dimension)
    plain.add(all_vectors(gen.index))
    faiss.write_index(plain, str(gdir / "index.faiss"))
    import scipy.sparse as sp

    sp.save_npz(gdir / "lexical.npz", gen.tf, compressed=False)  # chunk-major counts, as formats 1 and 2 kept them
    rows = gen.chunks  # with their texts (format 3 stores a chunk row without it)
    (gdir / "chunks.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "vid"}, ensure_ascii=False) + "\n" for r in rows)
    )
    for key in ("vector_store", "next_vid", "updated_in_place", "files"):
        manifest.pop(key)
    manifest.update(format=1, index_type="flat")
    manifest["config"]["index_type"] = "ivf"
    (vectors / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    assert _searcher(vectors).retrieve(_paragraph(3, 4), 1, mode="dense")[0].text == _paragraph(3, 4)
    (corpus / "a010.md").write_text(_article(10, version=1), encoding="utf-8")
    embedder = HashEmbedder()
    _index(corpus, vectors, embedder)
    assert embedder.embedded == PARAGRAPHS
    upgraded = read_manifest(vectors)
    assert upgraded["format"] == 3 and upgraded["index_type"] == "ivf" and upgraded["updated_in_place"] is False
    assert _searcher(vectors).retrieve(_paragraph(10, 104), 1)[0].text == _paragraph(10, 104)


def test_rows_that_may_hold_a_new_word_are_found_by_its_bigrams():
    from sme_qa.indexing import _rows_maybe_containing
    from sme_qa.lexical import TermTable, Tokenizer, count_matrix

    texts = ["海创汇是一个创业平台。", "卡奥斯工业互联网平台。", "海创的汇报会议。", "平台经济"]
    table = TermTable()
    tf = count_matrix([Tokenizer().tokens(t) for t in texts], table)
    # 海创汇's bigrams 海创 and 创汇 both occur only in the first text; the third has 海创 alone
    assert _rows_maybe_containing({"海创汇"}, tf, table).tolist() == [True, False, False, False]
    assert _rows_maybe_containing({"海创汇", "卡奥斯"}, tf, table).tolist() == [True, True, False, False]
    assert not _rows_maybe_containing({"新词汇"}, tf, table).any()  # a bigram no text holds
    assert _rows_maybe_containing({"A股"}, tf, table) is None  # no bigram: every row must be checked
