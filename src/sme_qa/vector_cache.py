"""Embeddings kept by the hash of the text they embed, outside any index generation.

Two folders of the same plain layout (no pickle)::

    vectors/cache/          computed, not yet committed (float32, bit-exact)
    vectors/bank/           every committed vector (float16, memory-mapped on read)
      model.json            {"model": ..., "fingerprint": ...} of the embedder that made the vectors
      b-000001.npy          rows, one per hash
      b-000001.txt          the input hash of each row, one a line

The indexer adds a cache batch after each slice it embeds; once a generation is
committed the cache's batches move into the bank (as float16) and the cache folder
goes.  The bank is what lets a rebuild of any kind (another ``--index`` type, a damaged
``index.faiss``, new chunker settings) take every unchanged text's vector instead of
embedding it again; it is compacted when most of it is no longer used.  A batch is
written to temporary names and renamed, ``.txt`` last; a batch whose two files
disagree is ignored.  Failing to write either never fails indexing: it only means a
later run embeds those chunks again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["VectorBank", "VectorCache"]

log = logging.getLogger(__name__)


class VectorCache:
    """Uncommitted embeddings of one vectors directory, keyed by the hash of the embedded text."""

    folder, dtype = "cache", np.float32

    def __init__(self, vectors: Path) -> None:
        self.dir = Path(vectors) / self.folder
        self.kept = 0  # vectors written by this indexer run
        self.failed: str | None = None  # why a batch could not be written

    def fingerprint(self, model: str) -> str | None:
        """The fingerprint of the weights that made the kept vectors, if they are ``model``'s."""
        meta = _read_json(self.dir / "model.json")
        if not isinstance(meta, dict) or meta.get("model") != model or not isinstance(meta.get("fingerprint"), str):
            return None
        return str(meta["fingerprint"])

    def batches(self, mmap: bool = False) -> Iterator[tuple[list[str], np.ndarray]]:
        """(hashes, rows) of each readable batch, oldest first."""
        for names in sorted(self.dir.glob("b-*.txt")):
            try:
                hashes = names.read_text(encoding="ascii").split()
                rows = np.load(names.with_suffix(".npy"), allow_pickle=False, mmap_mode="r" if mmap else None)
            except (OSError, ValueError, EOFError) as exc:
                log.info("ignoring the kept batch %s: %s", names, exc)
                continue
            if rows.dtype != self.dtype or rows.ndim != 2 or len(rows) != len(hashes):
                log.info("ignoring the kept batch %s: %d hashes for rows of shape %s", names, len(hashes), rows.shape)
                continue
            yield hashes, rows

    def load(self, model: str) -> tuple[str | None, dict[str, np.ndarray]]:
        """(fingerprint, hash → vector) left by an earlier run for ``model``; empty for another model."""
        fingerprint = self.fingerprint(model)
        if fingerprint is None:
            return None, {}
        found: dict[str, np.ndarray] = {}
        for hashes, rows in self.batches():
            found.update(zip(hashes, rows))
        return fingerprint, found

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
            _write(base.with_suffix(".npy"), _npy(rows, self.dtype), written)
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


class VectorBank(VectorCache):
    """Every committed vector by input hash (float16), for rebuilds that must not re-embed."""

    folder, dtype = "bank", np.float16
    # compact when fewer than this share of the kept rows are still used, or past this many batches
    LIVE_SHARE, MAX_BATCHES = 0.5, 64
    BATCH_ROWS = 262_144

    def lookup(self, model: str, fingerprint: str, wanted: set[str]) -> dict[str, np.ndarray]:
        """hash → float32 vector for those of ``wanted`` the bank holds (read memory-mapped)."""
        if not wanted or self.fingerprint(model) != fingerprint:
            return {}
        found: dict[str, np.ndarray] = {}
        for hashes, rows in self.batches(mmap=True):
            hit = [(i, h) for i, h in enumerate(hashes) if h in wanted and h not in found]
            if hit:
                picked = np.asarray(rows[[i for i, _ in hit]], dtype=np.float32)
                found.update(zip((h for _, h in hit), picked))
        return found

    def absorb(self, cache: VectorCache, model: str, fingerprint: str, live: set[str]) -> None:
        """Move the cache's vectors in (for ``live`` hashes), then compact if most are dead."""
        if self.fingerprint(model) != fingerprint:
            self.clear()
        new: dict[str, np.ndarray] = {}
        if cache.fingerprint(model) == fingerprint:
            for hashes, rows in cache.batches(mmap=True):
                new.update((h, r) for h, r in zip(hashes, rows) if h in live)
        kept = 0
        names = sorted(self.dir.glob("b-*.txt"))
        for path in names:
            with contextlib.suppress(OSError):
                kept += path.read_text(encoding="ascii").count("\n")
        items = list(new.items())
        for lo in range(0, len(items), self.BATCH_ROWS):
            part = items[lo : lo + self.BATCH_ROWS]
            self.add(model, fingerprint, [h for h, _ in part], np.stack([r for _, r in part]))
        if len(names) + 1 > self.MAX_BATCHES or (kept and len(live) < self.LIVE_SHARE * (kept + len(new))):
            self.compact(model, fingerprint, live)

    def keep(self, cache: VectorCache, model: str, fingerprint: str) -> None:
        """Move the cache's vectors in as they are (a patch: the bank is compacted by the next full write)."""
        if self.fingerprint(model) != fingerprint:
            self.clear()
        if cache.fingerprint(model) == fingerprint:
            for hashes, rows in cache.batches():
                self.add(model, fingerprint, hashes, rows)

    def compact(self, model: str, fingerprint: str, live: set[str]) -> None:
        """Rewrite the bank holding only ``live`` hashes (new batches first, then the old ones go)."""
        old = sorted(self.dir.glob("b-*"))
        keep: dict[str, np.ndarray] = {}
        for hashes, rows in self.batches(mmap=True):
            idx = [i for i, h in enumerate(hashes) if h in live and h not in keep]
            keep.update(zip((hashes[i] for i in idx), np.asarray(rows[idx])))
        items = list(keep.items())
        before = self.kept
        for lo in range(0, len(items), self.BATCH_ROWS):
            part = items[lo : lo + self.BATCH_ROWS]
            self.add(model, fingerprint, [h for h, _ in part], np.stack([r for _, r in part]))
        if self.failed is None and self.kept - before == len(items):
            for path in old:
                path.unlink(missing_ok=True)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _npy(rows: np.ndarray, dtype: type = np.float32) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(rows, dtype=dtype), allow_pickle=False)
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
