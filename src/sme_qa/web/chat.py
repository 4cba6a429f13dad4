"""What the chat page does (``ChatService``): answer, restore, rate, update and add to the index.
The page itself (widgets and their wiring) is ``layout``; rendering lives in ``render``.

Endpoints (all named, usable with ``gradio_client``):

* ``/ask`` — ``ask(question, k=5, mode="hybrid", date_from="", date_to="", history=None)`` →
  structured answer; ``history`` is the conversation so far as a JSON list of
  ``{"role": "user"|"assistant", "content": …}`` messages (or a JSON string of one);
* ``/update_index`` — the 「更新索引」 button: incremental ``build_index``, then ``refresh()``;
* ``/index_status`` — one line about the live index.

The conversation lives in the browser (``gr.BrowserState``, see ``turns``), so a reload or
the way back from an article page redraws it; 「清空对话」 clears it there too.

Before every query the searcher is refreshed (a stat of ``vectors/manifest.json``), so an
index rebuilt by the CLI is served without a restart; while an update runs, queries keep
being answered from the previous index.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from ..errors import IndexLockedError, QueryError, SmeQaError
from ..search import MODES, Searcher
from . import turns as conversation
from .corpus_page import CorpusStats, corpus_stats, header_html
from .examples import example_questions
from .feedback import FEEDBACK_FILE, FeedbackLog
from .render import answer_messages, answer_payload, error_message, pending_message
from .upload import (
    UploadError,
    delete_article,
    incoming_file,
    pasted_article,
    save_articles,
)

__all__ = ["ChatService"]

log = logging.getLogger(__name__)

_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?$")
_STAGES = {"embedding": "嵌入新段落", "tokenising": "分词"}
# Share of the whole update each indexer stage takes, in order: the bar only moves forward.
_SPANS = {"scanning": (0.0, 0.05), "embedding": (0.05, 0.85), "tokenising": (0.85, 1.0)}


INTERNAL = "内部错误，请查看服务器日志。"
MAX_K = 20


def check_question(question: object) -> str:
    if not isinstance(question, str):
        raise QueryError(f"问题 question 必须是文本，收到的是 {_kind(question)}")
    if not question.strip():
        raise QueryError("问题是空的：请输入一个问题，例如 我国已培育了多少家专精特新“小巨人”企业？")
    return question.strip()


def check_k(k: object) -> int:
    """1…20 passages; accepts an int, an integral float (Gradio sliders send 5.0) or digits."""
    value: object = k
    if isinstance(k, str) and k.strip().isdigit():
        value = int(k.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_K:
        raise QueryError(f"引用段落数 k 必须是 1 到 {MAX_K} 之间的整数，收到的是 {_kind(k)}")
    return value


def check_mode(mode: object) -> str:
    if mode not in MODES:
        raise QueryError(f"未知的检索方式 mode：{_kind(mode)}；可选 {'、'.join(MODES)}")
    return str(mode)


def _text(value: object, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise QueryError(f'{what} 必须是文本，如 "2022-05-01"、"2022-05" 或 "2022"，收到的是 {_kind(value)}')


def _kind(value: object) -> str:
    """A value as a user sees it in a message: short, never a Python type name alone."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def date_bound(raw: str | None, *, upper: bool) -> str | None:
    """``"2022"``/``"2022-5"``/``"2022-05-01"`` → an ISO bound (upper bounds extend to the period's end)."""
    raw = (raw or "").strip().replace("/", "-").replace(".", "-")
    if not raw:
        return None
    m = _DATE.match(raw)
    if not m or not (m.group(2) is None or 1 <= int(m.group(2)) <= 12) or not (m.group(3) is None or 1 <= int(m.group(3)) <= 31):
        raise QueryError(f"日期格式不对：{_kind(raw)}，请写成 2022-05-01、2022-05 或 2022")
    year, month, day = m.group(1), m.group(2), m.group(3)
    if month is None:
        return f"{year}-12-31" if upper else f"{year}-01-01"
    if day is None:
        return f"{year}-{int(month):02d}-31" if upper else f"{year}-{int(month):02d}-01"
    return f"{year}-{int(month):02d}-{int(day):02d}"


