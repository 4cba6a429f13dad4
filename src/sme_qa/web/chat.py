"""The Gradio Blocks chat UI.  It only wires widgets to the library; rendering lives in ``render``.

Endpoints (all named, usable with ``gradio_client``):

* ``/ask`` — ``ask(question, k=5, mode="hybrid", date_from="", date_to="", history=None)`` →
  structured answer; ``history`` is the conversation so far as a JSON list of
  ``{"role": "user"|"assistant", "content": …}`` messages (or a JSON string of one);
* ``/update_index`` — the 「更新索引」 button: incremental ``build_index``, then ``refresh()``;
* ``/index_status`` — one line about the live index.

Before every query the searcher is refreshed (a stat of ``vectors/manifest.json``), so an
index rebuilt by the CLI is served without a restart; while an update runs, queries keep
being answered from the previous index.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from ..errors import IndexLockedError, QueryError, SmeQaError
from ..search import MODES, Searcher
from .examples import example_questions
from .render import (
    answer_messages,
    answer_payload,
    error_message,
    history_messages,
    pending_message,
)

__all__ = ["ChatService", "build_blocks"]

log = logging.getLogger(__name__)

CONCURRENCY = 4  # answers computed at once (chat and API share the limit)
_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?$")
_STAGES = {"embedding": "嵌入新段落", "tokenising": "分词"}
_MODE_LABELS = [("混合检索（推荐）", "hybrid"), ("语义检索", "dense"), ("关键词检索", "lexical")]


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


class ChatService:
    """What the UI calls: answers, the index update and status, over one ``Searcher``."""

    def __init__(self, searcher: Searcher, corpus: Path) -> None:
        self.searcher = searcher
        self.corpus = corpus
        self._refreshing = threading.Lock()
        self._updating = threading.Lock()

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

    def update_index(self, progress: gr.Progress = gr.Progress()) -> str:  # noqa: B008 - Gradio's idiom
        """Run the incremental indexer over the corpus, then serve the result."""
        from ..indexing import build_index

        if not self._updating.acquire(blocking=False):
            return "索引正在更新中，请稍候。"
        try:

            def report(stage: str, done: int, total: int) -> None:
                progress((done, total), desc=_STAGES.get(stage, stage), unit="段")

            progress(0, desc="扫描语料")
            try:
                summary = build_index(
                    self.corpus, self.searcher.settings.vectors, progress=report, max_file_mb=self.searcher.settings.max_file_mb
                )
            except IndexLockedError:
                return "另一个索引进程（例如命令行的 `sme-qa index`）正在更新索引，请稍后再试；问答照常使用当前索引。"
            except SmeQaError as exc:
                return f"更新失败：{exc}"
            except Exception:  # say so in the UI; the log keeps the traceback
                log.exception("updating the index failed")
                return "更新失败：内部错误，详见服务器日志。问答照常使用当前索引。"
            self.refresh()
        finally:
            self._updating.release()
        s = summary
        if not s.written:
            return f"语料没有变化，索引已是最新（{s.articles_unchanged} 篇文章）。"
        return (
            f"索引已更新：新增 {s.articles_added} 篇，修改 {s.articles_changed} 篇，删除 {s.articles_removed} 篇；"
            f"嵌入 {s.chunks_embedded} 个段落，复用 {s.chunks_reused} 个；用时 {s.seconds:.1f} 秒。"
        )

    # ------------------------------------------------------------ answers

    def _options(self, k: object, mode: object, date_from: object, date_to: object) -> dict[str, Any]:
        """Checked options; a bad one is a ``QueryError`` with a Chinese message (UI and API alike)."""
        return {
            "k": check_k(k),
            "mode": check_mode(mode),
            "date_from": date_bound(_text(date_from, "起始日期 date_from"), upper=False),
            "date_to": date_bound(_text(date_to, "截止日期 date_to"), upper=True),
        }

    def ask(
        self,
        question: str,
        k: int = 5,
        mode: str = "hybrid",
        date_from: str = "",
        date_to: str = "",
        history: list[dict[str, str]] | str | None = None,
    ) -> dict:
        """Answer ``question`` from the corpus: text with [n] markers, answered flag, citations.
        ``history``: the conversation so far (messages, or their JSON), so follow-ups are understood."""
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
        return answer_payload(answer)

    def respond(self, question: str, history: list, k: float, mode: str, date_from: str, date_to: str) -> Iterator[list]:
        """Stream the assistant's message for ``question`` onto ``history``."""
        if not question:
            yield history
            return
        yield [*history, _assistant(pending_message())]
        try:
            self.refresh()
            options = self._options(k, mode, date_from, date_to)
            past = history_messages(history)
            if past and past[-1] == {"role": "user", "content": question}:
                past = past[:-1]  # the question itself, just added by _submit
            final = None
            for final in self.searcher.ask_stream(question, history=past, **options):
                yield [*history, *map(_assistant, answer_messages(final, final=False))]
            if final is not None:
                yield [*history, *map(_assistant, answer_messages(final, final=True))]
        except QueryError as exc:
            log.info("rejected question: %s", exc)
            yield [*history, _assistant(error_message(str(exc)))]
        except SmeQaError as exc:
            log.error("answering failed: %s", exc)
            yield [*history, _assistant(error_message(str(exc)))]
        except Exception:  # the chat must say something; the log keeps the traceback
            log.exception("answering %r failed", question)
            yield [*history, _assistant(error_message(INTERNAL))]

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


