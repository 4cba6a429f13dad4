"""The Ray executor on a real local Ray (2 CPUs): same index as the local torch path, and
a stuck cluster is an error, not a hang.  Each Ray start costs ~6 s."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from sme_qa.embedding_ray import RayOptions
from sme_qa.errors import ExecutorError
from sme_qa.store import all_vectors, load_generation, read_manifest

SAMPLE_CORPUS = Path(__file__).resolve().parent.parent / "corpus"


@pytest.fixture
def ray_tmp(tmp_path_factory, monkeypatch):
    """Ray's session files under pytest's tmp dirs (a short path: Ray puts sockets there)."""
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path_factory.mktemp("ray")))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def test_replica_plan_fits_the_cluster() -> None:
    assert RayOptions().plan(2) == (2, 0.875)  # two 1-thread replicas, a sliver left for Ray Data
    assert RayOptions(threads=2).plan(2) == (1, 1.75)
    assert RayOptions(threads=2).plan(16) == (8, 1.969)
    assert RayOptions(concurrency=1, num_cpus=1).plan(2) == (1, 1.0)
    with pytest.raises(ExecutorError, match="do not fit in the 2 CPUs"):
        RayOptions(concurrency=2, num_cpus=1).plan(2)


def test_ray_path_equals_the_local_path(tmp_path, ray_tmp) -> None:
    pytest.importorskip("ray.data", reason="needs the ray extra: pip install 'sme-qa[ray]'")
    from sme_qa.embedding import load_embedder
    from sme_qa.indexing import build_index

    local = build_index(SAMPLE_CORPUS, tmp_path / "local", embedder=load_embedder(purpose="index"))
    seen: list[tuple[str, int, int]] = []
    remote = build_index(
        SAMPLE_CORPUS,
        tmp_path / "ray",
        executor="ray",
        ray_options=RayOptions(local_cpus=2, batch_size=8, timeout=600),
        progress=lambda stage, done, total: seen.append((stage, done, total)),
    )
    assert remote.chunks_embedded == local.chunks_embedded == local.chunks_total > 16  # several batches
    embedded = [s for s in seen if s[0] == "embedding"]
    assert embedded[-1] == ("embedding", local.chunks_total, local.chunks_total)

    a, b = load_generation(tmp_path / "local"), load_generation(tmp_path / "ray")
    assert [c["id"] for c in b.chunks] == [c["id"] for c in a.chunks]
    assert [c["input_hash"] for c in b.chunks] == [c["input_hash"] for c in a.chunks]
    cosine = np.sum(all_vectors(a.index) * all_vectors(b.index), axis=1)
    assert cosine.min() >= 0.9999
    ma, mb = read_manifest(tmp_path / "local"), read_manifest(tmp_path / "ray")
    assert mb["backend"] == "ray/" + ma["backend"]
    for key in ("fingerprint", "dimension", "counts", "config", "documents"):
        assert mb[key] == ma[key], key

    import ray

    assert not ray.is_initialized()  # the local Ray it started is shut down again


def test_a_stuck_cluster_times_out_with_an_error(tmp_path, ray_tmp) -> None:
    ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'sme-qa[ray]'")
    from sme_qa.indexing import build_index

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:

        @ray.remote(num_cpus=2)
        class Hog:  # holds every CPU, so no replica can ever start
            def ready(self) -> bool:
                return True

        hog = Hog.remote()
        ray.get(hog.ready.remote())
        with pytest.raises(ExecutorError, match=r"did not finish within 3 s \(0 of \d+ passages"):
            build_index(SAMPLE_CORPUS, tmp_path / "vectors", executor="ray", ray_options=RayOptions(concurrency=1, num_cpus=0.5, timeout=3))
        assert not (tmp_path / "vectors" / "manifest.json").exists()
    finally:
        ray.shutdown()


def test_without_ray_the_cli_says_how_to_install(tmp_path, monkeypatch, capsys) -> None:
    from sme_qa.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    code = main(["index", "--ray", "--corpus", str(SAMPLE_CORPUS), "--vectors", str(tmp_path / "v")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err == ("sme-qa: the Ray executor needs Ray Data (ray not installed): pip install 'sme-qa[ray]'")
    assert not (tmp_path / "v").exists()
