"""One server: FastAPI with the article pages, the Gradio chat mounted at ``/``.

``serve()`` is what ``sme-qa serve`` and ``python app.py`` run: bring the index up to
date with the corpus (incremental, a terminal progress bar), load it, build the app and
run uvicorn until interrupted, printing the URL once the socket listens.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from ..errors import CorpusError, IndexLockedError, SmeQaError
from ..progress import Progress, progress_bar
from ..records import article_link
from ..search import Searcher
from ..settings import Settings
from .corpus_page import articles_html
from .headers import SecurityHeaders
from .pages import article_html, csp, new_nonce, not_found_html, page_html, parse_hl

if TYPE_CHECKING:
    from ..indexing import IndexSummary

__all__ = ["ReadyServer", "browser_secret", "create_app", "ensure_index", "parse_auth", "serve"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


# ---------------------------------------------------------------- auth


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    """``"user:password"`` → ``("user", "password")``; None or "" → None."""
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise SmeQaError("--auth / SME_QA_AUTH must look like user:password")
    return user, password


class BasicAuth:
    """HTTP basic auth in front of everything (chat, API, article pages).  Pure ASGI, so SSE streams pass.

    ``gradio_client.Client(url, auth=(user, password))`` logs in by POSTing the form fields
    ``username`` and ``password`` to ``/login``; that request is answered here with a
    session cookie (HttpOnly, SameSite=Strict) which is accepted like the basic header.
    """

    COOKIE = b"sme-qa-session"

    def __init__(self, app: ASGIApp, user: str, password: str) -> None:
        self.app = app
        self._user, self._password = user.encode(), password.encode()
        self._expected = base64.b64encode(f"{user}:{password}".encode())
        self._session = secrets.token_urlsafe(32).encode()  # per process: a restart logs everyone out

    def _ok(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or ())
        scheme, _, value = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"basic" and secrets.compare_digest(value.strip(), self._expected):
            return True
        for part in headers.get(b"cookie", b"").split(b";"):
            name, _, token = part.strip().partition(b"=")
            if name == self.COOKIE and secrets.compare_digest(token, self._session):
                return True
        return False

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket") or self._ok(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["method"] == "POST" and scope["path"] == "/login":
            await self._login(receive, send)
            return
        await _plain(send, 401, "需要登录 (authentication required)", [(b"www-authenticate", b'Basic realm="sme-qa", charset="UTF-8"')])

    async def _login(self, receive: Callable, send: Callable) -> None:
        from urllib.parse import parse_qs

        body = b""
        while len(body) <= 8192:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        form = parse_qs(body.decode("utf-8", "replace")) if len(body) <= 8192 else {}
        user = (form.get("username") or [""])[0].encode()
        password = (form.get("password") or [""])[0].encode()
        if secrets.compare_digest(user, self._user) & secrets.compare_digest(password, self._password):
            cookie = self.COOKIE + b"=" + self._session + b"; HttpOnly; SameSite=Strict; Path=/"
            await _plain(send, 200, "ok", [(b"set-cookie", cookie)])
        else:
            log.info("failed login for user %r", user.decode("utf-8", "replace")[:40])
            await _plain(send, 401, "用户名或密码错误 (invalid credentials)")


async def _plain(send: Callable, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*(headers or []), (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------- the app


def browser_secret(vectors: Path) -> str:
    """The key that encrypts the conversation kept in the browser, stable per index folder
    (``<vectors>/browser-secret``, mode 600), so a conversation outlives a server restart."""
    path = Path(vectors) / "browser-secret"
    try:
        secret = path.read_text(encoding="ascii").strip()
        if len(secret) >= 32:
            return secret
    except (OSError, UnicodeDecodeError):
        pass
    secret = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secret)
    except OSError as exc:  # a read-only index: the conversation then lasts until a restart
        log.warning("cannot keep the browser secret in %s (%s); conversations end with the server", path, exc)
    return secret


_PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _html_page(html: str, nonce: str, status: int = 200, *, forms: bool = False) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": csp(nonce, forms=forms), **_PAGE_HEADERS})


def create_app(
    searcher: Searcher, corpus: Path, *, auth: tuple[str, str] | None = None, manage: bool = False, public_url: str | None = None
) -> FastAPI:
    """The FastAPI app: ``/articles`` (list), ``/articles/{doc_id}``, ``/healthz``, and the Gradio chat at ``/``.

    ``manage=True`` lets the browser add articles (chat side panel) and delete them (article
    page, after a confirmation); ``serve`` turns it on only on loopback or with ``--auth``."""
    # Gradio recomputes a pandas summary of its last 10,000 events after every event (for its
    # monitoring page, unused here): at 24 clients that cost more than the answers themselves.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(10**9))
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "100")
    import gradio as gr

    from .chat import ChatService
    from .layout import build_blocks, i18n
    from .upload import delete_token

    service = ChatService(searcher, corpus, manage=manage, public_url=public_url)
    secret = browser_secret(searcher.settings.vectors)
    # Signs the delete confirmations; its own key (the browser secret is sent to the page).
    delete_key = secrets.token_urlsafe(32)
    app = FastAPI(title="sme-qa", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.mount("/sme-static", StaticFiles(directory=STATIC), name="sme-static")

    @app.get("/articles/", include_in_schema=False)
    def articles_slash() -> RedirectResponse:
        return RedirectResponse("/articles", status_code=308)

    @app.get("/articles", response_class=HTMLResponse)
    def articles(request: Request) -> HTMLResponse:
        service.refresh()
        q = request.query_params
        try:
            page = int(q.get("page") or 1)
        except ValueError:
            page = 1
        nonce = new_nonce()
        body = articles_html(
            searcher.state.generation.documents,
            query=q.get("q") or "",
            sort=q.get("sort") or "new",
            page=page,
            notice=(q.get("deleted") and f"已删除：{q.get('deleted')}") or "",
        )
        return _html_page(page_html("语料中的文章", body, nonce=nonce), nonce, forms=True)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        service.refresh()
        counts = searcher.manifest.get("counts", {})
        return JSONResponse(
            {"status": "ok", "documents": counts.get("documents"), "chunks": counts.get("chunks"), "built": searcher.manifest.get("built")}
        )

    @app.get("/articles/{doc_id:path}", response_class=HTMLResponse)
    def article(doc_id: str, request: Request) -> HTMLResponse:
        # The id is only ever a key into the index's documents, never a path on disk.
        service.refresh()
        nonce = new_nonce()
        found = searcher.article(doc_id)
        if found is None:
            return _html_page(not_found_html(doc_id, nonce=nonce), nonce, 404)
        delete = "/manage/delete" + article_link(doc_id) if manage else None
        return _html_page(article_html(found, parse_hl(request.query_params.get("hl")), nonce=nonce, delete_href=delete), nonce)

    if manage:

        @app.get("/manage/delete/articles/{doc_id:path}", response_class=HTMLResponse)
        def confirm_delete(doc_id: str) -> HTMLResponse:
            nonce = new_nonce()
            found = searcher.article(doc_id)
            if found is None:
                return _html_page(not_found_html(doc_id, nonce=nonce), nonce, 404)
            body = (
                f'<nav><a href="{escape(article_link(doc_id), quote=True)}">← 返回文章</a></nav>'
                f"<h1>删除《{escape(found.title)}》？</h1>"
                "<p>这会从语料文件夹中删除这篇文章（或它在 JSONL 文件中的那一行），并更新索引。此操作无法撤销。</p>"
                f'<form method="post" action="{escape("/manage/delete" + article_link(doc_id), quote=True)}">'
                f'<input type="hidden" name="token" value="{delete_token(delete_key, doc_id)}">'
                '<button type="submit" class="danger" id="confirm-delete">确认删除</button></form>'
            )
            return _html_page(page_html("删除文章", body, nonce=nonce), nonce, forms=True)

        @app.post("/manage/delete/articles/{doc_id:path}", response_model=None)
        async def do_delete(doc_id: str, request: Request) -> HTMLResponse | RedirectResponse:
            form = await request.form()
            token = str(form.get("token") or "")
            nonce = new_nonce()
            if not secrets.compare_digest(token, delete_token(delete_key, doc_id)):
                body = '<div class="missing"><h1>无法删除</h1><p>确认已过期，请从文章页重新操作。</p></div>'
                return _html_page(page_html("无法删除", body, nonce=nonce), nonce, 403)
            try:
                found = searcher.article(doc_id)
                title = found.title if found is not None else doc_id
                await asyncio.to_thread(service.delete, doc_id)
            except SmeQaError as exc:
                body = f'<div class="missing"><h1>无法删除</h1><p>{escape(str(exc))}</p></div>'
                return _html_page(page_html("无法删除", body, nonce=nonce), nonce, 409)
            return RedirectResponse("/articles?" + urlencode({"deleted": title}), status_code=303)

    blocks = build_blocks(service, secret=secret)
    theme = gr.themes.Default(
        primary_hue="orange",
        font=[
            gr.themes.LocalFont("Source Sans Pro"),
            "PingFang SC",
            "Microsoft YaHei",
            "Noto Sans CJK SC",
            "WenQuanYi Micro Hei",
            "sans-serif",
        ],
    )
    app = gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        footer_links=["api"],
        run_history=False,
        theme=theme,
        css_paths=[STATIC / "chat.css"],
        show_error=True,
        ssr_mode=False,
        mcp_server=False,
        i18n=i18n(),
        head='<script src="/sme-static/chat.js" defer></script>',
        max_file_size="10mb",
    )
    if auth is not None:
        app.add_middleware(BasicAuth, user=auth[0], password=auth[1])
    app.add_middleware(SecurityHeaders)  # outermost: the 401 answers get the headers too
    return app


# ---------------------------------------------------------------- running it


def ensure_index(settings: Settings, progress: Progress | None = None) -> IndexSummary | None:
    """Index new or changed articles before serving (fast when nothing changed).

    Returns the indexer's summary, or None when the existing index is served as it is
    (no corpus, or another indexer holds the lock)."""
    from ..indexing import build_index

    manifest = settings.vectors / "manifest.json"
    if not settings.corpus.exists():
        if manifest.exists():
            log.warning("corpus %s not found; serving the existing index in %s", settings.corpus, settings.vectors)
            return None
        raise CorpusError(f"no corpus at {settings.corpus} and no index at {settings.vectors}: pass --corpus DIR")
    try:
        summary = build_index(settings.corpus, settings.vectors, progress=progress, max_file_mb=settings.max_file_mb)
    except IndexLockedError:
        if not manifest.exists():
            raise
        log.warning("another indexer is updating %s; serving the current index meanwhile", settings.vectors)
        return None
    if summary.written:
        log.info(
            "indexed %s: %d articles added, %d changed, %d removed (%d chunks embedded) in %.1f s",
            settings.corpus,
            summary.articles_added,
            summary.articles_changed,
            summary.articles_removed,
            summary.chunks_embedded,
            summary.seconds,
        )
    return summary


class ReadyServer(uvicorn.Server):
    """uvicorn, calling ``on_ready`` once the socket listens; ``url`` is set from then on."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[str], None] | None = None) -> None:
        super().__init__(config)
        self.on_ready = on_ready
        self.url = ""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            sock = self.servers[0].sockets[0]
            host = self.config.host
            shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
            self.url = f"http://{shown}:{sock.getsockname()[1]}/"
            if self.on_ready:
                self.on_ready(self.url)


