"""Security headers on every response the app sends (chat, Gradio API, assets, article pages).

Gradio's page needs its own inline scripts (the config it embeds, a loader) and inline
styles (Svelte, the theme).  Rather than allow every inline script, the HTML of each
Gradio page is given a fresh nonce on each of its ``<script>`` tags and the policy
allows only scripts from this origin or with that nonce.  Styles may be inline (Gradio
injects them at run time); nothing may come from another origin, and no page may be
framed.  A response that already carries a policy (the article pages, with their own
nonce) keeps it; the other headers are added to all.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["SecurityHeaders", "app_csp"]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]

COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
]
# Anything that is not an HTML page (JSON, event streams, scripts, fonts, images).
NON_HTML_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
MAX_HTML = 4 * 2**20  # a Gradio page is ~50 kB; anything bigger passes without a nonce rewrite
_SCRIPT_TAG = re.compile(rb"<script(?![^>]*\bnonce=)")


def app_csp(nonce: str | None) -> str:
    """The policy of a Gradio page: scripts from here or with ``nonce``, inline styles, nothing foreign."""
    scripts = f"'self' 'nonce-{nonce}'" if nonce else "'self'"
    return (
        f"default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self' data:; media-src 'self' blob:; connect-src 'self'; "
        "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )


class SecurityHeaders:
    """Pure ASGI middleware (event streams pass through unbuffered); only HTML bodies are rewritten."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = {}
        request = dict(scope.get("headers") or ())
        if b"text/html" in request.get(b"accept", b""):  # a page: its body must stay rewritable
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]}

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-frame-options"]
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in COMMON if k not in names]
                kind = {k.lower(): v for k, v in headers}.get(b"content-type", b"")
                if b"content-security-policy" in names:
                    pass
                elif kind.startswith(b"text/html") and b"content-encoding" not in names:
                    state["start"] = {**message, "headers": headers}  # held until the body is known
                    state["body"] = b""
                    return
                else:
                    headers.append((b"content-security-policy", NON_HTML_CSP))
                await send({**message, "headers": headers})
                return
            if message["type"] == "http.response.body" and "start" in state:
                state["body"] += message.get("body", b"")
                if message.get("more_body") and len(state["body"]) <= MAX_HTML:
                    return
                await self._send_html(state.pop("start"), state.pop("body"), message.get("more_body", False), send)
                return
            await send(message)

        await self.app(scope, receive, wrapped)

    @staticmethod
    async def _send_html(start: dict[str, Any], body: bytes, more: bool, send: Callable) -> None:
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        if more:  # too big to rewrite: same-origin scripts only, inline ones blocked
            headers.append((b"content-security-policy", app_csp(None).encode()))
        else:
            nonce = secrets.token_urlsafe(16)
            body = _SCRIPT_TAG.sub(f'<script nonce="{nonce}"'.encode(), body)
            headers += [(b"content-security-policy", app_csp(nonce).encode()), (b"content-length", str(len(body)).encode())]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": more})
