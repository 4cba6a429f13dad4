"""The chat page's widgets and their wiring to ``ChatService`` (``build_blocks``), and the
Chinese labels Gradio has no text for (``i18n``).  No logic of its own: what each event does is
a ``ChatService`` method."""

from __future__ import annotations

from typing import Any

import gradio as gr

from .chat import ChatService

__all__ = ["build_blocks", "i18n"]

CONCURRENCY = 4  # answers computed at once (chat and API share the limit)
_MODE_LABELS = [("混合检索（推荐）", "hybrid"), ("语义检索", "dense"), ("关键词检索", "lexical")]


def _submit(text: str, shown: list) -> tuple[str, str, list]:
    """Clear the box and show the question at once (the answer is computed in the queue)."""
    question = (text or "").strip()
    return "", question, [*shown, {"role": "user", "content": question}] if question else shown


def _pick_example(shown: list, evt: gr.SelectData) -> tuple[str, list]:
    value = evt.value if isinstance(evt.value, dict) else {"text": str(evt.value)}
    question = str(value.get("text") or "").strip()
    return question, [*shown, {"role": "user", "content": question}]


# Gradio's own labels that its zh-CN file leaves in English (chatbot buttons and the like).
I18N = {
    "chatbot.like": "有帮助",
    "chatbot.dislike": "没帮助",
    "chatbot.copy_message": "复制",
    "chatbot.copied_message": "已复制",
    "chatbot.clear": "清空",
    "chatbot.retry": "重试",
    "chatbot.undo": "撤销",
    "chatbot.edit": "编辑",
    "chatbot.submit": "提交",
    "chatbot.cancel": "取消",
    "chatbot.complete": "完成",
    "chat_interface.chatbot": "对话",
    "chat_interface.conversation": "对话",
    # Gradio's zh-CN has no text for these two; its status line (read by screen readers) showed the keys.
    "common.complete": "已完成",
    "status.queue_position": "排队中：第 {position} 位，共 {size} 位",
}


def i18n() -> gr.I18n:
    return gr.I18n(**{"zh-CN": I18N, "zh": I18N})