def _submit(text: str, history: list) -> tuple[str, str, list]:
    question = (text or "").strip()
    if not question:
        return "", "", history
    return "", question, [*history, {"role": "user", "content": question}]


def _pick_example(history: list, evt: gr.SelectData) -> tuple[str, list]:
    value = evt.value if isinstance(evt.value, dict) else {"text": str(evt.value)}
    question = str(value.get("text") or "").strip()
    return question, [*history, {"role": "user", "content": question}]


def build_blocks(service: ChatService) -> gr.Blocks:
    """The chat page: conversation, sources under each answer, settings, index panel."""
    examples = service.examples()
    with gr.Blocks(title="专精特新企业新闻问答", analytics_enabled=False) as demo:
        pending = gr.State("")
        # gr.Markdown, not gr.HTML: Gradio 6 evaluates gr.HTML's value with Function(), which the
        # page's Content-Security-Policy (no 'unsafe-eval', see headers.py) rightly refuses.
        gr.Markdown(
            '<div class="sme-header"><h1>专精特新企业新闻问答</h1>'
            "<p>基于本地新闻语料检索作答，每个结论都标注来源 [n]，点击可查看原文中的对应句子。</p></div>"
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=360):
                chatbot = gr.Chatbot(
                    label="对话",
                    elem_id="sme-chat",
                    height=640,
                    layout="panel",
                    buttons=["copy", "copy_all"],
                    sanitize_html=True,
                    allow_tags=False,
                    render_markdown=True,
                    latex_delimiters=[],
                    feedback_options=None,
                    group_consecutive_messages=True,
                    placeholder="**请提问**：关于专精特新中小企业的政策、数字与案例。下面是从语料中生成的示例问题。",
                    examples=[{"text": q} for q in examples] or None,
                )
                with gr.Row():
                    box = gr.Textbox(
                        placeholder="输入问题，按回车发送，例如：" + (examples[0] if examples else "…"),
                        show_label=False,
                        scale=6,
                        elem_id="sme-question",
                        max_lines=4,
                        autofocus=True,
                    )
                    send = gr.Button("发送", variant="primary", scale=1, min_width=80, elem_id="sme-send")
                    clear = gr.Button("清空对话", scale=1, min_width=80)
            with gr.Column(scale=1, min_width=240):
                with gr.Accordion("检索设置", open=True):
                    k = gr.Slider(1, 10, value=5, step=1, label="引用段落数")
                    mode = gr.Radio(_MODE_LABELS, value="hybrid", label="检索方式")
                    date_from = gr.Textbox(label="起始日期", placeholder="如 2022-01-01，可留空")
                    date_to = gr.Textbox(label="截止日期", placeholder="如 2022-12-31，可留空")
                with gr.Accordion("索引", open=True):
                    status = gr.Markdown(elem_id="sme-status")
                    update = gr.Button("更新索引", elem_id="sme-update")
                    update_result = gr.Textbox(label="更新结果", interactive=False, lines=3, elem_id="sme-update-result")

        settings = [k, mode, date_from, date_to]
        answer_opts: dict[str, Any] = {"concurrency_limit": CONCURRENCY, "concurrency_id": "answer"}
        for trigger in (box.submit, send.click):
            trigger(_submit, [box, chatbot], [box, pending, chatbot], queue=False, api_visibility="private").then(
                service.respond, [pending, chatbot, *settings], chatbot, api_visibility="private", **answer_opts
            )
        chatbot.example_select(_pick_example, chatbot, [pending, chatbot], queue=False, api_visibility="private").then(
            service.respond, [pending, chatbot, *settings], chatbot, api_visibility="private", **answer_opts
        )
        clear.click(list, None, chatbot, queue=False, api_visibility="private")
        update.click(service.update_index, None, update_result, api_name="update_index", concurrency_limit=1).then(
            service.status, None, status, api_visibility="private"
        )
        demo.load(service.status, None, status, api_name="index_status", show_progress="hidden")
        gr.Timer(30).tick(service.status, None, status, show_progress="hidden", api_visibility="private")
        gr.api(service.ask, api_name="ask", **answer_opts)
    return demo
