"""Errors raised by sme-qa.  Every one carries a message a user can act on."""

from __future__ import annotations


class SmeQaError(Exception):
    """Base class: the CLI prints ``str(error)`` as one line and exits non-zero."""


class SettingsError(SmeQaError, ValueError):
    """A setting (option or SME_QA_* variable) has an unusable value."""


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


class ExecutorError(SmeQaError):
    """An embedding executor cannot run: Ray missing, the cluster unreachable or full, the run timed out."""


class IndexMissingError(SmeQaError):
    """No index where one was expected; run `sme-qa index`."""


class IndexMismatchError(SmeQaError):
    """The index on disk was built with another model, dimension or format."""


class IndexDamagedError(IndexMismatchError):
    """A file of the live index is missing, truncated or not what the manifest says; plain
    ``sme-qa index`` rebuilds it."""


class IndexWriteError(SmeQaError):
    """The index could not be written (disk full, no permission, read-only); the old one is intact."""


class IndexLockedError(SmeQaError):
    """Another indexer holds the lock on the vectors directory."""


class QueryError(SmeQaError, ValueError):
    """The question cannot be searched (empty, only whitespace)."""


class LLMError(SmeQaError):
    """The configured LLM endpoint failed or timed out."""
