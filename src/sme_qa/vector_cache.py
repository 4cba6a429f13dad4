"""Embeddings computed but not yet committed to an index, kept so that a failed write costs no re-embedding.

Layout (plain files, no pickle)::

    vectors/cache/
      model.json          {"model": ..., "fingerprint": ...} of the embedder that made the vectors
      b-000001.npy        float32 rows, one per hash
      b-000001.txt        the input hash of each row, one a line

The indexer adds a batch after each slice it embeds and clears the folder once a
generation is committed (the committed index is then where vectors are reused from).
A batch is written to temporary names and renamed, ``.txt`` last; a batch whose two files
disagree is ignored.  Failing to write the cache never fails indexing: it only means a
retry embeds those chunks again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

__all__ = ["VectorCache"]

log = logging.getLogger(__name__)


class VectorCache:
    """Uncommitted embeddings of one vectors directory, keyed by the hash of the embedded text."""

    def __init__(self, vectors: Path) -> None:
        self.dir = Path(vectors) / "cache"
        self.kept = 0  # vectors written by this indexer run
        self.failed: str | None = None  # why a batch could not be written

    def load(self, model: str) -> tuple[str | None, dict[str, np.ndarray]]:
        """(fingerprint, hash → vector) left by an earlier run for ``model``; empty for another model."""
        try:
            meta = json.loads((self.dir / "model.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None, {}
        if not isinstance(meta, dict) or meta.get("model") != model or not isinstance(meta.get("fingerprint"), str):
            return None, {}
        found: dict[str, np.ndarray] = {}
        for names in sorted(self.dir.glob("b-*.txt")):
            try:
                hashes = names.read_text(encoding="ascii").split()
                rows = np.load(names.with_suffix(".npy"), allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                log.info("ignoring the cached batch %s: %s", names, exc)
                continue
            if rows.dtype != np.float32 or rows.ndim != 2 or len(rows) != len(hashes):
                log.info("ignoring the cached batch %s: %d hashes for rows of shape %s", names, len(hashes), rows.shape)
                continue
            found.update(zip(hashes, rows))
        return meta["fingerprint"], found

    def add(self, model: str, fingerprint: str, hashes: list[str], rows: np.ndarray) -> None:
        """Keep one batch of new vectors; on any write failure keep nothing of it and say why (INFO)."""
        if not hashes or self.failed:
            return
        meta = {"model": model, "fingerprint": fingerprint}
        number = 1 + max((int(p.stem[2:]) for p in self.dir.glob("b-*.txt") if p.stem[2:].isdigit()), default=0)
        base = self.dir / f"b-{number:06d}"
        written: list[Path] = []
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            current = self.dir / "model.json"
            if _read_json(current) != meta:
                self._clear_batches()
                _write(current, json.dumps(meta).encode(), written)
            _write(base.with_suffix(".npy"), _npy(rows), written)
            _write(base.with_suffix(".txt"), ("\n".join(hashes) + "\n").encode("ascii"), written)
        except OSError as exc:
            for path in written:
                with contextlib.suppress(OSError):
                    path.unlink()
            self.failed = f"{exc.strerror or exc} in {self.dir}"
            log.info("could not keep %d new embeddings (%s); a retry embeds them again", len(hashes), self.failed)
            return
        self.kept += len(hashes)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _clear_batches(self) -> None:
        for path in self.dir.glob("b-*"):
            path.unlink(missing_ok=True)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _npy(rows: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(rows, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def _write(path: Path, data: bytes, written: list[Path]) -> None:
    """Write ``path`` whole or not at all (temporary name, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    written.append(tmp)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    written.append(path)
