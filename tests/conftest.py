"""Shared fixtures.  All state goes to pytest's tmp dirs; the model cache is shared per session.

``sample_index`` builds the real index (bundled model, FAISS, jieba BM25) over the five
sample articles once per test session; tests that modify an index copy it first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_CORPUS = ROOT / "corpus"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """Where the bundled model is materialised: the user's cache unless SME_QA_CACHE points elsewhere."""
    from sme_qa.settings import Settings

    return Settings.load().cache_dir


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, model_cache):
    """No test reads the developer's corpus/, vectors/ or LLM settings by accident."""
    for name in ("SME_QA_CORPUS", "SME_QA_VECTORS", "SME_QA_MODEL", "SME_QA_LLM_BASE_URL",
                 "SME_QA_LLM_MODEL", "SME_QA_LLM_API_KEY", "SME_QA_AUTH", "SME_QA_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SME_QA_CACHE", str(model_cache))


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory) -> Path:
    """A vectors directory built from the five sample articles (read-only for tests)."""
    from sme_qa.indexing import build_index

    vectors = tmp_path_factory.mktemp("sample") / "vectors"
    build_index(SAMPLE_CORPUS, vectors)
    return vectors


@pytest.fixture(scope="session")
def sample_searcher(sample_index):
    from sme_qa.search import load

    return load(sample_index)


@pytest.fixture
def corpus_copy(tmp_path) -> Path:
    """A writable copy of the sample corpus."""
    dest = tmp_path / "corpus"
    shutil.copytree(SAMPLE_CORPUS, dest)
    return dest


@pytest.fixture
def index_copy(sample_index, tmp_path) -> Path:
    """A writable copy of the sample index."""
    dest = tmp_path / "vectors"
    shutil.copytree(sample_index, dest)
    return dest
