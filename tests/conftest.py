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
SHARED_EVAL = ROOT.parent / "shared" / "eval"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a test skipped for want of ../shared/eval (the seed questions) fails instead."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if str(SHARED_EVAL) in reason or "shared/eval" in reason:
            report.outcome = "failed"
            report.longrepr = f"CI=true and the seed set is required: {reason}"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """Where the bundled model is materialised: a session temp dir (unpacked at most once per run)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, model_cache):
    """No test reads the developer's corpus/, vectors/ or LLM settings by accident."""
    for name in (
        "SME_QA_CORPUS",
        "SME_QA_VECTORS",
        "SME_QA_MODEL",
        "SME_QA_LLM_BASE_URL",
        "SME_QA_LLM_MODEL",
        "SME_QA_LLM_API_KEY",
        "SME_QA_AUTH",
        "SME_QA_PUBLIC_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SME_QA_CACHE", str(model_cache))


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module; missing, it skips (fails under SME_QA_REQUIRE_BROWSER=1)."""
    from servers import BROWSER_ARGS, CHROMIUM

    if not Path(CHROMIUM).exists():
        if os.environ.get("SME_QA_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing and SME_QA_REQUIRE_BROWSER=1")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); set SME_QA_REQUIRE_BROWSER=1 to fail instead")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory) -> Path:
    """A vectors directory built from the five sample articles (read-only for tests)."""
    from sme_qa.indexing import build_index

    vectors = tmp_path_factory.mktemp("sample") / "vectors"
    build_index(SAMPLE_CORPUS, vectors)
    return vectors


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """Two of the sample articles (21 chunks), for tests that embed a whole corpus again."""
    dest = tmp_path_factory.mktemp("small") / "corpus"
    dest.mkdir()
    for name in ("000_c01459aaca3a05d0.txt", "003_65fb6e7c8d0e95bc.txt"):
        shutil.copy2(SAMPLE_CORPUS / name, dest / name)
    return dest


@pytest.fixture(scope="session")
def small_index(small_corpus) -> Path:
    """The index of ``small_corpus`` (read-only for tests)."""
    from sme_qa.indexing import build_index

    vectors = small_corpus.parent / "vectors"
    build_index(small_corpus, vectors)
    return vectors


@pytest.fixture
def small_copy(small_corpus, small_index, tmp_path) -> tuple[Path, Path]:
    """Writable copies of ``small_corpus`` and its index: (corpus, vectors)."""
    corpus, vectors = tmp_path / "small-corpus", tmp_path / "small-vectors"
    shutil.copytree(small_corpus, corpus)
    shutil.copytree(small_index, vectors)
    return corpus, vectors


@pytest.fixture(scope="session")
def sample_searcher(sample_index):
    from sme_qa.search import load

    return load(sample_index)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 2-layer, 32-d BERT with a WordPiece tokenizer and its own prompts, saved by sentence-transformers.

    A second, real model for tests of what happens when the model changes (loads torch)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "find",
        ":",
        "doc",
        "sme",
        "loan",
        "bank",
        "企",
        "业",
        "专",
        "精",
        "特",
        "新",
        "融",
        "资",
    ]
    tokenizer = Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    root = tmp_path_factory.mktemp("tiny")
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    ).save_pretrained(root / "hf")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64
    )
    BertModel(config).save_pretrained(root / "hf")
    model = SentenceTransformer(
        modules=[Transformer(str(root / "hf")), Pooling(32, "mean")], device="cpu", prompts={"query": "find: ", "document": "doc: "}
    )
    model.save(str(root / "st"))
    return root / "st"


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
