"""Finding and reading corpus files → ``Article`` records.  All file I/O of loading lives here.

Accepted inputs (see ``corpus/README.md``):

* a folder, read recursively in sorted order; hidden files and folders (``.*``) and
  ``README.*`` files are skipped; nothing outside the folder is ever read: a symlink
  (file or folder) that resolves outside it is reported as ``Skipped``, symlinked folders
  are not followed, and files are opened without following a final symlink;
* files ending in .md .markdown .txt .html .htm (any case): optional YAML front matter
  between ``---`` lines, then an HTML, Markdown or plain-text body.  Article id = the
  path relative to the root without its suffix (POSIX), e.g. ``000_c01459aaca3a05d0``;
* .jsonl files: one article a line with ``id``, ``title``, ``text`` or ``html`` and
  optional ``url``, ``date``, ``source``, ``categories``, ``tags``.  Article id = ``id``.

Files with other suffixes are ignored silently, except document formats someone
probably meant as articles (.pdf .doc .docx .json .xml …), which are reported as
``Skipped`` with what to do.  One bad file or JSONL line never stops the load.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import yaml

from .chunking import paragraphs_from_texts, repair_paragraphs
from .cleaning import clean_body, looks_like_html
from .errors import CorpusError, InputFileError
from .records import Article
from .text import compact, ends_sentence

__all__ = ["MAX_FILE_BYTES", "LoadResult", "Skipped", "SourceFile", "load_corpus", "parse_date", "read_source", "scan"]

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 10 * 1024 * 1024  # per file; for JSONL, per line (a JSONL corpus may be large)
# Said in every "too large" message: how to raise the limit.
LIMIT_HINT = "raise the limit with --max-file-mb N or SME_QA_MAX_FILE_MB"
ARTICLE_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".html", ".htm", ".jsonl"})
# Not loadable, but clearly meant as articles: worth a message rather than silence.
_DOCUMENT_SUFFIXES = frozenset(
    ".pdf .doc .docx .rtf .odt .wps .json .ndjson .xml .csv .tsv .xhtml .shtml .mhtml .mht .text .mdx .gz .zip .epub".split()
)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML; timestamps stay text so that bad dates do not fail the file and zones stay as written."""


_Loader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))
_FENCE_CLOSE = ("---", "...")
_PRIVATE_USE_RE = re.compile("[\ue000-\uf8ff]")
_SOURCE_KEYS = ("source", "publisher", "author")
_URL_KEYS = ("url", "source_url", "original_url", "link")
_ID_KEYS = ("id", "pid", "doc_id")  # JSONL; pid as in the benchmark passages


@dataclass(frozen=True)
class SourceFile:
    """One corpus file found by ``scan``."""

    where: str | Path  # the file as found (``scan`` keeps the string: 100,000 Path objects cost 0.7 s)
    rel: str  # POSIX path relative to the corpus root
    size: int
    mtime_ns: int
    target: Path | None = None  # where a symlink inside the corpus points (opened instead of ``path``)

    @property
    def path(self) -> Path:
        return Path(self.where)

    @property
    def real(self) -> Path:
        """The path that is opened: never a symlink, never outside the corpus root."""
        return self.target or self.path


@dataclass(frozen=True)
class Skipped:
    """Something that was not loaded: where ("path" or "path:line") and why, with what to do."""

    location: str
    reason: str


@dataclass
class LoadResult:
    articles: list[Article]
    skipped: list[Skipped]


# --- finding files ----------------------------------------------------------------------


def _source(path: Path, rel: str) -> SourceFile:
    st = path.stat()
    return SourceFile(where=path, rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns)


def _inside(target: str, root: str) -> bool:
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def _outside(path: Path, what: str) -> Skipped:
    where = os.path.realpath(path)
    why = f"symlinked {what} pointing outside the corpus folder (to {where}); not read: copy the {what} in instead"
    return Skipped(str(path), why)


def _open(path: Path) -> BinaryIO:
    """Open a corpus file for reading without following a symlink in its last component."""
    return os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb")


def _unsupported(path: Path) -> Skipped:
    what = f"unsupported file type '{path.suffix.lower()}'; save articles as .txt, .md, .html or JSONL"
    return Skipped(str(path), what + " (see corpus/README.md), or move this file out of the corpus folder")


