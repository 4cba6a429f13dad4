"""sme-qa: cited question answering over Chinese news about 专精特新 SMEs.

Notebook use::

    import sme_qa
    hits = sme_qa.retrieve("我国已培育了多少家专精特新“小巨人”企业？", k=5)
    answer = sme_qa.ask("海创汇首创的是什么创业模式？")
    sme_qa.ask("它已经孵化出多少家上市公司？", history=[
        {"role": "user", "content": "海创汇首创的是什么创业模式？"},
        {"role": "assistant", "content": answer.text}])

Nothing heavy is imported until first use.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    CorpusError,
    ExecutorError,
    IndexLockedError,
    IndexMismatchError,
    IndexMissingError,
    InputFileError,
    LLMError,
    ModelError,
    QueryError,
    SmeQaError,
)
from .records import Answer, Article, Chunk, Citation, Hit, Paragraph
from .settings import Settings

__all__ = [
    "Answer",
    "Article",
    "Chunk",
    "Citation",
    "CorpusError",
    "ExecutorError",
    "Hit",
    "IndexLockedError",
    "IndexMismatchError",
    "IndexMissingError",
    "IndexSummary",
    "InputFileError",
    "LLMError",
    "ModelError",
    "Paragraph",
    "QueryError",
    "RayOptions",
    "Searcher",
    "Settings",
    "SmeQaError",
    "__version__",
    "ask",
    "build_index",
    "hits_dataframe",
    "load",
    "load_corpus",
    "retrieve",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:
    from .corpus import load_corpus
    from .embedding_ray import RayOptions
    from .indexing import IndexSummary, build_index
    from .search import Searcher, load

_LAZY = {
    "Searcher": "search",
    "load": "search",
    "build_index": "indexing",
    "IndexSummary": "indexing",
    "load_corpus": "corpus",
    "RayOptions": "embedding_ray",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'sme_qa' has no attribute {name!r}")


def retrieve(question: str, k: int = 5, **options: Any) -> list[Hit]:
    """The ``k`` best passages for ``question`` from the default index (``vectors/`` or ``$SME_QA_VECTORS``)."""
    from .search import default_searcher

    return default_searcher().retrieve(question, k, **options)


def ask(question: str, *, history: list[dict[str, str]] | None = None, **options: Any) -> Answer:
    """A cited answer from the default index; ``history`` is the conversation so far
    (``[{"role": "user"|"assistant", "content": str}, ...]``), so that follow-ups are understood."""
    from .search import default_searcher

    return default_searcher().ask(question, history=history, **options)


def hits_dataframe(hits: list[Hit]):
    """``hits`` as a pandas DataFrame (needs pandas, which sme-qa does not install)."""
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("hits_dataframe needs pandas: pip install pandas") from exc
    return pd.DataFrame([h.to_dict() for h in hits])
