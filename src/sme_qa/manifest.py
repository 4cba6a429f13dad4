"""The manifest: the commit point of a vectors directory, read with checks.

It names the live generation directory (:mod:`sme_qa.generation`) and records the format,
model, weights fingerprint, settings, counts and the source files' stamps; a missing,
unreadable, too new or incomplete manifest is a typed error that says what to run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from .errors import IndexDamagedError, IndexMismatchError, IndexMissingError

__all__ = ["FORMAT_VERSION", "MANIFEST", "READABLE_FORMATS", "damaged", "manifest_stamp", "read_manifest", "short", "store_backend"]

FORMAT_VERSION = 3
READABLE_FORMATS = (1, 2, 3)
MANIFEST = "manifest.json"
_GENERATION_NAME = re.compile(r"g-[\w-]+")
# What the readers use; a manifest or row without one of these is damaged, not merely old.
_MANIFEST_KEYS: dict[str, type | tuple[type, ...]] = {
    "generation": str,
    "config": dict,
    "fingerprint": str,
    "dimension": int,
    "counts": dict,
    "sources": dict,
}
_SOURCE_KEYS = frozenset({"size", "mtime_ns", "sha1", "docs"})


def valid_generation_name(name: str) -> bool:
    return _GENERATION_NAME.fullmatch(name) is not None


def read_manifest(vectors: Path) -> dict[str, Any]:
    """The manifest of ``vectors``; typed errors say what to run when it is missing or too new."""
    path = Path(vectors) / MANIFEST
    if not path.is_file():
        raise IndexMissingError(f"no index in {vectors}/: run `sme-qa index --vectors {vectors}` to build one")
    try:
        manifest = orjson.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise damaged(vectors, f"{MANIFEST} is unreadable ({short(exc)})") from None
    if not isinstance(manifest, dict):
        raise damaged(vectors, f"{MANIFEST} is not a JSON object")
    version = manifest.get("format")
    if version not in READABLE_FORMATS:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise IndexMismatchError(
            f"{path} has index format {version}, this sme-qa reads formats {', '.join(map(str, READABLE_FORMATS))}: "
            + ("upgrade sme-qa" if newer else f"run `sme-qa index --rebuild --vectors {vectors}`")
        )
    for key, kind in _MANIFEST_KEYS.items():
        if not isinstance(manifest.get(key), kind):
            raise damaged(vectors, f"{MANIFEST} lacks {key!r}" if key not in manifest else f"{MANIFEST} has a bad {key!r}")
    if not valid_generation_name(manifest["generation"]):
        raise damaged(vectors, f"{MANIFEST} names no valid generation ({manifest['generation'][:40]!r})")
    if not isinstance(manifest["config"].get("model"), str):
        raise damaged(vectors, f"{MANIFEST} names no model")
    if not all(isinstance(v, dict) and v.keys() >= _SOURCE_KEYS for v in manifest["sources"].values()):
        raise damaged(vectors, f"{MANIFEST} has source entries without size, time, hash or articles")
    return manifest


def damaged(vectors: Path, what: str) -> IndexDamagedError:
    """The one-line error for a damaged index: which index, what is wrong, what to run."""
    return IndexDamagedError(
        f"the index in {vectors}/ is damaged: {what}; run `sme-qa index --vectors {vectors}` to rebuild it from the corpus"
    )


def short(exc: BaseException) -> str:
    """An exception as a short phrase on one line (faiss messages span a C++ stack)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "…"


def manifest_stamp(vectors: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of the manifest, to notice a rebuild by another process cheaply."""
    try:
        st = (Path(vectors) / MANIFEST).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def store_backend(manifest: dict[str, Any]) -> str:
    described = manifest.get("vector_store")
    return str(described.get("backend", "faiss")) if isinstance(described, dict) else "faiss"