def scan(root: Path) -> tuple[list[SourceFile], list[Skipped]]:
    """Corpus files under ``root`` (a folder, or a single article or .jsonl file), sorted by ``rel``."""
    root = Path(root)
    if not root.exists():
        raise CorpusError(f"corpus not found: {root} does not exist; pass an existing folder or .jsonl file")
    if root.is_file():
        if root.suffix.lower() in ARTICLE_SUFFIXES:  # named by the user: a symlink is followed
            src = _source(root, root.name)
            return [SourceFile(root, src.rel, src.size, src.mtime_ns, Path(os.path.realpath(root)))], []
        return [], [_unsupported(root)]
    found: list[SourceFile] = []
    skipped: list[Skipped] = []
    real_root = os.path.realpath(root)

    def on_error(err: OSError) -> None:
        skipped.append(Skipped(str(err.filename), f"cannot list folder: {err.strerror}; check its permissions"))

    # os.scandir, not os.walk and pathlib: the directory entries carry their type, so a corpus
    # of 100,000 files costs one stat each (bench/bench_scale.py scans it on every update)
    pending = [(str(root), "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            on_error(err)
            continue
        subfolders = []
        for entry in entries:
            name = entry.name
            if entry.is_dir(follow_symlinks=False):
                if not name.startswith("."):
                    subfolders.append((entry.path, prefix + name + "/"))
                continue
            if entry.is_symlink() and os.path.isdir(entry.path):
                if name.startswith("."):
                    continue
                if not _inside(os.path.realpath(entry.path), real_root):
                    skipped.append(_outside(Path(entry.path), "folder"))
                else:  # its files are read where they really are, once
                    log.info("%s: symlinked folder inside the corpus, not followed", entry.path)
                continue
            suffix = os.path.splitext(name)[1].lower()
            if name.startswith(".") or name.lower().startswith("readme."):
                continue
            if suffix not in ARTICLE_SUFFIXES and suffix not in _DOCUMENT_SUFFIXES:
                continue
            target = None
            if entry.is_symlink():
                target = Path(os.path.realpath(entry.path))
                if not _inside(str(target), real_root):
                    skipped.append(_outside(Path(entry.path), "file"))
                    continue
            if suffix in _DOCUMENT_SUFFIXES:
                skipped.append(_unsupported(Path(entry.path)))
                continue
            try:
                st = target.stat() if target is not None else entry.stat(follow_symlinks=False)
            except OSError as err:
                skipped.append(Skipped(entry.path, f"cannot read file: {err.strerror}; check it exists and is readable"))
                continue
            found.append(SourceFile(entry.path, prefix + name, st.st_size, st.st_mtime_ns, target))
        pending.extend(reversed(subfolders))
    found.sort(key=lambda s: s.rel)
    return found, skipped


# --- decoding ---------------------------------------------------------------------------


def decode(data: bytes, location: str) -> str:
    """Bytes → text: UTF-8 (BOM allowed), UTF-16 with BOM, GB18030/GBK, else charset-normalizer.

    Strict decoders come first so that valid UTF-8 or GBK is never guessed wrong; data
    with NUL bytes or that no decoder reads cleanly is binary → ``InputFileError``.
    """
    data = data.removeprefix(b"\xef\xbb\xbf")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data:
        raise InputFileError(location, "binary file (contains NUL bytes), not text; remove it or export it as UTF-8 text")
    for encoding in ("utf-8", "gb18030"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        # Big5 bytes are valid GBK too, but land in GBK's user-defined (private use) area.
        if encoding == "utf-8" or len(_PRIVATE_USE_RE.findall(text)) <= len(text) // 1000:
            return text
    lossy = data.decode("utf-8", errors="replace")
    bad = lossy.count("\ufffd")
    if bad <= max(1, len(lossy) // 1000) and any(ord(c) > 0x7F and c != "\ufffd" for c in lossy):
        log.warning("%s: %d invalid UTF-8 byte sequence(s) replaced by U+FFFD", location, bad)
        return lossy
    from charset_normalizer import from_bytes  # only for the rare file neither UTF-8 nor GB18030

    best = from_bytes(data).best()
    text = str(best) if best is not None else ""
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\n\r\f")
    if best is None or not text or controls > len(text) // 100:
        raise InputFileError(location, "not readable as text in any known encoding (binary?); save it as UTF-8 text")
    log.warning("%s: read as %s (neither UTF-8 nor GB18030)", location, best.encoding)
    return text


# --- front matter and metadata -----------------------------------------------------------


def split_front_matter(text: str, location: str) -> tuple[dict[str, Any], str]:
    """YAML front matter between ``---`` lines (blank lines before it allowed) and the body."""
    lines = text.split("\n")
    i = 0
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i == len(lines) or lines[i].rstrip() != "---":
        return {}, text
    start = i + 1
    end = next((j for j in range(start, len(lines)) if lines[j].rstrip() in _FENCE_CLOSE), None)
    if end is None:
        why = f"front matter opened with '---' on line {i + 1} is never closed; add a '---' line after it"
        raise InputFileError(f"{location}:{i + 1}", why)
    try:
        meta = yaml.load("\n".join(lines[start:end]), Loader=_Loader)  # _Loader is a SafeLoader: no object construction
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as err:
        mark = getattr(err, "problem_mark", None)
        if mark is None or (mark.line >= end - start - 1 and getattr(err, "context_mark", None) is not None):
            mark = getattr(err, "context_mark", None) or mark  # an error found at the end: where it began
        line = start + 1 + (mark.line if mark is not None else 0)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        why = f"malformed YAML front matter on line {line}: {problem}; fix it (quote values with ':' or quotes)"
        raise InputFileError(f"{location}:{line}", why) from None
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise InputFileError(f"{location}:{start + 1}", f"front matter on line {start + 1} is not 'key: value' lines")
    return {str(k).lower(): v for k, v in meta.items()}, "\n".join(lines[end + 1 :])


_ISO_RE = re.compile(r"^\s*(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})(?![\d])")
_COMPACT_RE = re.compile(r"^\s*(\d{4})(\d{2})(\d{2})(?:\D|$)")
_TEXT_FORMATS = ("%d %b %Y", "%b %d, %Y", "%B %d, %Y", "%d %B %Y", "%b %d %Y")


def parse_date(value: object, location: str = "") -> str | None:
    """A date as ISO ``YYYY-MM-DD``, in its own time zone (no conversion), or None with a warning.

    Accepts YAML dates/datetimes, ISO-like text (``2022-04-15``, ``2022-04-15 13:41:33 +0800``,
    ``2022/4/15``, ``2022年4月15日``), RFC 2822 (``Wed, 14 Sep 2022 09:52:00 GMT``) and
    ``20220415``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raw = str(value).strip()
    found = _date_from_text(raw)
    if found is None:
        log.warning("%s: unparseable date %r; the article is loaded without a date", location, raw)
        return None
    return found.isoformat()


def _date_from_text(raw: str) -> dt.date | None:
    m = _ISO_RE.match(raw) or _COMPACT_RE.match(raw)
    try:
        if m:
            return dt.date(*(int(g) for g in m.groups()))
        parsed = email.utils.parsedate_tz(raw)
        if parsed is not None:
            return dt.date(*parsed[:3])
    except ValueError:
        return None
    for fmt in _TEXT_FORMATS:
        try:
            return dt.datetime.strptime(raw, fmt).date()
        except ValueError:
            pass
    return None


def _strings(value: object) -> tuple[str, ...]:
    """A list, or a string with commas, → unique non-empty strings in order."""
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else re.split(r"[,，、;；]", str(value))
    seen: dict[str, None] = {}
    for item in items:
        text = str(item).strip() if item is not None else ""
        if text:
            seen.setdefault(text, None)
    return tuple(seen)


def _first_text(meta: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = meta.get(key)
        if isinstance(value, (list, tuple)):
            value = "、".join(str(v).strip() for v in value if v)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def _build(doc_id: str, meta: dict[str, Any], body: str, location: str, fallback_title: str) -> Article:
    """Clean the body, repair paragraphs and assemble the Article; raises when nothing is left."""
    clean = clean_body(body)
    paragraphs = repair_paragraphs(clean.paragraphs)
    title = _first_text(meta, ("title",)) or clean.title
    first = paragraphs[0] if len(paragraphs) > 1 else ""
    if title is None and 0 < len(first) <= 60 and not ends_sentence(first) and not looks_like_html(body):
        title = first  # a plain text file whose first line is its title
    if title is not None and paragraphs and compact(paragraphs[0]) == compact(title):
        paragraphs = paragraphs[1:]  # the title repeated as the first line of the body
    if not paragraphs:
        raise InputFileError(location, "no article text left after removing markup and boilerplate; the body is empty")
    url = _first_text(meta, _URL_KEYS) or clean.url
    return Article(
        id=doc_id,
        title=title or fallback_title,
        paragraphs=paragraphs_from_texts(paragraphs),
        date=parse_date(meta.get("date") or meta.get("published") or clean.date, location),
        source=_first_text(meta, _SOURCE_KEYS) or clean.source,
        categories=_strings(meta.get("categories", meta.get("category"))),
        tags=_strings(meta.get("tags")),
        url=url,
        location=location,
    )


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


# --- reading ----------------------------------------------------------------------------


def read_source(src: SourceFile, *, max_bytes: int = MAX_FILE_BYTES) -> tuple[list[Article], list[Skipped]]:
    """Read one corpus file.  Raises ``InputFileError`` when the whole file is unusable.

    A JSONL file yields one article per good line and a ``Skipped`` ("path:line") per bad
    one; ``max_bytes`` then limits each line rather than the file.
    """
    location = str(src.path)
    if src.path.suffix.lower() == ".jsonl":
        return _read_jsonl(src, max_bytes)
    try:
        with _open(src.real) as f:
            data = f.read(max_bytes + 1) if src.size <= max_bytes else b""
    except OSError as err:
        raise InputFileError(location, f"cannot read file: {err.strerror}; check it exists and is readable") from None
    if src.size > max_bytes or len(data) > max_bytes:
        size = _mb(max(src.size, len(data)))
        raise InputFileError(location, f"file too large ({size} > {_mb(max_bytes)} limit); split it or {LIMIT_HINT}")
    text = decode(data, location).replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise InputFileError(location, "empty file; write the article into it or remove it")
    meta, body = split_front_matter(text, location)
    if not body.strip():
        raise InputFileError(location, "no article text after the front matter; add the body or remove the file")
    doc_id = PurePosixPath(src.rel).with_suffix("").as_posix()
    return [_build(doc_id, meta, body, location, PurePosixPath(doc_id).name)], []


def _read_jsonl(src: SourceFile, max_bytes: int) -> tuple[list[Article], list[Skipped]]:
    location = str(src.path)
    articles: list[Article] = []
    skipped: list[Skipped] = []
    try:
        with _open(src.real) as f:
            if b"\x00" in f.read(8192):
                raise InputFileError(location, "binary file (contains NUL bytes), not JSON Lines; export it as UTF-8")
            f.seek(0)
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    if len(line) > max_bytes:
                        raise InputFileError(f"{location}:{number}", f"line too long (> {_mb(max_bytes)}); split it or {LIMIT_HINT}")
                    articles.append(_jsonl_article(line, f"{location}:{number}"))
                except InputFileError as err:
                    skipped.append(Skipped(err.location, err.reason))
    except OSError as err:
        raise InputFileError(location, f"cannot read file: {err.strerror}; check it exists and is readable") from None
    if not articles and not skipped:
        raise InputFileError(location, "empty file; write one JSON article per line or remove it")
    return articles, skipped


def _jsonl_article(line: bytes, where: str) -> Article:
    try:
        record = json.loads(decode(line, where))
    except json.JSONDecodeError as err:
        raise InputFileError(where, f"invalid JSON ({err.msg} at column {err.colno}); fix this line") from None
    if not isinstance(record, dict):
        raise InputFileError(where, 'not a JSON object; each line must be one {"id": …, "title": …, "text": …} object')
    record = {str(k).lower(): v for k, v in record.items()}
    doc_id = next((record[k] for k in _ID_KEYS if record.get(k) not in (None, "")), None)
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip() or any(c.isspace() and c != " " for c in doc_id):
        raise InputFileError(where, "missing or invalid 'id' (a non-empty string on one line); add a unique id")
    body = record.get("text") or record.get("html")
    if not isinstance(body, str) or not body.strip():
        raise InputFileError(where, "missing 'text' or 'html' (a non-empty string); add the article body")
    return _build(doc_id.strip(), record, body, where, doc_id.strip())


def load_corpus(root: Path, *, max_bytes: int = MAX_FILE_BYTES) -> LoadResult:
    """Scan and read a corpus.  Bad files, bad JSONL lines and duplicate ids become ``Skipped``.

    For a duplicate id the first article (in sorted path order, then line order) wins and
    the later one is reported, naming both places.  Raises ``CorpusError`` only when
    ``root`` does not exist.
    """
    sources, skipped = scan(Path(root))
    articles: list[Article] = []
    first_seen: dict[str, str] = {}
    for src in sources:
        try:
            found, bad = read_source(src, max_bytes=max_bytes)
        except InputFileError as err:
            skipped.append(Skipped(err.location, err.reason))
            continue
        skipped.extend(bad)
        for article in found:
            if article.id in first_seen:
                why = f"duplicate id '{article.id}', already loaded from {first_seen[article.id]}; this copy is ignored"
                skipped.append(Skipped(article.location, why + ": rename one or remove the duplicate"))
            else:
                first_seen[article.id] = article.location
                articles.append(article)
    for item in skipped:
        log.warning("skipped %s: %s", item.location, item.reason)
    log.info("loaded %d articles from %d files under %s; %d skipped", len(articles), len(sources), root, len(skipped))
    return LoadResult(articles=articles, skipped=skipped)