def overall_progress(stage: str, done: int, total: int) -> float:
    """One fraction for the whole update from a stage's own ``done/total`` (stages run in order)."""
    lo, hi = _SPANS.get(stage, (0.0, 1.0))
    return lo + (hi - lo) * (min(done, total) / total if total > 0 else 1.0)


def public_base(request: Any, configured: str | None = None) -> str | None:
    """The address links should start with: ``SME_QA_PUBLIC_URL`` if set, else the request's own host."""
    if configured:
        return configured.rstrip("/")
    headers = getattr(request, "headers", None) or {}
    host = headers.get("host") if hasattr(headers, "get") else None
    if not host or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+", host):
        return None
    scheme = headers.get("x-forwarded-proto") if hasattr(headers, "get") else None
    if scheme not in ("http", "https"):
        url = getattr(request, "url", None)
        scheme = getattr(url, "scheme", None) if url is not None else None
    return f"{scheme if scheme in ('http', 'https') else 'http'}://{host}"


class ChatService:
    """What the UI calls: answers, the index update and status, over one ``Searcher``.

    ``manage=True`` also lets the browser add and delete articles (the server turns it on
    only on loopback or behind ``--auth``)."""

    def __init__(
        self,
        searcher: Searcher,
        corpus: Path,
        *,
        build: Callable[..., Any] | None = None,
        manage: bool = False,
        public_url: str | None = None,
    ) -> None:
        self.searcher = searcher
        self.corpus = corpus
        self.manage = manage
        self.public_url = public_url
        self.feedback_log = FeedbackLog(searcher.settings.vectors / FEEDBACK_FILE)
        self._build = build
        self._refreshing = threading.Lock()
        self._updating = threading.Lock()
        self._stats: tuple[int, CorpusStats] | None = None

    # ------------------------------------------------------------ index

    def refresh(self) -> None:
        """Serve a newer index if one was committed; never blocks on another refresh."""
        if not self._refreshing.acquire(blocking=False):
            return
        try:
            if self.searcher.refresh():
                log.info("serving the updated index in %s", self.searcher.settings.vectors)
        except SmeQaError as exc:
            log.warning("could not load the updated index, still serving the previous one: %s", exc)
        finally:
            self._refreshing.release()

    def status(self) -> str:
        self.refresh()
        m = self.searcher.manifest
        counts = m.get("counts", {})
        built = str(m.get("built", "?")).replace("T", " ")[:16]
        return f"索引：{counts.get('documents', '?')} 篇文章，{counts.get('chunks', '?')} 个段落；更新于 {built}"

    def stats(self) -> CorpusStats:
        """Article count, sources and date range of the live index (computed once per index)."""
        generation = self.searcher.state.generation
        cached = self._stats
        if cached is None or cached[0] != id(generation):
            cached = (id(generation), corpus_stats(generation.documents))
            self._stats = cached
        return cached[1]

    def header(self) -> str:
        self.refresh()
        return header_html(self.stats())

    def _reindex(self, progress: Callable[..., Any]) -> str:
        """Incremental ``build_index`` with a forward-only progress bar, then serve it; the caller holds the lock."""
        from ..indexing import build_index

        build = self._build or build_index
        shown = [0.0]

        def report(stage: str, done: int, total: int) -> None:
            shown[0] = max(shown[0], overall_progress(stage, done, total))
            progress(shown[0], desc=f"{_STAGES.get(stage, stage)} {done}/{total}")

        progress(0.0, desc="扫描语料")
        try:
            summary = build(self.corpus, self.searcher.settings.vectors, progress=report, max_file_mb=self.searcher.settings.max_file_mb)
        except IndexLockedError:
            return "另一个索引进程（例如命令行的 `sme-qa index`）正在更新索引，请稍后再试；问答照常使用当前索引。"
        except SmeQaError as exc:
            return f"更新失败：{exc}"
        except Exception:  # say so in the UI; the log keeps the traceback
            log.exception("updating the index failed")
            return "更新失败：内部错误，详见服务器日志。问答照常使用当前索引。"
        progress(1.0, desc="完成")
        self.refresh()
        s = summary
        if not s.written:
            return f"语料没有变化，索引已是最新（{s.articles_unchanged} 篇文章）。"
        return (
            f"索引已更新：新增 {s.articles_added} 篇，修改 {s.articles_changed} 篇，删除 {s.articles_removed} 篇；"
            f"嵌入 {s.chunks_embedded} 个段落，复用 {s.chunks_reused} 个；用时 {s.seconds:.1f} 秒。"
        )

    def update_index(self, progress: gr.Progress = gr.Progress()) -> str:  # noqa: B008 - Gradio's idiom
        """Run the incremental indexer over the corpus, then serve the result."""
        if not self._updating.acquire(blocking=False):
            return "索引正在更新中，请稍候。"
        try:
            return self._reindex(progress)
        finally:
            self._updating.release()

    # ------------------------------------------------------------ adding and deleting articles

    def add_articles(
        self,
        files: list | None,
        title: str,
        date: str,
        source: str,
        url: str,
        body: str,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's idiom
    ) -> str:
        """Save uploaded files and/or the pasted article into the corpus, then index them."""
        if not self.manage:
            return "此服务器未开放添加文章（仅在本机访问或设置了 --auth 时可用）。"
        try:
            limit = self.searcher.settings.max_file_bytes
            incoming = [incoming_file(f, max_bytes=limit) for f in (files or [])]
            if any((x or "").strip() for x in (title, body, date, source, url)):
                incoming.append(pasted_article(title, body, date=date, source=source, url=url))
        except UploadError as exc:
            return "没有保存：\n" + "\n".join(exc.problems)
        if not self._updating.acquire(blocking=False):
            return "索引正在更新中，请稍候再添加。"
        try:
            known = set(self.searcher.state.doc_index)
            try:
                added = save_articles(self.corpus, incoming, known, max_bytes=limit)
            except UploadError as exc:
                return "没有保存，请修改后重试：\n" + "\n".join(exc.problems)
            message = self._reindex(progress)
        finally:
            self._updating.release()
        names = "\n".join(f"· {a.title}（/articles/{a.id}）" for a in added)
        return f"已添加 {len(added)} 篇文章：\n{names}\n{message}"

    def delete(self, doc_id: str) -> str:
        """Remove one article from the corpus folder and the index; raises ``SmeQaError`` with the reason."""
        if not self.manage:
            raise SmeQaError("此服务器未开放删除文章")
        article = self.searcher.article(doc_id)
        if article is None:
            raise SmeQaError(f"索引中没有编号为 {doc_id!r} 的文章")
        with self._updating:
            delete_article(self.corpus, article)
            message = self._reindex(lambda *a, **k: None)
        return f"已删除《{article.title}》。{message}"

    # ------------------------------------------------------------ answers

    def _options(self, k: object, mode: object, date_from: object, date_to: object) -> dict[str, Any]:
        """Checked options; a bad one is a ``QueryError`` with a Chinese message (UI and API alike).
        An inverted date range, or one without any article, is said so."""
        lo = date_bound(_text(date_from, "起始日期 date_from"), upper=False)
        hi = date_bound(_text(date_to, "截止日期 date_to"), upper=True)
        if lo and hi and lo > hi:
            raise QueryError(f"起始日期 {lo} 晚于截止日期 {hi}：请对调两个日期，或清空其中一个。")
        if lo or hi:
            stats = self.stats()
            if stats.count_between(lo, hi) == 0:
                covered = f"语料的时间范围是 {stats.first} 至 {stats.last}" if stats.first else "语料中的文章都没有日期"
                raise QueryError(f"{lo or '最早'} 至 {hi or '最新'} 之间没有文章（{covered}）：请放宽日期范围。")
        return {"k": check_k(k), "mode": check_mode(mode), "date_from": lo, "date_to": hi}

    def ask(
        self,
        question: str,
        k: int = 5,
        mode: str = "hybrid",
        date_from: str = "",
        date_to: str = "",
        history: list[dict[str, str]] | str | None = None,
        request: gr.Request = None,  # Gradio fills it in; not an API argument
    ) -> dict:
        """Answer ``question`` from the corpus: text with [n] markers, answered flag, citations (absolute links).
        ``history``: the conversation so far (messages, or their JSON), so follow-ups are understood;
        ``request`` is Gradio's (not an API argument): its host makes the links absolute."""
        try:
            options = self._options(k, mode, date_from, date_to)
            question = check_question(question)
            self.refresh()
            answer = self.searcher.ask(question, history=_parse_history(history), **options)
        except QueryError as exc:  # the caller's mistake: one line at INFO, the message to the caller
            log.info("rejected /ask: %s", exc)
            raise gr.Error(str(exc), print_exception=False) from None
        except SmeQaError as exc:  # the server's (index, LLM): its one line, said to the caller too
            log.error("/ask failed: %s", exc)
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception:
            log.exception("/ask failed for %r", question)
            raise gr.Error(INTERNAL, print_exception=False) from None
        return answer_payload(answer, base=public_base(request, self.public_url))

    def respond(
        self, question: str, turns: list, k: float, mode: str, date_from: str, date_to: str, request: gr.Request = None
    ) -> Iterator[tuple[list, Any]]:
        """Stream the answer to ``question`` after the conversation ``turns``; the finished turn is
        stored in the browser (second output) once, at the end."""
        shown = conversation.chat_messages(turns)
        if not question:
            yield shown, gr.skip()
            return
        asked = [*shown, {"role": "user", "content": question}]
        yield [*asked, _assistant(pending_message())], gr.skip()
        options: dict[str, Any] = {"k": k, "mode": mode, "date_from": date_from, "date_to": date_to}
        base = public_base(request, self.public_url)
        try:
            self.refresh()
            options = self._options(k, mode, date_from, date_to)
            # The conversation so far as answer text (not HTML), so follow-ups are understood.
            past = conversation.history(turns)
            final = None
            for final in self.searcher.ask_stream(question, history=past, **options):
                yield [*asked, *map(_assistant, answer_messages(final, final=False))], gr.skip()
            if final is None:
                raise SmeQaError("没有得到回答")
            turn = conversation.new_turn(question, answer_messages(final, final=True), options, final, base=base)
        except QueryError as exc:
            log.info("rejected question: %s", exc)
            turn = conversation.new_turn(question, [error_message(str(exc))], options, error=str(exc))
        except SmeQaError as exc:
            log.error("answering failed: %s", exc)
            turn = conversation.new_turn(question, [error_message(str(exc))], options, error=str(exc))
        except Exception:  # the chat must say something; the log keeps the traceback
            log.exception("answering %r failed", question)
            turn = conversation.new_turn(question, [error_message(INTERNAL)], options, error=INTERNAL)
        stored = conversation.append(turns, turn)
        yield conversation.chat_messages(stored), stored

    def restore(self, turns: list) -> Any:
        """The chat as the browser kept it, 👍/👎 included; nothing kept → the chat is left alone
        (a question asked before this page-load event returns is not wiped)."""
        if not conversation.chat_messages(turns):
            return gr.skip()
        return gr.update(value=conversation.chat_messages(turns), feedback_value=conversation.feedback_values(turns))

    def feedback(self, turns: list, data: gr.LikeData) -> Any:
        """A 👍/👎 on an answer: one line in ``feedback.jsonl`` beside the index; the rating is kept
        with the turn in the browser, so a reload shows it."""
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        rating = "up" if data.liked is True else "down" if data.liked is False else "cleared"
        kept, turn = conversation.rate(turns, int(index), rating)
        if turn is None:
            return gr.skip()
        self.feedback_log.add(turn, rating)
        return kept

    def examples(self, n: int = 4, pool: int = 40) -> list[str]:
        """Example questions from the newest ``pool`` articles (cheap on a large index)."""
        try:
            docs = self.searcher.state.generation.documents
            newest = sorted(docs, key=lambda d: (d.get("date") or "", d["id"]), reverse=True)[:pool]
            articles = [a for a in (self.searcher.article(d["id"]) for d in newest) if a is not None]
            return example_questions(articles, n)
        except SmeQaError as exc:
            log.warning("no example questions: %s", exc)
            return []

    def view(self) -> tuple[str, str, Any]:
        """Status line, header and example questions after the index changed."""
        examples = self.examples()
        return self.status(), self.header(), gr.update(examples=[{"text": q} for q in examples] or None)


def _parse_history(history: list | str | None) -> list | None:
    """The API's ``history``: a list of messages, or that list as a JSON string ("" = none)."""
    if isinstance(history, str):
        if not history.strip():
            return None
        import json

        try:
            return json.loads(history)  # its shape is checked where it is used
        except ValueError as exc:
            raise QueryError(f'history is not JSON ({exc}): pass a list of {{"role", "content"}} messages') from exc
    return history


def _assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}
