"""Article pages: plain server-rendered HTML, every piece of corpus text escaped.

``article_html`` shows one article with an anchor per paragraph (``p1`` …); given
``hl=(start, end)`` — offsets into ``Article.text`` as carried by ``Citation`` — it
highlights the paragraph(s) touched and wraps the cited span in ``<mark>``.  The page
needs nothing from outside: inline CSS and one tiny inline script (scroll the mark
into view), both allowed by a per-response nonce in a strict Content-Security-Policy
(see ``csp``), so even a failure to escape could not run a script.
"""

from __future__ import annotations

import re
import secrets
from html import escape
from urllib.parse import urlsplit

from ..records import Article, Paragraph

__all__ = ["article_html", "csp", "new_nonce", "not_found_html", "page_html", "parse_hl", "safe_url"]

_HL = re.compile(r"^\s*(\d{1,9})\s*-\s*(\d{1,9})\s*$")

_CSS = """
:root { color-scheme: light; --accent: #c2410c; --muted: #6b7280; --line: #e5e7eb; }
* { box-sizing: border-box; }
body { margin: 0; background: #f8fafc; color: #111827; line-height: 1.85;
  font-family: "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "WenQuanYi Micro Hei", system-ui, sans-serif; }
main { max-width: 48rem; margin: 0 auto; padding: 1.5rem 3rem 4rem; background: #fff;
  min-height: 100vh; border-left: 1px solid var(--line); border-right: 1px solid var(--line); }
nav a, .meta a { color: var(--accent); text-decoration: none; }
nav a:hover, .meta a:hover { text-decoration: underline; }
nav { font-size: .9rem; margin-bottom: 1rem; }
h1 { font-size: 1.55rem; line-height: 1.45; margin: .25rem 0 .75rem; }
.meta { color: var(--muted); font-size: .9rem; display: flex; flex-wrap: wrap; gap: .25rem 1.25rem;
  padding-bottom: .9rem; border-bottom: 1px solid var(--line); margin-bottom: 1.25rem; }
.meta .url { word-break: break-all; }
.tags { display: flex; flex-wrap: wrap; gap: .35rem; margin: -.5rem 0 1rem; }
.tags span { font-size: .75rem; background: #f3f4f6; color: #374151; border-radius: 999px; padding: 0 .6rem; }
p { margin: 0 0 1rem; text-indent: 2em; scroll-margin-top: 30vh; white-space: pre-wrap; position: relative; }
p .pn { position: absolute; left: -2.5rem; width: 2rem; text-align: right; text-indent: 0; font-size: .7rem;
  color: #cbd5e1; text-decoration: none; user-select: none; top: .35rem; }
p.hl { background: #fff7ed; box-shadow: -0.6rem 0 0 #fff7ed, 0.6rem 0 0 #fff7ed; border-radius: 4px;
  outline: 2px solid #fdba74; outline-offset: 4px; }
mark { background: #fde047; color: inherit; padding: 0 .1em; border-radius: 2px; }
.notice { color: var(--muted); font-size: .85rem; }
.missing { text-align: center; padding-top: 4rem; }
.missing code { background: #f3f4f6; padding: .1rem .4rem; border-radius: 4px; word-break: break-all; }
nav { display: flex; justify-content: space-between; gap: 1rem; flex-wrap: wrap; }
a.delete { color: #b91c1c; }
.summary, .count, .flash { color: var(--muted); font-size: .9rem; text-indent: 0; }
.flash { background: #ecfdf5; border: 1px solid #a7f3d0; border-radius: 6px; padding: .4rem .8rem; }
form.filter { display: flex; gap: .5rem; flex-wrap: wrap; margin: .5rem 0; }
form.filter input { flex: 1 1 14rem; }
form input, form select, form button { font: inherit; min-height: 44px; padding: .3rem .7rem;
  border: 1px solid #d1d5db; border-radius: 6px; background: #fff; }
form button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
form button.danger { background: #b91c1c; border-color: #b91c1c; }
table.list { width: 100%; border-collapse: collapse; font-size: .92rem; line-height: 1.5; }
table.list th, table.list td { text-align: left; padding: .45rem .4rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
table.list td.date { white-space: nowrap; } table.list td.num { text-align: right; }
table.list a { color: #111827; text-decoration: none; } table.list a:hover { color: var(--accent); }
.pager { display: flex; gap: 1rem; }
.pager a { color: var(--accent); }
@media (max-width: 640px) { main { padding: 1rem 1.1rem 3rem; } p .pn { display: none; }
  table.list th:nth-child(4), table.list td.num { display: none; } }
"""

