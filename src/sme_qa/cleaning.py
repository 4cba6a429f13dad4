"""Article body (HTML, Markdown or plain text) → clean paragraphs.  Pure: no I/O.

``clean_body`` parses HTML with beautifulsoup4 (``html.parser``) when the body
contains markup and treats it as Markdown / plain text otherwise.  Paragraph
boundaries are block elements (``<p>``, ``<div>``, headings, list items …),
``<br><br>``, blank lines in text outside paragraph elements (Markdown mixed into
HTML) and Markdown headings.  Chinese pages and .txt files often put one paragraph
on a line, so a single ``<br>`` or newline after 。！？；… or before an ideographic
indent (「　　」) is a boundary too.  Any other single ``<br>`` or newline is a soft
break: it disappears next to CJK text and becomes a space elsewhere.  Entities are decoded (twice if they were
double-escaped), Markdown links become their text, images go.

Boilerplate is recognised by general patterns, never by site:

* dropped elements: script, style, noscript, template, nav, iframe, images and
  media, forms, inputs and buttons, HTML comments (and so what is inside them);
* anywhere, a whole paragraph that is only: an app / QR-code promotion (a short
  paragraph with 尽在…APP, 扫码, 扫描二维码, 下载…客户端, 关注…公众号); a 责任编辑
  credit; widget text (举报/反馈, 分享到, 打印, 关闭); navigation (返回…, 返回首页,
  上一篇, 下一篇, 回到顶部); a bare URL; leaked CSS rules (``.cls{…}``, ``&#123;``);
  nothing but punctuation;
* at the end only (the run after the last real paragraph): credit lines (编辑：,
  来源：, 校对：, （文章来源：…）), disclaimers (…声明：, 不构成投资建议), 相关阅读
  headers, paragraphs that are nothing but links, 原文链接：…, and （完）.
  「（文章来源：X）」 goes: it is metadata, not article text; X is kept as
  ``CleanBody.source`` so the loader can use it when the front matter names no
  source.  A bare URL in that trailing run (``<http://…>``, a lone URL line or
  「原文链接：URL」) is the original page: it becomes ``CleanBody.url``.
  The same lines in the middle of an article (a 记者：/来源： byline) stay.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from bs4 import BeautifulSoup, Tag
from bs4.element import Comment, Declaration, Doctype, NavigableString, ProcessingInstruction

__all__ = ["CLEANER_VERSION", "CleanBody", "clean_body", "looks_like_html"]

# Bump when a change here (or in how corpus.py builds an Article from the clean body) can
# change an article's text: the next `sme-qa index` re-reads every file and re-embeds the
# chunks whose text changed (indexing.pipeline_versions, recorded in the manifest).
CLEANER_VERSION = 1

_SEP = "\x1e"  # paragraph boundary marker (control characters are removed from input first)
_BR = "\x1f"  # one <br>
_LINK_OPEN, _LINK_CLOSE = "\x02", "\x03"  # around link text, to tell link-only paragraphs
_LINK_TEXT_RE = re.compile("\x02[^\x02\x03]*\x03")

_DROP = frozenset(
    "script style noscript template nav iframe frame frameset object embed applet img picture "
    "svg math video audio source track canvas map area form button input select option textarea "
    "label fieldset meta link base title".split()
)
_BLOCK = frozenset(
    "p div section article main header footer aside address blockquote center pre h1 h2 h3 h4 h5 h6 "
    "ul ol li dl dt dd table thead tbody tfoot tr td th caption figure figcaption hr body html "
    "details summary hgroup".split()
)
# Inside these, blank lines in text are HTML white space, not Markdown paragraph breaks.
_PARA_LIKE = frozenset("p h1 h2 h3 h4 h5 h6 li dt dd td th pre caption figcaption summary".split())
_DATE_META = frozenset({"article:published_time", "og:published_time", "pubdate", "publishdate", "date", "datepublished"})
_HTML_RE = re.compile(
    r"<(?:/?(?:p|div|br|span|a|h[1-6]|ul|ol|li|table|tr|td|th|section|article|strong|em|b|i|u|img|"
    r"script|style|html|body|head|meta|font|center|blockquote|pre|iframe|noscript|form|button|"
    r"figure|figcaption|hr|sup|sub|small|header|footer|main|nav|aside|dl|dt|dd)\b[^>]*|!--|!doctype\b)",
    re.I,
)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_AUTOLINK_RE = re.compile(r"<((?:https?|ftp)://[^\s<>]+)>", re.I)
_MD_IMAGE_RE = re.compile(r"!\[[^\]\n]*\]\([^)\n]*\)")
_MD_LINK_RE = re.compile(r"\[([^\]\n]*)\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"\n]*\")?\)")
_MD_EMPH_RE = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_MD_BLOCK_LINE_RE = re.compile(r"^[ \t]{0,3}(#{1,6}[ \t]+|>[ \t]?|[-*+][ \t]+|\d{1,3}[.)][ \t]+)")
_MD_MARKER_RE = re.compile(r"^[ \t]{0,3}(#{1,6}[ \t]+|>[ \t]?|[-*+][ \t]+)")  # stripped; numbers stay
_BR_PAIR_RE = re.compile("\x1f[\\s\x1f]*\x1f")
_BR_AFTER_END_RE = re.compile("([。！？；…][”’」』》）】]*)[ \t\n]*\x1f")
_BR_BEFORE_INDENT_RE = re.compile("\x1f(?=[ \t\n]*\u3000)")
_CJK_LINE_END_RE = re.compile(r"[。！？；…][”’」』》）】]*[ \t]*$")
_MD_HEADING_RE = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+")
_MD_H1_RE = re.compile(r"^\s*#[ \t]+(\S.*)$")
_MD_RULE_RE = re.compile(r"^[ \t]{0,3}([-*_])([ \t]*\1){2,}[ \t]*$")
_ENTITY_RE = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z]{2,8});")
_CSS_RULE_RE = re.compile(r"[#.@]?[A-Za-z_][A-Za-z0-9_\-#.:>\s,\[\]=\"'()*]*\{[^{}]*:[^{}]*\}")
_URL_RE = re.compile(r"^[<(（]?((?:https?:)?//[^\s<>()（）]+)[>)）]?$", re.I)
_CJK = r"\u2e80-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef\u201c\u201d\u2018\u2019\u2026\u2014"

_PROMO_RE = re.compile(
    r"尽在.{0,20}(?:APP|app|App|客户端)|扫码|扫描.{0,10}二维码|扫一扫|长按.{0,10}(?:识别|扫描)"
    r"|下载.{0,15}(?:APP|app|App|客户端)|关注.{0,12}(?:公众号|微信号|官方微博|视频号)"
)
_PROMO_MAX = 60  # a longer paragraph mentioning an app is news, not a promotion
_EDITOR_RE = re.compile(r"^[(（【\[]?\s*(?:责任编辑|责编|值班编辑)\s*[:：]")
_WIDGET_RE = re.compile(
    r"^(?:举报|反馈|纠错|我要纠错|分享|分享到|点赞|收藏|评论|打印|关闭|关闭窗口|打印本页|字号|大|中|小"
    r"|[\[【]?(?:打印|关闭|收藏|举报)[\]】]?)$"
)
_NAV_RE = re.compile(
    r"^[\[【]?(?:返回[^。！？，,]{0,15}|回到顶部|返回顶部|上一篇|下一篇|上一页|下一页|首页|更多|分享到)[\]】]?"
    r"(?:[:：].{0,80})?$"
)
_NAV_SPLIT_RE = re.compile(r"[｜|·•/]|\s{2,}")
_CREDIT_RE = re.compile(
    r"^[(（【\[]?\s*(?:文章|稿件|信息|新闻|内容)?(?:来源|出处|编辑|主编|校对|审核|审校|审签|监制|作者|记者|通讯员"
    r"|撰文|文字|文|图|图片|摄影|摄|出品|策划|统筹|制作|排版|美编|终审|初审|复审|稿源)\s*[:：]\s*(.{0,40}?)\s*[)）】\]]?$"
)
_ORIGINAL_LINK_RE = re.compile(r"^(?:原文链接|原文地址|原文|阅读原文|来源链接|本文链接)\s*[:：]?\s*(\S+)$")
_DISCLAIMER_RE = re.compile(
    r"^[\u4e00-\u9fff]{0,6}声明[:：]|不构成(?:任何)?投资建议|转载请注明|版权归.{0,12}所有|未经.{0,12}(?:授权|许可)"
    r"|仅代表作者(?:个人)?观点|^[【\[]?(?:相关|推荐|延伸|热门|更多)(?:阅读|新闻|文章|推荐|报道)[】\]]?[:：]?$"
)
_THE_END_RE = re.compile(r"^[(（【\[]?\s*(?:完|全文完|end|END|The End)\s*[)）】\]]?$")
_SOURCE_LABELS = ("来源", "出处", "稿源")


@dataclass(frozen=True)
class CleanBody:
    """Clean paragraphs of one body and what was learnt from its markup."""

    paragraphs: list[str]
    url: str | None = None  # the original page, from a bare trailing link
    title: str | None = None  # <title>, first <h1> or a leading Markdown "# " heading
    date: str | None = None  # raw date from a <meta> publication tag, unparsed
    source: str | None = None  # from a trailing 「（文章来源：X）」 credit


def looks_like_html(body: str) -> bool:
    """True when ``body`` contains HTML tags or comments (plain text may contain a stray ``<``)."""
    return _HTML_RE.search(body) is not None


def clean_body(body: str) -> CleanBody:
    """Turn one article body into clean paragraphs, a trailing original-page URL and metadata."""
    body = _CONTROL_RE.sub("", body.replace("\r\n", "\n").replace("\r", "\n"))
    body = _AUTOLINK_RE.sub(r"\n\n\1\n\n", body)
    title = date = None
    if looks_like_html(body):
        raw, title, date = _html_blocks(body)
    else:
        raw = _markdown_blocks(body)
        first = next((r for r in raw if r.strip()), "")
        heading = _MD_H1_RE.match(first.strip())
        title = heading.group(1) if heading else None
    paragraphs = [p for p in (_finish(r) for r in raw) if p[0]]
    kept, url, source = _drop_boilerplate(paragraphs)
    if title is not None:
        title = _fold(title) or None
    return CleanBody(kept, url=url, title=title, date=date, source=source)


# --- structure -------------------------------------------------------------------------


def _html_blocks(body: str) -> tuple[list[str], str | None, str | None]:
    soup = BeautifulSoup(body, "html.parser")
    found: dict[str, str] = {}  # title, h1, date
    pieces: list[str] = []
    # Iterative walk (deeply nested pages must not hit the recursion limit).
    stack: list[tuple[object, bool]] = [(soup, False)]
    while stack:
        node, in_para = stack.pop()
        if isinstance(node, str) and not isinstance(node, NavigableString):
            pieces.append(node)  # a boundary marker pushed below
            continue
        if isinstance(node, (Comment, Declaration, Doctype, ProcessingInstruction)):
            continue
        if isinstance(node, NavigableString):
            text = str(node)
            pieces.append(text if in_para else _blank_lines_to_breaks(text))
            continue
        if not isinstance(node, Tag):
            continue
        name = (node.name or "").lower()
        if name in ("title", "h1") and name not in found:
            found[name] = node.get_text(" ", strip=True)
        elif name == "meta" and "date" not in found:
            key = str(node.get("name") or node.get("property") or node.get("itemprop") or "").lower()
            if key in _DATE_META and node.get("content"):
                found["date"] = str(node.get("content")).strip()
        if name in _DROP:
            continue
        if name == "br":
            pieces.append(_BR)
            continue
        if name == "a":
            pieces.append(_LINK_OPEN)
            stack.append((_LINK_CLOSE, in_para))
        child_in_para = in_para or name in _PARA_LIKE
        if name in _BLOCK:
            pieces.append(_SEP)
            stack.append((_SEP, in_para))
        stack.extend((child, child_in_para) for child in reversed(node.contents))
    # <br><br> ends a paragraph; so does one <br> after a Chinese sentence end or before an indent.
    text = _BR_PAIR_RE.sub(_SEP, "".join(pieces))
    if _BR in text:
        text = _BR_BEFORE_INDENT_RE.sub(_SEP, _BR_AFTER_END_RE.sub(r"\1" + _SEP, text))
    # An article's <h1> is its title; <title> often carries the site name as well.
    return text.split(_SEP), found.get("h1") or found.get("title") or None, found.get("date")


def _blank_lines_to_breaks(text: str) -> str:
    """Block structure in text: blank lines end paragraphs; headings, rules and list items are blocks."""
    if "\n" not in text:
        return text
    lines = text.split("\n")
    out = [lines[0]]
    after_heading = bool(_MD_HEADING_RE.match(lines[0]))
    for line in lines[1:]:
        if not line.strip():
            out.append(_SEP)
            continue
        starts_block = after_heading or _MD_BLOCK_LINE_RE.match(line) or _MD_RULE_RE.match(line)
        # Chinese plain text often has one paragraph a line: a line after a sentence end, or
        # one indented with ideographic spaces, starts a paragraph.
        starts_block = starts_block or line.startswith("\u3000") or _CJK_LINE_END_RE.search(out[-1])
        out.append((_SEP if starts_block else "\n") + line)
        after_heading = bool(_MD_HEADING_RE.match(line) or _MD_RULE_RE.match(line))
    return "".join(out)


def _markdown_blocks(body: str) -> list[str]:
    return _blank_lines_to_breaks(body).split(_SEP)


# --- one paragraph ---------------------------------------------------------------------


def _finish(raw: str) -> tuple[str, bool]:
    """Markdown inline syntax out, entities decoded, white space folded, CSS leaks removed.

    Also tells whether the paragraph is nothing but link text (navigation, related articles).
    """
    text = raw.replace(_BR, "\n")
    if _MD_RULE_RE.match(text.strip()):
        return "", False
    text = _MD_MARKER_RE.sub("", text.lstrip("\n"), count=1)
    text = _MD_IMAGE_RE.sub("", text)
    text = _MD_LINK_RE.sub(_LINK_OPEN + r"\1" + _LINK_CLOSE, text)
    link_only = False
    if _LINK_OPEN in text or _LINK_CLOSE in text:
        link_only = not any(c.isalnum() for c in _LINK_TEXT_RE.sub("", text))
        text = text.replace(_LINK_OPEN, "").replace(_LINK_CLOSE, "")
    text = _MD_EMPH_RE.sub(r"\2", text)
    if "&" in text and _ENTITY_RE.search(text):
        text = html.unescape(text)  # entities left in text by double escaping
    if "{" in text and "}" in text:
        text = _CSS_RULE_RE.sub(" ", text)
    return _fold(text), link_only


_FOLD_RE = re.compile(r"[\s\u3000\xa0]+")
_INVISIBLE_RE = re.compile(r"[\u200b-\u200d\u2060\ufeff\xad]")
_CJK_CHAR_RE = re.compile(f"[{_CJK}]")


def _fold(text: str) -> str:
    """Fold white space: a line break next to CJK text disappears, other runs become one space."""

    def repl(m: re.Match[str]) -> str:
        run = m.group(0)
        start, end = m.start(), m.end()
        if start == 0 or end == len(m.string):
            return ""
        if "\n" in run and (_CJK_CHAR_RE.match(m.string[start - 1]) or _CJK_CHAR_RE.match(m.string[end])):
            return ""
        return " "

    return _FOLD_RE.sub(repl, _INVISIBLE_RE.sub("", text))


# --- boilerplate -----------------------------------------------------------------------


def _is_noise(p: str) -> bool:
    """Paragraphs that are boilerplate wherever they stand."""
    if not any(ch.isalnum() for ch in p):
        return True
    if _URL_RE.match(p) or _EDITOR_RE.match(p):
        return True
    if len(p) <= _PROMO_MAX and _PROMO_RE.search(p):
        return True
    segments = [s.strip() for s in _NAV_SPLIT_RE.split(p) if s.strip()]
    return bool(segments) and all(_NAV_RE.match(s) or _WIDGET_RE.match(s) for s in segments)


def _drop_boilerplate(
    paragraphs: list[tuple[str, bool]],
) -> tuple[list[str], str | None, str | None]:
    url: str | None = None
    source: str | None = None
    end = len(paragraphs)
    # The trailing run: credits, navigation, related links, promotions and the original page's link.
    while end > 0:
        p, link_only = paragraphs[end - 1]
        link = _URL_RE.match(p) or _ORIGINAL_LINK_RE.match(p)
        credit = _CREDIT_RE.match(p)
        if link and _URL_RE.match(link.group(1)):
            if url is None:
                url = _URL_RE.match(link.group(1)).group(1)  # type: ignore[union-attr]
        elif credit:
            label = p.lstrip("(（【[ ").split("：")[0].split(":")[0]
            if source is None and credit.group(1) and any(label.endswith(s) for s in _SOURCE_LABELS):
                source = credit.group(1).strip() or None
        elif not (link_only or _THE_END_RE.match(p) or _DISCLAIMER_RE.search(p) or _is_noise(p)):
            break
        end -= 1
    kept = [p for p, _ in paragraphs[:end] if not _is_noise(p)]
    if url is not None and url.startswith("//"):
        url = "http:" + url
    return kept, url, source
