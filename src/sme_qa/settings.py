"""One settings object.  Precedence: explicit argument > ``SME_QA_*`` environment > default."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import SettingsError

DEFAULT_MODEL = "intfloat/multilingual-e5-small"

_ENV = {
    "corpus": "SME_QA_CORPUS",
    "vectors": "SME_QA_VECTORS",
    "model": "SME_QA_MODEL",
    "cache_dir": "SME_QA_CACHE",
    "host": "SME_QA_HOST",
    "port": "SME_QA_PORT",
    "auth": "SME_QA_AUTH",
    "public_url": "SME_QA_PUBLIC_URL",
    "llm_base_url": "SME_QA_LLM_BASE_URL",
    "llm_model": "SME_QA_LLM_MODEL",
    "llm_api_key": "SME_QA_LLM_API_KEY",
    "llm_timeout": "SME_QA_LLM_TIMEOUT",
    "max_file_mb": "SME_QA_MAX_FILE_MB",
}


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sme-qa"


@dataclass(frozen=True)
class Settings:
    corpus: Path = Path("corpus")
    vectors: Path = Path("vectors")
    model: str = DEFAULT_MODEL
    cache_dir: Path = field(default_factory=_default_cache)  # read when a Settings is made, not at import
    host: str = "127.0.0.1"
    port: int = 7860
    auth: str | None = None  # "user:password"
    public_url: str | None = None  # e.g. "https://qa.example.com": absolute links in API answers and copies
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: str | None = None
    llm_timeout: float = 60.0
    max_file_mb: float = 10.0  # per corpus file (per line of a .jsonl file)

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)

    @classmethod
    def load(cls, **overrides: object) -> Settings:
        """Defaults, then the environment, then every override that is not None."""
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(_ENV[f.name]) if f.name in _ENV else None
            if raw not in (None, ""):
                values[f.name] = raw
            if overrides.get(f.name) is not None:
                values[f.name] = overrides[f.name]
        return cls(**{k: _coerce(k, v) for k, v in values.items()})  # type: ignore[arg-type]


def _coerce(name: str, value: object) -> object:
    if name in ("corpus", "vectors", "cache_dir"):
        return Path(os.path.expanduser(str(value)))
    if name == "port":
        return int(str(value))
    if name == "llm_timeout":
        return float(str(value))
    if name == "max_file_mb":
        try:
            mb = float(str(value))
        except ValueError:
            mb = -1.0
        if not mb > 0:
            raise SettingsError(f"max file size {value!r} (--max-file-mb / SME_QA_MAX_FILE_MB) must be a number of MB above 0")
        return mb
    return value
