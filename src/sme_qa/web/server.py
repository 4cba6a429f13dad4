"""One server: FastAPI with the article pages, the Gradio chat mounted at ``/``.

``serve()`` is what ``sme-qa serve`` and ``python app.py`` run: bring the index up to
date with the corpus (incremental, a terminal progress bar), load it, build the app and
run uvicorn until interrupted, printing the URL once the socket listens.
"""

from __future__ import annotations

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from ..errors import CorpusError, IndexLockedError, SmeQaError
from ..progress import Progress, progress_bar
from ..search import Searcher
from ..settings import Settings
from .headers import SecurityHeaders
from .pages import article_html, csp, new_nonce, not_found_html, parse_hl

if TYPE_CHECKING:
    from ..indexing import IndexSummary

__all__ = ["ReadyServer", "create_app", "ensure_index", "parse_auth", "serve"]

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


def create_app(searcher: Searcher, corpus: Path, *, auth: tuple[str, str] | None = None) -> FastAPI:
    """The FastAPI app: ``/articles/{doc_id}``, ``/healthz``, and the Gradio chat at ``/``."""
    # Gradio recomputes a pandas summary of its last 10,000 events after every event (for its
    # monitoring page, unused here): at 24 clients that cost more than the answers themselves.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(10**9))
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "100")
    import gradio as gr

    from .chat import ChatService, build_blocks

    service = ChatService(searcher, corpus)
    app = FastAPI(title="sme-qa", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

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
            html, status = not_found_html(doc_id, nonce=nonce), 404
        else:
            html, status = article_html(found, parse_hl(request.query_params.get("hl")), nonce=nonce), 200
        return HTMLResponse(
            html,
            status_code=status,
            headers={
                "Content-Security-Policy": csp(nonce),
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-store",
            },
        )

    blocks = build_blocks(service)
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


def _warm(searcher: Searcher) -> None:
    """Answer one generic question now (loads the query embedder and the answer tables), so the
    first real question is answered at full speed.  Runs while Gradio is being imported."""
    try:
        started = time.perf_counter()
        searcher.ask(WARM_QUESTION, llm=False)
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
        threading.Thread(target=_warm, args=(searcher,), name="sme-qa-warm", daemon=True).start()
        app = create_app(searcher, settings.corpus, auth=credentials)
        server = ReadyServer(
            uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=2),
            on_ready=_announce,
        )
        server.run(sockets=[sock])
    finally:
        sock.close()


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
