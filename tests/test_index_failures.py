"""A damaged index, a full disk, no permission, a read-only disk: one line each, nothing lost.

A tiny two-article corpus keeps every rebuild cheap; the real bundled model, FAISS and
jieba do the work.  The tmpfs test needs root (``mount -t tmpfs``) and is skipped where
mounting is impossible; the simulated full disk always runs.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sme_qa import store
from sme_qa.errors import IndexDamagedError, IndexWriteError
from sme_qa.indexing import build_index
from sme_qa.search import load
from sme_qa.store import GENERATION_FILES, load_generation, read_manifest

ROOT = Path(__file__).resolve().parent.parent
ARTICLES = {
    "a.md": "---\ntitle: 蓝海机电获评小巨人\ndate: 2023-02-01\n---\n蓝海机电的伺服电机年产量达到了3100台。\n",
    "b.md": "---\ntitle: 青松传感完成融资\ndate: 2023-03-01\n---\n青松传感近日完成新一轮融资，金额为5200万元。\n",
}
NEW = "---\ntitle: 白杨数控扩产\ndate: 2023-04-01\n---\n白杨数控的新工厂投产后，数控系统年产能达到7400套。\n"
QUESTION = "蓝海机电的伺服电机年产量是多少台？"


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("tiny")
    corpus = base / "corpus"
    corpus.mkdir()
    for name, text in ARTICLES.items():
        (corpus / name).write_text(text, encoding="utf-8")
    build_index(corpus, base / "vectors")
    return corpus, base / "vectors"


@pytest.fixture
def tiny(tiny_index, tmp_path) -> tuple[Path, Path]:
    """A writable copy of the tiny corpus and its index."""
    corpus, vectors = tmp_path / "corpus", tmp_path / "vectors"
    shutil.copytree(tiny_index[0], corpus)
    shutil.copytree(tiny_index[1], vectors)
    return corpus, vectors


def generation(vectors: Path) -> Path:
    return vectors / read_manifest(vectors)["generation"]


def answers(vectors: Path, question: str = QUESTION) -> str:
    return "".join(h.text for h in load(vectors).retrieve(question, 3))


# ---------------------------------------------------------------- damaged files


def _damage_file(gdir: Path, name: str, how: str) -> None:
    path = gdir / name
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00\xffgarbage\n" * 50)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "wrong-shape":  # valid JSON, not what the reader needs
        path.write_text('{"x": 1}\n' if name.endswith(("jsonl", "json")) else "[]", encoding="utf-8")


FILE_CASES = [(name, how) for name in GENERATION_FILES for how in ("missing", "truncated", "garbage", "empty")]
FILE_CASES += [("chunks.jsonl", "wrong-shape"), ("documents.jsonl", "wrong-shape"), ("lexical.json", "wrong-shape")]


def _set_manifest(vectors: Path, change) -> None:
    path = vectors / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(change(manifest), encoding="utf-8")


def _without(key):
    return lambda m: json.dumps({k: v for k, v in m.items() if k != key})


MANIFEST_CASES = {
    "only-format": lambda m: json.dumps({"format": 1}),
    **{f"no-{key}": _without(key) for key in ("generation", "config", "fingerprint", "dimension", "counts", "sources")},
    "generation-escapes": lambda m: json.dumps({**m, "generation": "../../etc"}),
    "bad-source-entry": lambda m: json.dumps({**m, "sources": {"a.md": 5}}),
    "wrong-dimension": lambda m: json.dumps({**m, "dimension": 8}),
    "a-list": lambda m: "[]",
    "truncated": lambda m: json.dumps(m)[:40],
}


def _check_one_line(exc: BaseException, vectors: Path) -> None:
    message = str(exc)
    assert "\n" not in message and "Traceback" not in message
    assert f"the index in {vectors}/ is damaged" in message
    assert f"run `sme-qa index --vectors {vectors}`" in message


def _damage(vectors: Path, case: str) -> str:
    """Apply one damage case; returns the file name the message must mention."""
    if case in MANIFEST_CASES:
        _set_manifest(vectors, MANIFEST_CASES[case])
        return "dimension" if case == "wrong-dimension" else "manifest.json"
    name, how = case.split(":")
    _damage_file(generation(vectors), name, how)
    return name


ALL_CASES = [f"{n}:{h}" for n, h in FILE_CASES] + list(MANIFEST_CASES)
# Rebuilding costs a few seconds (jieba's dictionary loads per index): one case per file, three manifests.
REPAIR_CASES = [
    "index.faiss:truncated",
    "chunks.jsonl:garbage",
    "documents.jsonl:missing",
    "lexical.rows.npy:truncated",
    "lexical.json:wrong-shape",
    "only-format",
    "no-fingerprint",
    "generation-escapes",
]


@pytest.mark.parametrize("case", ALL_CASES)
def test_damaged_index_is_one_line_naming_index_and_command(tiny, case):
    _, vectors = tiny
    named = _damage(vectors, case)
    with pytest.raises(IndexDamagedError) as err:
        load(vectors).state  # noqa: B018 - loading is what fails
    _check_one_line(err.value, vectors)
    assert named in str(err.value)


@pytest.mark.parametrize("case", REPAIR_CASES)
def test_plain_index_repairs_a_damaged_index_saying_so(tiny, case, caplog):
    corpus, vectors = tiny
    _damage(vectors, case)
    summary = build_index(corpus, vectors)  # plain `sme-qa index`
    assert summary.written and summary.rebuilt
    said = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("rebuilding it now"), said
    # nothing is embedded again: the vectors come from the damaged generation when its vectors
    # and chunk table survived, else from the vector bank (vectors/bank/), which keeps them all
    assert summary.chunks_embedded == 0 and summary.chunks_reused == summary.chunks_total
    gen = load_generation(vectors)
    assert {d["id"] for d in gen.documents} == {"a", "b"} and gen.index.ntotal == len(gen.chunks) > 0
    assert sorted(p.name for p in vectors.iterdir() if p.name.startswith("g-")) == [gen.manifest["generation"]]
    assert not (vectors.parent / "etc").exists()


def test_cli_says_damaged_then_plain_index_repairs(tiny):
    corpus, vectors = tiny
    _damage_file(generation(vectors), "lexical.rows.npy", "truncated")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "sme_qa", *args], capture_output=True, text=True, env=env, timeout=300, check=False)

    broken = cli("search", QUESTION, "--vectors", str(vectors))
    assert broken.returncode == 1
    assert broken.stderr.count("\n") == 1 and broken.stderr.startswith(f"sme-qa: the index in {vectors}/ is damaged")
    assert "lexical.rows.npy" in broken.stderr and "Traceback" not in broken.stderr
    fixed = cli("index", "--corpus", str(corpus), "--vectors", str(vectors))
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stderr.count("is damaged") == 1 and "rebuilding it now" in fixed.stderr
    assert "Traceback" not in fixed.stderr and "0 embedded" in fixed.stdout
    assert "3100" in cli("search", QUESTION, "--vectors", str(vectors)).stdout


# ---------------------------------------------------------------- write failures


class CountingEmbedder:
    """The real bundled embedder, counting the passages it is asked to embed."""

    def __init__(self) -> None:
        from sme_qa.indexing import _embedder
        from sme_qa.settings import Settings

        self.real = _embedder(Settings.load(), 1)
        self.fingerprint, self.dimension, self.backend = self.real.fingerprint, self.real.dimension, self.real.backend
        self.embedded = 0

    def embed_passages(self, texts, progress=None):
        self.embedded += len(texts)
        return self.real.embed_passages(texts, progress=progress)


def _leftovers(vectors: Path) -> list[str]:
    return sorted(p.name for p in vectors.iterdir() if p.name.startswith(("g-", ".manifest")))


def test_disk_full_mid_write_is_one_line_and_the_retry_embeds_nothing(tiny, monkeypatch):
    corpus, vectors = tiny
    before = read_manifest(vectors)["generation"]
    (corpus / "c.md").write_text(NEW, encoding="utf-8")
    real_write = store.write_jsonl

    def full_disk(path, rows):
        if path.name.endswith("documents.jsonl"):  # the base table or the delta's
            path.write_text('{"half": ', encoding="utf-8")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, rows)

    monkeypatch.setattr(store, "write_jsonl", full_disk)
    embedder = CountingEmbedder()
    with pytest.raises(IndexWriteError) as err:
        build_index(corpus, vectors, embedder=embedder)
    message = str(err.value)
    assert "\n" not in message and message.startswith("no space left on the disk to write ")
    assert "documents.jsonl" in message and "needs about" in message and "MB free" in message
    assert "the 1 embeddings computed are kept in" in message and "the previous index is untouched" in message
    assert embedder.embedded == 1
    assert _leftovers(vectors) == [before]  # the partial generation is gone at once
    assert read_manifest(vectors)["generation"] == before and "3100" in answers(vectors)
    assert list((vectors / "cache").glob("b-*.npy"))

    monkeypatch.setattr(store, "write_jsonl", real_write)
    retry = CountingEmbedder()
    summary = build_index(corpus, vectors, embedder=retry)
    assert summary.written and retry.embedded == 0 and summary.chunks_embedded == 0
    assert not (vectors / "cache").exists()  # committed: the cache is no longer needed
    assert "7400" in answers(vectors, "白杨数控的数控系统年产能达到多少套？")


def test_too_little_free_space_is_refused_before_writing(tiny, monkeypatch):
    corpus, vectors = tiny
    before = _leftovers(vectors)
    (corpus / "c.md").write_text(NEW, encoding="utf-8")
    usage = shutil.disk_usage(vectors)
    monkeypatch.setattr(store.shutil, "disk_usage", lambda path: usage._replace(free=10_000))
    with pytest.raises(IndexWriteError, match=r"needs about 0\.\d MB, 0\.0 MB free; free some space"):
        build_index(corpus, vectors)
    assert _leftovers(vectors) == before


@pytest.mark.parametrize(("code", "said"), [(errno.EACCES, "permission denied writing "), (errno.EROFS, "read-only file system")])
def test_unwritable_index_is_one_line_with_the_path(tiny, monkeypatch, code, said):
    corpus, vectors = tiny
    before = _leftovers(vectors)
    (corpus / "c.md").write_text(NEW, encoding="utf-8")

    def refuse(path, rows):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(store, "write_jsonl", refuse)  # the update writes a delta (no index.faiss)
    with pytest.raises(IndexWriteError) as err:
        build_index(corpus, vectors)
    assert said in str(err.value) and "delta.chunks.jsonl" in str(err.value) and "\n" not in str(err.value)
    assert _leftovers(vectors) == before


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs at tmp_path/disk (root only); skipped where mounting is impossible."""
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=10, check=False)


