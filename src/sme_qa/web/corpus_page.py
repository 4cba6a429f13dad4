"""What the corpus covers: the chat header's summary line and the ``/articles`` list page.

Works on the index's document records (dicts with ``id``, ``title``, ``date``, ``source``,
``paragraphs``), so nothing is read from disk; every piece of corpus text is escaped.
The list is filtered and sorted on the server (a GET form), so the page needs no script.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import urlencode

from ..records import article_link

__all__ = ["CorpusStats", "articles_html", "corpus_stats", "header_html", "stats_line"]

PAGE_SIZE = 100
SORTS = {"new": "日期从新到旧", "old": "日期从旧到新", "title": "按标题"}


@dataclass(frozen=True)
class CorpusStats:
    articles: int
    sources: tuple[tuple[str, int], ...]  # (source, article count), most articles first
    dates: tuple[str, ...]  # every known ISO date, sorted
    undated: int

    @property
    def first(self) -> str | None:
        return self.dates[0] if self.dates else None

    @property
    def last(self) -> str | None:
        return self.dates[-1] if self.dates else None

    def count_between(self, date_from: str | None, date_to: str | None) -> int:
        """Articles dated within [date_from, date_to] (ISO bounds; None = open)."""
        lo = bisect.bisect_left(self.dates, date_from) if date_from else 0
        hi = bisect.bisect_right(self.dates, date_to) if date_to else len(self.dates)
        return max(0, hi - lo)


def corpus_stats(documents: Sequence[dict[str, Any]]) -> CorpusStats:
    sources = Counter(str(d.get("source")) for d in documents if d.get("source"))
    dates = sorted(str(d["date"]) for d in documents if d.get("date"))
    return CorpusStats(len(documents), tuple(sources.most_common()), tuple(dates), len(documents) - len(dates))


def stats_line(stats: CorpusStats, *, max_sources: int = 3) -> str:
    """``共 5 篇文章，来源：中国经济网、新华社等 4 家，时间 2022-05-12 至 2023-01-05`` (plain text)."""
    parts = [f"共 {stats.articles} 篇文章"]
    if stats.sources:
        names = "、".join(name for name, _ in stats.sources[:max_sources])
        more = f"等 {len(stats.sources)} 家" if len(stats.sources) > max_sources else ""
        parts.append(f"来源：{names}{more}")
    if stats.first:
        parts.append(f"时间 {stats.first} 至 {stats.last}")
    return "，".join(parts)


def header_html(stats: CorpusStats) -> str:
    return (
        '<div class="sme-header"><h1>专精特新企业新闻问答</h1>'
        "<p>基于本地新闻语料检索作答，每个结论都标注来源 [n]，点击可查看原文中的对应句子。</p>"
        f'<p class="sme-corpus">{escape(stats_line(stats))} · '
        '<a href="/articles" target="_blank" rel="noopener" id="sme-browse">浏览语料</a></p></div>'
    )


def _matches(doc: dict[str, Any], needle: str) -> bool:
    hay = " ".join(str(doc.get(k) or "") for k in ("title", "source", "id", "date")).casefold()
    return all(word in hay for word in needle.casefold().split())


def _sorted(docs: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    if sort == "title":
        return sorted(docs, key=lambda d: (str(d.get("title") or ""), d["id"]))
    dated = sorted((d for d in docs if d.get("date")), key=lambda d: (d["date"], d["id"]), reverse=sort != "old")
    return dated + [d for d in docs if not d.get("date")]  # undated last either way


def articles_html(documents: Sequence[dict[str, Any]], *, query: str = "", sort: str = "new", page: int = 1, notice: str = "") -> str:
    """The body of ``/articles``: summary, filter form, one table row per matching article."""
    stats = corpus_stats(documents)
    sort = sort if sort in SORTS else "new"
    query = query.strip()[:200]
    docs = _sorted([d for d in documents if not query or _matches(d, query)], sort)
    pages = max(1, -(-len(docs) // PAGE_SIZE))
    page = min(max(1, page), pages)
    shown = docs[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    rows = "".join(
        f'<tr><td><a href="{escape(article_link(d["id"]), quote=True)}">{escape(str(d.get("title") or d["id"]))}</a></td>'
        f'<td class="date">{escape(str(d.get("date") or "—"))}</td><td>{escape(str(d.get("source") or "—"))}</td>'
        f'<td class="num">{len(d.get("paragraphs") or ())}</td></tr>'
        for d in shown
    )
    options = "".join(f'<option value="{key}"{" selected" if key == sort else ""}>{label}</option>' for key, label in SORTS.items())
    found = f"找到 {len(docs)} 篇" if query else f"共 {len(docs)} 篇"

    def page_link(n: int, label: str) -> str:
        return f'<a href="/articles?{escape(urlencode({"q": query, "sort": sort, "page": n}), quote=True)}">{label}</a>'

    nav = []
    if page > 1:
        nav.append(page_link(page - 1, "← 上一页"))
    if pages > 1:
        nav.append(f"<span>第 {page} / {pages} 页</span>")
    if page < pages:
        nav.append(page_link(page + 1, "下一页 →"))
    return (
        '<nav><a href="/">← 返回问答</a></nav><h1>语料中的文章</h1>'
        + (f'<p class="flash">{escape(notice)}</p>' if notice else "")
        + f'<p class="summary">{escape(stats_line(stats, max_sources=8))}</p>'
        '<form class="filter" method="get" action="/articles" role="search">'
        f'<input type="search" name="q" value="{escape(query, quote=True)}" placeholder="按标题、来源或日期筛选" '
        'aria-label="筛选文章">'
        f'<select name="sort" aria-label="排序">{options}</select><button type="submit">筛选</button></form>'
        f'<p class="count">{found}</p>'
        '<table class="list"><thead><tr><th>标题</th><th>日期</th><th>来源</th><th>段落</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>" + (f'<p class="pager">{" ".join(nav)}</p>' if nav else "")
    )
