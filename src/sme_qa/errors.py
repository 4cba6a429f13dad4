"""Errors raised by sme-qa.  Every one carries a message a user can act on."""

from __future__ import annotations


class SmeQaError(Exception):
    """Base class: the CLI prints ``str(error)`` as one line and exits non-zero."""


class CorpusError(SmeQaError):
    """The corpus as a whole cannot be used (missing folder, duplicate ids, nothing loadable)."""


class InputFileError(SmeQaError):
    """One corpus file (or JSONL line) is unusable; loading goes on without it."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason


class ModelError(SmeQaError):
    """The embedding model cannot be loaded; the message says how to get it."""


class IndexMissingError(SmeQaError):
    """No index where one was expected; run `sme-qa index`."""


class IndexMismatchError(SmeQaError):
    """The index on disk was built with another model, dimension or format."""


class IndexLockedError(SmeQaError):
    """Another indexer holds the lock on the vectors directory."""


class QueryError(SmeQaError, ValueError):
    """The question cannot be searched (empty, only whitespace)."""


class LLMError(SmeQaError):
    """The configured LLM endpoint failed or timed out."""