def test_real_full_disk_then_read_only_disk(tiny, small_disk):
    corpus, vectors = tiny
    on_disk = small_disk / "vectors"
    shutil.copytree(vectors, on_disk)
    before = read_manifest(on_disk)["generation"]
    (corpus / "c.md").write_text(NEW, encoding="utf-8")
    filler = small_disk / "filler"
    free = shutil.disk_usage(small_disk).free
    filler.write_bytes(b"\0" * (free - 48 * 1024))  # room for the vector cache, not for a generation
    embedder = CountingEmbedder()
    with pytest.raises(IndexWriteError, match="no space left on the disk") as err:
        build_index(corpus, on_disk, embedder=embedder)
    assert "\n" not in str(err.value) and str(on_disk) in str(err.value)
    assert _leftovers(on_disk) == [before] and "3100" in answers(on_disk)
    assert shutil.disk_usage(small_disk).free > 16 * 1024, "a failed write must not leave the disk full"

    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True, timeout=10)
    with pytest.raises(IndexWriteError, match="read-only file system") as err:
        build_index(corpus, on_disk)
    assert "\n" not in str(err.value)
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True, timeout=10)

    filler.unlink()
    retry = CountingEmbedder()
    summary = build_index(corpus, on_disk, embedder=retry)
    assert summary.written and retry.embedded == 0
    assert _leftovers(on_disk) == [read_manifest(on_disk)["generation"]] != [before]