# Scroll the highlighted sentence into view once the page has laid out.
_SCRIPT = """
(function () {
  var m = document.querySelector("mark") || document.querySelector("p.hl");
  if (!m) return;
  var go = function () { m.scrollIntoView({block: "center"}); };
  if (document.readyState === "complete") { go(); } else { window.addEventListener("load", go); }
})();
"""


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def csp(nonce: str, *, forms: bool = False) -> str:
    """The Content-Security-Policy of a page: only our own nonce'd style and script run;
    ``forms=True`` lets the page's forms submit to this server (the list filter, delete)."""
    form_action = "'self'" if forms else "'none'"
    return (
        "default-src 'none'; "
        f"style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        f"img-src 'self'; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'"
    )


def parse_hl(raw: str | None) -> tuple[int, int] | None:
    """``"12-40"`` → ``(12, 40)``; anything else (missing, malformed, empty span) → None."""
    if not raw:
        return None
    m = _HL.match(raw)
    if not m:
        return None
    start, end = int(m.group(1)), int(m.group(2))
    return (start, end) if end > start else None


def safe_url(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL (never ``javascript:`` and the like), else None."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()


def _paragraph_html(p: Paragraph, hl: tuple[int, int] | None) -> str:
    text = p.text
    hit = hl is not None and hl[0] < p.end and hl[1] > p.start
    if hit:
        assert hl is not None
        a, b = max(hl[0], p.start) - p.start, min(hl[1], p.end) - p.start
        body = escape(text[:a]) + "<mark>" + escape(text[a:b]) + "</mark>" + escape(text[b:])
    else:
        body = escape(text)
    cls = ' class="hl"' if hit else ""
    return f'<p id="p{p.number}"{cls}><a class="pn" href="#p{p.number}" aria-hidden="true">{p.number}</a>{body}</p>'


def _page(title: str, body: str, nonce: str, *, script: bool = False) -> str:
    js = f'<script nonce="{nonce}">{_SCRIPT}</script>' if script else ""
    return (
        '<!doctype html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f'<title>{escape(title)}</title><style nonce="{nonce}">{_CSS}</style></head>'
        f"<body><main>{body}</main>{js}</body></html>\n"
    )


def page_html(title: str, body: str, *, nonce: str) -> str:
    """Any other page (the article list, a confirmation) in the article pages' frame."""
    return _page(title, body, nonce)


def article_html(article: Article, hl: tuple[int, int] | None = None, *, nonce: str, delete_href: str | None = None) -> str:
    """The page of ``article``; ``hl`` (offsets into ``article.text``) is highlighted when valid;
    ``delete_href`` adds a 「删除这篇文章」 link (to a confirmation page)."""
    if hl is not None and not (0 <= hl[0] < hl[1] <= len(article.text)):
        hl = None
    meta = []
    if article.date:
        meta.append(f"<span>日期：{escape(article.date)}</span>")
    if article.source:
        meta.append(f"<span>来源：{escape(article.source)}</span>")
    url = safe_url(article.url)
    if url:
        meta.append(
            f'<span class="url">原文链接：<a href="{escape(url, quote=True)}" rel="noopener noreferrer" '
            f'target="_blank">{escape(url)}</a></span>'
        )
    tags = "".join(f"<span>{escape(t)}</span>" for t in (*article.categories, *article.tags))
    paragraphs = "\n".join(_paragraph_html(p, hl) for p in article.paragraphs)
    body = (
        '<nav><a href="/">← 返回问答</a><a href="/articles">浏览语料</a>'
        + (f'<a class="delete" href="{escape(delete_href, quote=True)}">删除这篇文章…</a>' if delete_href else "")
        + "</nav>"
        f"<article><h1>{escape(article.title)}</h1>"
        f'<div class="meta">{"".join(meta)}</div>' + (f'<div class="tags">{tags}</div>' if tags else "") + f"{paragraphs}</article>"
        '<p class="notice">本页为本地索引中的文章文本（已清洗），原文以原始链接为准。</p>'
    )
    return _page(article.title, body, nonce, script=hl is not None)


def not_found_html(doc_id: str, *, nonce: str) -> str:
    """A friendly 404 page; the requested id is shown escaped."""
    body = (
        '<div class="missing"><h1>找不到这篇文章</h1>'
        f"<p>索引中没有编号为 <code>{escape(doc_id)}</code> 的文章。它可能已被删除，或索引已更新。</p>"
        '<p><a href="/">← 返回问答</a></p></div>'
    )
    return _page("找不到这篇文章", body, nonce)