WARM_QUESTION = "专精特新企业有多少家？"
# An English question builds what only English questions use (the index vocabulary by pinyin, the
# cross-lingual reader's sentence vectors): ~1.3 s of the first English question otherwise.
WARM_QUESTION_EN = "How many enterprises are there?"
WARM_JOIN_SECONDS = 30.0  # at most this long a stopping server waits for the warm-up to end


def _warm(searcher: Searcher) -> None:
    """Answer a generic Chinese and English question now (loads the query embedder and the answer
    tables), so the first real question is answered at full speed.  Runs while Gradio is being imported."""
    try:
        started = time.perf_counter()
        searcher.ask(WARM_QUESTION, llm=False)
        searcher.ask(WARM_QUESTION_EN, llm=False)
        from ..followup import warm

        warm()  # the follow-up tagger
        log.info("warm in %.2f s", time.perf_counter() - started)
    except SmeQaError as exc:
        log.warning("warm-up failed: %s", exc)


def serve(
    corpus: Path | str | None = None,
    vectors: Path | str | None = None,
    host: str | None = None,
    port: int | None = None,
    auth: str | None = None,
    max_file_mb: float | None = None,
) -> None:
    """Index if needed, then serve the chat and article pages until interrupted."""
    # OpenMP threads that busy-wait make a short query embedding take seconds instead of
    # milliseconds on a loaded machine (bench/bench_startup.py); must be set before the engine loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    settings = Settings.load(corpus=corpus, vectors=vectors, host=host, port=port, auth=auth, max_file_mb=max_file_mb)
    credentials = parse_auth(settings.auth)
    if not is_loopback(settings.host) and credentials is None:
        log.warning(
            "serving on %s without authentication: anyone who can reach it can use it (set --auth user:password or SME_QA_AUTH)",
            settings.host,
        )
    sock = _listen(settings.host, settings.port)  # a busy port fails now, before any indexing
    warming: threading.Thread | None = None
    try:
        summary = ensure_index(settings, progress=progress_bar())
        if summary is not None and summary.written:
            sys.stderr.write(
                f"sme-qa: index updated: articles {summary.articles_added} added, "
                f"{summary.articles_changed} changed, {summary.articles_removed} removed; "
                f"chunks {summary.chunks_embedded} embedded, in {summary.seconds:.1f} s\n"
            )
        searcher = Searcher(settings)
        searcher.state  # noqa: B018 - load now, so a broken index fails here, not on the first question
        warming = threading.Thread(target=_warm, args=(searcher,), name="sme-qa-warm", daemon=True)
        warming.start()
        manage = is_loopback(settings.host) or credentials is not None
        app = create_app(searcher, settings.corpus, auth=credentials, manage=manage, public_url=settings.public_url)
        server = ReadyServer(
            uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=2),
            on_ready=_announce,
        )
        server.run(sockets=[sock])  # on Ctrl+C uvicorn shuts down, then raises KeyboardInterrupt
    finally:
        sock.close()
        # A Ctrl+C in the first seconds stops the server while the warm-up is still inside the
        # tokenizer or unpacking the bundled model: an interpreter finalised under it aborts the
        # process ("FATAL: exception not rethrown", exit -6) instead of exiting 0.
        if warming is not None:
            warming.join(timeout=WARM_JOIN_SECONDS)


def _announce(url: str) -> None:
    sys.stdout.write(f"sme-qa: 在浏览器中打开 {url}  (Ctrl+C 停止)\n")
    sys.stdout.flush()


def _listen(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn, so a busy port is one clear error line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise SmeQaError(f"cannot listen on {host}:{port}: {exc.strerror} (another server running? try --port)") from exc
    return sock
