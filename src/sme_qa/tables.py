"""The chunk and document tables of a generation, readable one row at a time.

The tables stay JSONL (one row a line, plain text); beside them ``rows.npz`` (plain
numpy arrays, no pickle) holds what a searcher needs of every row without parsing it:

    chunk_offsets, doc_offsets   byte offset of each line (n + 1 values: the last is the file size)
    vids                         each chunk's id in the vector store
    chunk_doc                    each chunk's document row
    doc_ids, doc_dates, doc_sources   per document (for ``article(id)`` and the filters)

so a process answering one question memory-maps the two files and parses only the rows
it shows (``LazyRows``), instead of a million JSON lines.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import orjson

__all__ = [
    "ROWS_FILE",
    "ROW_ARRAYS",
    "ChunkRows",
    "ConcatRows",
    "LazyRows",
    "attach_texts",
    "line_offsets",
    "read_row_arrays",
    "row_arrays",
    "without_text",
]

ROWS_FILE = "rows.npz"
ROW_ARRAYS = ("chunk_offsets", "doc_offsets", "vids", "chunk_doc", "doc_ids", "doc_dates", "doc_sources")


class _Rows(Sequence[dict[str, Any]]):
    """Indexing by position, negative position or slice over ``_row(j)`` for 0 <= j < len."""

    def _row(self, j: int) -> dict[str, Any]:
        raise NotImplementedError

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        j = int(i) + n if i < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"row {i} of {n}")
        return self._row(j)


class LazyRows(_Rows):
    """The rows of a JSONL file, each parsed when asked for (the file is memory-mapped)."""

    def __init__(self, path: Path, offsets: np.ndarray) -> None:
        self.path = Path(path)
        self.offsets = offsets
        with open(self.path, "rb") as fh:
            size = fh.seek(0, 2)
            self._data: mmap.mmap | bytes = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _row(self, j: int) -> dict[str, Any]:
        row: dict[str, Any] = orjson.loads(self._data[self.offsets[j] : self.offsets[j + 1]])
        return row

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for j in range(len(self)):
            yield self[j]


class ConcatRows(_Rows):
    """Several row sequences read as one (the base table, then the rows added since)."""

    def __init__(self, parts: Sequence[Sequence[dict[str, Any]]]) -> None:
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _row(self, j: int) -> dict[str, Any]:
        part = int(np.searchsorted(self.starts, j, side="right")) - 1
        return self.parts[part][j - int(self.starts[part])]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for part in self.parts:
            yield from part


def without_text(chunk: dict[str, Any]) -> dict[str, Any]:
    """A chunk row as stored (format 3): its text is ``article text[start:end]``, kept once, in documents.jsonl."""
    return {k: v for k, v in chunk.items() if k != "text"}


def _doc_text(doc: dict[str, Any]) -> str:
    from .records import PARAGRAPH_SEPARATOR

    return PARAGRAPH_SEPARATOR.join(p["text"] for p in doc["paragraphs"])


class ChunkRows(Sequence[dict[str, Any]]):
    """Chunk rows with their text, cut from their article's text when read (rows stored
    without it) or as stored (rows of formats 1 and 2)."""

    def __init__(self, chunks: Sequence[dict[str, Any]], documents: Sequence[dict[str, Any]], chunk_doc: np.ndarray) -> None:
        self.chunks, self.documents, self.chunk_doc = chunks, documents, chunk_doc

    def __len__(self) -> int:
        return len(self.chunks)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        row = self.chunks[i]
        if "text" not in row and isinstance(row, dict) and "start" in row:
            j = int(i) + len(self) if i < 0 else int(i)
            text = _doc_text(self.documents[int(self.chunk_doc[j])])
            row = {**row, "text": text[row["start"] : row["end"]]}
        return row

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for j in range(len(self)):
            yield self[j]


def attach_texts(chunks: list[dict[str, Any]], documents: Sequence[dict[str, Any]], chunk_doc: np.ndarray) -> None:
    """Put each stored chunk row's text back (in place), cutting each article's text once."""
    last, text = -1, ""
    for c, d in zip(chunks, chunk_doc.tolist()):
        if "text" in c or not isinstance(c, dict) or "start" not in c:
            continue
        if d != last:
            last, text = d, _doc_text(documents[d])
        c["text"] = text[c["start"] : c["end"]]


def line_offsets(path: Path) -> np.ndarray:
    """Byte offset of each line's start, then the file size (a file of n lines gives n + 1)."""
    found = [np.zeros(1, dtype=np.int64)]
    pos = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            found.append(np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10).astype(np.int64) + pos + 1)
            pos += len(block)
    offsets = np.concatenate(found)
    return offsets if offsets[-1] == pos else np.append(offsets, pos)  # a last line without "\n"


def row_arrays(
    chunks: Sequence[dict[str, Any]], documents: Sequence[dict[str, Any]], chunk_file: Path, doc_file: Path
) -> dict[str, np.ndarray]:
    """The arrays of ``rows.npz`` for tables just written to ``chunk_file`` and ``doc_file``."""
    doc_row = {d["id"]: i for i, d in enumerate(documents)}
    return {
        "chunk_offsets": line_offsets(chunk_file),
        "doc_offsets": line_offsets(doc_file),
        "vids": np.fromiter((c["vid"] for c in chunks), dtype=np.int64, count=len(chunks)),
        "chunk_doc": np.fromiter((doc_row[c["doc_id"]] for c in chunks), dtype=np.int64, count=len(chunks)),
        "doc_ids": np.array([d["id"] for d in documents], dtype=str),
        "doc_dates": np.array([d.get("date") or "" for d in documents], dtype=str),
        "doc_sources": np.array([d.get("source") or "" for d in documents], dtype=str),
    }


def read_row_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of ``rows.npz`` (each read whole: a truncated file fails here, not later)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in ROW_ARRAYS}
    return arrays
