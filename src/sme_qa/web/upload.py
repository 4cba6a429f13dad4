"""Adding and removing articles from the browser.  Pure file work; indexing is the caller's.

Every new article is saved into the corpus folder under a generated name,
``uploads/<YYYYmmdd-HHMMSS>-<random>.<suffix>``: nothing of the user's file name but its
suffix (one of the loader's) ever reaches a path.  Before anything is written the
file is read by the same loader as ``sme-qa index`` (``sme_qa.corpus.read_source``) from a
hidden staging folder inside the corpus (the scanner skips hidden folders), so a file
with a problem gets one line per problem and leaves nothing behind; good files are
moved into place with ``os.replace``.  A batch is all or nothing.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..corpus import (
    ARTICLE_SUFFIXES,
    MAX_FILE_BYTES,
    SourceFile,
    parse_date,
    read_source,
)
from ..errors import InputFileError, SmeQaError
from ..records import Article

__all__ = ["UPLOAD_DIR", "UploadError", "delete_article", "delete_token", "pasted_article", "save_articles"]

UPLOAD_DIR = "uploads"
_JSONL_LINE = re.compile(r"^(?P<path>.+\.jsonl):(?P<line>\d+)$", re.IGNORECASE)


class UploadError(SmeQaError):
    """One or more problems, one line each; nothing was written."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Incoming:
    """One file to add: what the user called it (shown in messages only), its suffix, its bytes."""

    label: str
    suffix: str
    data: bytes


def incoming_file(path: Path | str, label: str | None = None, *, max_bytes: int = MAX_FILE_BYTES) -> Incoming:
    """An uploaded file on disk (Gradio's temporary copy) → ``Incoming``; the suffix is all that is kept."""
    path = Path(path)
    label = label or path.name
    suffix = os.path.splitext(label)[1].lower()
    size = path.stat().st_size
    if size > max_bytes and suffix != ".jsonl":  # JSONL: the limit is per line, checked by the loader
        raise UploadError([f"{label}：文件太大（{size / 2**20:.1f} MB，上限 {max_bytes / 2**20:.0f} MB），请拆分后再上传"])
    return Incoming(label=label, suffix=suffix, data=path.read_bytes())


def pasted_article(title: str, body: str, *, date: str = "", source: str = "", url: str = "") -> Incoming:
    """The paste form as a Markdown file with YAML front matter (the corpus's own format)."""
    problems = []
    if not (title or "").strip():
        problems.append("标题：必填")
    if not (body or "").strip():
        problems.append("正文：必填，请粘贴文章正文")
    if (date or "").strip() and parse_date(date.strip(), "粘贴的文章") is None:
        problems.append(f"日期：看不懂 {date.strip()!r}，请写成 2023-03-01")
    if (url or "").strip() and not re.match(r"^https?://\S+$", url.strip()):
        problems.append("原文链接：请填写 http:// 或 https:// 开头的网址，或留空")
    if problems:
        raise UploadError(problems)
    meta = {"title": title.strip()}
    meta.update({k: v.strip() for k, v in (("date", date), ("source", source), ("url", url)) if (v or "").strip()})
    front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False)
    return Incoming(label="粘贴的文章", suffix=".md", data=f"---\n{front}---\n\n{body.strip()}\n".encode())


def new_name(suffix: str, now: dt.datetime | None = None) -> str:
    """A fresh corpus-relative file name, e.g. ``uploads/20230301-120000-3f9a1c.md``."""
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return f"{UPLOAD_DIR}/{stamp}-{secrets.token_hex(3)}{suffix}"


def _relabel(text: str, staged: Path, label: str) -> str:
    return text.replace(str(staged), label)


def save_articles(corpus: Path, files: Iterable[Incoming], known_ids: set[str], *, max_bytes: int = MAX_FILE_BYTES) -> list[Article]:
    """Validate every file as the indexer will read it, then move all into ``corpus/uploads/``.

    Raises ``UploadError`` (one line per problem, nothing written) when any file is unusable,
    holds a bad JSONL line, or brings an id the corpus already has."""
    corpus = Path(corpus)
    files = list(files)
    if not files:
        raise UploadError(["没有选择文件，也没有填写文章"])
    problems: list[str] = []
    staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=corpus))
    try:
        ready: list[tuple[Path, str, list[Article]]] = []
        seen = set(known_ids)
        for item in files:
            if item.suffix not in ARTICLE_SUFFIXES:
                kinds = "、".join(sorted(ARTICLE_SUFFIXES))
                problems.append(f"{item.label}：不支持的文件类型 {item.suffix or '（无后缀）'}，请上传 {kinds}")
                continue
            rel = new_name(item.suffix)
            staged = staging / Path(rel).name
            staged.write_bytes(item.data)
            st = staged.stat()
            try:
                articles, skipped = read_source(SourceFile(staged, rel, st.st_size, st.st_mtime_ns), max_bytes=max_bytes)
            except InputFileError as err:
                problems.append(f"{item.label}：{_relabel(err.reason, staged, item.label)}")
                continue
            problems.extend(f"{_relabel(s.location, staged, item.label)}：{s.reason}" for s in skipped)
            for article in articles:
                if article.id in seen:
                    problems.append(f"{item.label}：编号 {article.id!r} 已在语料中，请换一个 id")
                seen.add(article.id)
            ready.append((staged, rel, articles))
        if problems:
            raise UploadError(problems)
        (corpus / UPLOAD_DIR).mkdir(exist_ok=True)
        for staged, rel, _ in ready:
            os.replace(staged, corpus / rel)
        return [a for _, _, articles in ready for a in articles]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- deleting


def delete_token(secret: str, doc_id: str) -> str:
    """The confirmation form's token: only a page this server rendered can delete ``doc_id``."""
    return hmac.new(secret.encode(), ("delete:" + doc_id).encode(), "sha256").hexdigest()


def _inside(corpus: Path, path: Path) -> Path:
    root = corpus.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise SmeQaError(f"{path} is outside the corpus folder {corpus}; remove it by hand")
    return resolved


def delete_article(corpus: Path, article: Article) -> Path:
    """Remove ``article`` from the corpus folder: its file, or its line of a JSONL file.

    The file is found from the article's id (``corpus/<id>.<suffix>``) or, for JSONL, from
    its recorded location; it must lie inside ``corpus``.  Returns the file changed."""
    corpus = Path(corpus)
    m = _JSONL_LINE.match(article.location or "")
    if m:
        path = _inside(corpus, Path(m.group("path")))
        lines = path.read_bytes().splitlines(keepends=True)
        number = int(m.group("line"))
        try:
            record = json.loads(lines[number - 1])
            same = isinstance(record, dict) and article.id in (str(record.get(k, "")).strip() for k in ("id", "pid", "doc_id"))
        except (IndexError, ValueError):
            same = False
        if not same:
            raise SmeQaError(f"{path} changed since it was indexed; run 「更新索引」 first, then delete again")
        fd, tmp = tempfile.mkstemp(prefix=".delete-", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.writelines(line for i, line in enumerate(lines, start=1) if i != number)
        os.replace(tmp, path)
        return path
    candidates = [corpus / (article.id + s) for s in sorted(ARTICLE_SUFFIXES) if s != ".jsonl"]
    found = [p for p in candidates if p.is_file()]
    if not found:
        raise SmeQaError(f"no file for article {article.id!r} in {corpus}; it may have been removed already")
    path = _inside(corpus, found[0])
    path.unlink()
    return path