def build_blocks(service: ChatService, *, secret: str | None = None) -> gr.Blocks:
    """The chat page: conversation, sources under each answer, settings, index panel.

    ``secret`` encrypts the conversation kept in the browser; a stable one (the server
    keeps it beside the index) lets the conversation outlive a server restart."""
    examples = service.examples()
    with gr.Blocks(title="专精特新企业新闻问答", analytics_enabled=False) as demo:
        pending = gr.State("")
        turns = gr.BrowserState([], storage_key="sme-qa-conversation", secret=secret)
        # gr.Markdown, not gr.HTML: Gradio 6 evaluates gr.HTML's value with Function(), which the
        # page's Content-Security-Policy (no 'unsafe-eval', see headers.py) rightly refuses.
        header = gr.Markdown(service.header(), elem_id="sme-header")
        with gr.Row(equal_height=False, elem_id="sme-main"):
            with gr.Column(scale=4, min_width=320):
                chatbot = gr.Chatbot(
                    label="对话",
                    show_label=False,
                    elem_id="sme-chat",
                    height=640,
                    layout="panel",
                    buttons=[],
                    autoscroll=False,
                    sanitize_html=True,
                    allow_tags=False,
                    render_markdown=True,
                    latex_delimiters=[],
                    feedback_options=("Like", "Dislike"),
                    group_consecutive_messages=True,
                    placeholder="**请提问**：关于专精特新中小企业的政策、数字与案例。下面是从语料中生成的示例问题。",
                    examples=[{"text": q} for q in examples] or None,
                )
                with gr.Row(elem_id="sme-ask"):
                    box = gr.Textbox(
                        label="问题",
                        placeholder="输入问题，按回车发送",
                        show_label=False,
                        scale=6,
                        min_width=200,
                        elem_id="sme-question",
                        max_lines=4,
                        autofocus=True,
                    )
                    send = gr.Button("发送", variant="primary", scale=1, min_width=72, elem_id="sme-send")
                with gr.Row(elem_id="sme-actions"):
                    gr.Button("导出对话", size="sm", min_width=72, elem_id="sme-export")
                    clear = gr.Button("清空对话", size="sm", min_width=72, elem_id="sme-clear")
            with gr.Column(scale=1, min_width=240, elem_id="sme-side"):
                with gr.Accordion("检索设置", open=True):
                    k = gr.Slider(1, 10, value=5, step=1, label="引用段落数")
                    mode = gr.Radio(_MODE_LABELS, value="hybrid", label="检索方式")
                    date_from = gr.Textbox(label="起始日期", placeholder="如 2022-01-01，可留空", elem_id="sme-from")
                    date_to = gr.Textbox(label="截止日期", placeholder="如 2022-12-31，可留空", elem_id="sme-to")
                with gr.Accordion("索引", open=True):
                    status = gr.Markdown(elem_id="sme-status")
                    update = gr.Button("更新索引", elem_id="sme-update")
                    update_result = gr.Textbox(label="更新结果", interactive=False, lines=3, elem_id="sme-update-result")
                if service.manage:
                    with gr.Accordion("添加文章", open=False, elem_id="sme-add"):
                        files = gr.File(
                            label="上传文件（.md .txt .html .jsonl）",
                            file_count="multiple",
                            file_types=[".md", ".markdown", ".txt", ".html", ".htm", ".jsonl"],
                            elem_id="sme-files",
                        )
                        title = gr.Textbox(label="标题", elem_id="sme-new-title")
                        date = gr.Textbox(label="日期", placeholder="如 2023-03-01", elem_id="sme-new-date")
                        source = gr.Textbox(label="来源", elem_id="sme-new-source")
                        url = gr.Textbox(label="原文链接", placeholder="https://…", elem_id="sme-new-url")
                        body = gr.Textbox(label="正文", lines=6, elem_id="sme-new-body")
                        add = gr.Button("保存并索引", variant="primary", elem_id="sme-add-go")

        settings = [k, mode, date_from, date_to]
        answer_opts: dict[str, Any] = {"concurrency_limit": CONCURRENCY, "concurrency_id": "answer"}
        private: dict[str, Any] = {"api_visibility": "private"}
        for trigger in (box.submit, send.click):
            trigger(_submit, [box, chatbot], [box, pending, chatbot], queue=False, **private).then(
                service.respond, [pending, turns, *settings], [chatbot, turns], **private, **answer_opts
            )
        chatbot.example_select(_pick_example, chatbot, [pending, chatbot], queue=False, **private).then(
            service.respond, [pending, turns, *settings], [chatbot, turns], **private, **answer_opts
        )
        chatbot.like(service.feedback, turns, turns, queue=False, **private)
        clear.click(lambda: (gr.update(value=[], feedback_value=[]), []), None, [chatbot, turns], queue=False, **private)
        chatbot.clear(list, None, turns, queue=False, **private)
        # 「导出对话」 is handled in static/chat.js (no Gradio js= event: that would need eval under a CSP).
        view = [status, header, chatbot]
        update.click(lambda: "", None, update_result, queue=False, **private).then(
            service.update_index, None, update_result, api_name="update_index", concurrency_limit=1, concurrency_id="index"
        ).then(service.view, None, view, **private)
        if service.manage:
            form = [files, title, date, source, url, body]

            def add_and_clear(
                files: list | None,
                title: str,
                date: str,
                source: str,
                url: str,
                body: str,
                progress: gr.Progress = gr.Progress(),  # noqa: B008 - Gradio's idiom
            ) -> tuple:
                message = service.add_articles(files, title, date, source, url, body, progress=progress)
                saved = message.startswith("已添加")
                return (message, *([None, "", "", "", "", ""] if saved else [gr.skip()] * len(form)))

            add.click(lambda: "", None, update_result, queue=False, **private).then(
                add_and_clear, form, [update_result, *form], concurrency_limit=1, concurrency_id="index", **private
            ).then(service.view, None, view, **private)
        demo.load(service.status, None, status, api_name="index_status", show_progress="hidden")
        demo.load(service.restore, turns, chatbot, show_progress="hidden", queue=False, **private)
        gr.Timer(30).tick(service.status, None, status, show_progress="hidden", **private)
        gr.api(service.ask, api_name="ask", **answer_opts)
    return demo
