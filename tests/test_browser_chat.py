"""The chat as a user meets it, in a real Chromium: reading flow, copy, Chinese labels, phone,
history, corpus page, filters, feedback, adding and deleting articles.

One server (module scope, ``manage=True`` as on loopback) over a copy of the sample corpus
and one browser for the module.  Screenshots go to artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from sme_qa.search import load
from test_browser import ROOT, SHOTS, Watch, ask

from evil_article import DOC, QUESTION
from servers import BackgroundServer

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
SECOND = "工信部部长金壮龙在哪个大会上讲话？"
UPLOADED = "---\ntitle: 银杉微电子晶圆扩产\ndate: 2023-02-10\nsource: 测试日报\n---\n\n银杉微电子公司宣布，其晶圆年产量达到4172万片，较上年翻番。\n"
UPLOAD_Q = "银杉微电子公司的晶圆年产量达到多少万片？"
PASTED_BODY = "青松重工公司宣布，其风电塔筒年产量达到5389台，创历史新高。"
PASTED_Q = "青松重工公司的风电塔筒年产量达到多少台？"
# Words allowed to stay Latin on a Chinese page (the API is called that).
LATIN_OK = {"API"}


@pytest.fixture(scope="module")
def site(tmp_path_factory, sample_index):
    from sme_qa.web.server import create_app

    base = tmp_path_factory.mktemp("chat-ui")
    corpus, vectors = base / "corpus", base / "vectors"
    shutil.copytree(ROOT / "corpus", corpus)
    shutil.copytree(sample_index, vectors)
    searcher = load(vectors)
    with BackgroundServer(create_app(searcher, corpus, manage=True)) as url:
        yield url, searcher, base


def open_page(browser, url: str, viewport=DESKTOP):
    context = browser.new_context(viewport=viewport, locale="zh-CN")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url.rstrip("/"))
    page = context.new_page()
    watch = Watch(page, url.rstrip("/"))
    page.goto(url)
    page.locator("#sme-question textarea").wait_for()
    return context, page, watch


def answered(page, n: int, timeout: float = 60_000) -> None:
    """Wait until the chat shows ``n`` finished answers (each ends with its copy button)."""
    page.wait_for_function(f"() => document.querySelectorAll('#sme-chat button.sme-copy').length >= {n}", timeout=timeout)


def uploaded(page, name: str) -> None:
    """Wait until Gradio has stored the file (its download link then points at the server)."""
    page.locator(f"#sme-files a.download-link[download*='{name}']").wait_for(state="attached", timeout=60_000)


def box_of(page, selector: str) -> dict:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return box


def overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["width"] - 1
        and b["x"] < a["x"] + a["width"] - 1
        and a["y"] < b["y"] + b["height"] - 1
        and b["y"] < a["y"] + a["height"] - 1
    )


VISIBLE_TEXT = """() => {
  const out = [];
  const seen = (el) => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) { const n = walk.currentNode; const t = n.textContent.trim();
    if (t && n.parentElement && seen(n.parentElement) && !n.parentElement.closest('#sme-chat .message-content'))
      out.push(t); }
  document.querySelectorAll('[title], [placeholder]').forEach(e => { if (seen(e)) {
    out.push(e.getAttribute('title') || ''); out.push(e.getAttribute('placeholder') || ''); } });
  return out.filter(Boolean);
}"""


def test_reading_flow_copy_export_and_chinese_labels(browser, site):
    """Items 1, 2, 3, 7, 8: scroll to the question, one plain-text copy, Markdown export, no English labels."""
    url, _, _ = site
    context, page, watch = open_page(browser, url)
    ask(page, QUESTION)
    answered(page, 1)
    ask(page, SECOND)
    answered(page, 2)
    page.wait_for_timeout(300)

    # 1. The newest question and the start of its answer are in view (not the bottom of the cards).
    chat = box_of(page, "#sme-chat [role=log]")
    question = page.locator("#sme-chat .message-row.user-row").nth(1).bounding_box()
    start = page.locator("#sme-chat .message-row.bot-row").nth(1).locator("p").first.bounding_box()
    assert question is not None and start is not None
    assert chat["y"] - 2 <= question["y"] and start["y"] + start["height"] <= chat["y"] + chat["height"], (question, chat)
    assert chat["y"] >= 0 and start["y"] + start["height"] <= DESKTOP["height"]
    scrolled = page.evaluate("() => document.querySelector('#sme-chat [role=log]').scrollTop")
    assert scrolled > 0, "the first answer was scrolled past"

    # 2. One copy button per answer; it copies plain text with numbered, absolute references.
    assert page.locator("#sme-chat button.sme-copy").count() == 2
    assert page.locator("#sme-chat .message-row.bot-row").count() == 2, "answer and cards are one message"
    page.locator("#sme-chat button.sme-copy").first.click()
    page.wait_for_function("() => document.querySelector('#sme-chat button.sme-copy').textContent === '已复制'")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert "8997" in copied and "<" not in copied and "](" not in copied and "**" not in copied
    refs = re.findall(r"^\[(\d+)\] (.+)$", copied, re.MULTILINE)
    assert refs and refs[0][0] == "1" and f"{url}articles/{DOC}?hl=" in refs[0][1], copied
    with page.expect_download() as download:
        page.locator("#sme-export").click()
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    assert exported.count("## 问：") == 2 and QUESTION in exported and SECOND in exported
    assert "<div" not in exported and "- [1] " in exported

    # 7. One card per cited paragraph.
    for message in page.locator("#sme-chat .message-row.bot-row").all():
        places = [
            a.get_attribute("href").split("?")[0] + "#" + a.get_attribute("href").split("#")[-1]
            for a in message.locator(".sme-card a.sme-view").all()
        ]
        assert len(places) == len(set(places)), places

    # 8. The settings used are under each answer.
    assert "混合检索 · 5 个段落" in page.locator("#sme-chat .sme-settings").first.inner_text()

    # 3. Every visible label, tooltip and placeholder outside the answers is Chinese (a chosen 👍 too).
    page.locator("#sme-chat button[aria-label='没帮助']").first.click()
    page.locator("#sme-chat button[title='已标记：没帮助']").wait_for()
    page.locator("#sme-chat button[aria-label='有帮助']").first.hover()
    latin = {w for t in page.evaluate(VISIBLE_TEXT) for w in re.findall(r"[A-Za-z]{2,}", t)} - LATIN_OK
    assert not latin, latin
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "chat-reading-flow.png")
    assert not watch.errors and not watch.dialogs and watch.external == []
    context.close()


def test_phone_layout_has_no_overlap(browser, site):
    """Items 4 and 1 at 390 px: nothing overlaps, tap targets ≥ 40 px, cards fit, the question is in view."""
    url, _, _ = site
    context, page, watch = open_page(browser, url, PHONE)
    ask(page, QUESTION)
    answered(page, 1)
    page.wait_for_timeout(300)
    boxes = {s: box_of(page, s) for s in ("#sme-header", "#sme-chat", "#sme-question textarea", "#sme-send", "#sme-export", "#sme-clear")}
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if not (a == "#sme-chat" and b == "#sme-header"):
                assert not overlap(boxes[a], boxes[b]), (a, b, boxes[a], boxes[b])
    assert not overlap(boxes["#sme-header"], boxes["#sme-chat"])
    for selector in (
        "#sme-send",
        "#sme-export",
        "#sme-clear",
        "#sme-chat button.sme-copy",
        "#sme-chat button[aria-label='有帮助']",
        "#sme-chat button[aria-label='没帮助']",
        "#sme-side label:has(input[type=radio])",
    ):
        box = box_of(page, selector)
        assert box["height"] >= 40 and box["width"] >= 40, (selector, box)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    card = box_of(page, "#sme-chat .sme-card")
    assert card["x"] >= 0 and card["x"] + card["width"] <= PHONE["width"]
    question = box_of(page, "#sme-chat .message-row.user-row")
    assert 0 <= question["y"] < PHONE["height"] / 2, question
    page.screenshot(path=SHOTS / "chat-phone.png")
    assert not watch.errors
    context.close()


def test_history_survives_reload_and_the_way_back(browser, site):
    """Item 5, and item 10 (👍 recorded beside the index)."""
    url, searcher, _ = site
    context, page, watch = open_page(browser, url)
    ask(page, QUESTION)
    answered(page, 1)
    feedback = searcher.settings.vectors / "feedback.jsonl"

    def records() -> list[str]:
        return feedback.read_text(encoding="utf-8").splitlines() if feedback.exists() else []

    before = len(records())
    page.locator("#sme-chat button[aria-label='有帮助']").first.click()
    for _ in range(100):
        if len(records()) > before:
            break
        page.wait_for_timeout(100)
    assert len(records()) == before + 1
    record = json.loads(records()[-1])
    assert record["rating"] == "up" and record["question"] == QUESTION and "8997" in record["answer"]
    assert record["citations"][0]["doc_id"] == DOC and record["settings"]["mode"] == "hybrid"

    page.wait_for_timeout(300)  # the rating is stored with the turn in the browser too
    page.reload()
    answered(page, 1)
    assert page.locator("#sme-chat .message-row.user-row").count() == 1
    page.locator("#sme-chat button[title='已标记：有帮助']").wait_for(timeout=5_000)
    page.locator("#sme-chat a.sme-view").first.evaluate("a => a.removeAttribute('target')")
    page.locator("#sme-chat a.sme-view").first.click()
    page.wait_for_url(re.compile(r"/articles/"))
    page.locator("nav a", has_text="返回问答").click()
    answered(page, 1)
    assert QUESTION in page.locator("#sme-chat .message-row.user-row").first.inner_text()
    page.screenshot(path=SHOTS / "chat-restored.png")

    page.locator("#sme-clear").click()
    page.wait_for_function("() => !document.querySelector('#sme-chat button.sme-copy')")
    page.wait_for_timeout(300)
    page.reload()
    page.locator("#sme-chat button.example").first.wait_for()
    assert page.locator("#sme-chat .message-row").count() == 0
    assert not watch.errors
    context.close()


QINGDAO_DOC = "001_9fb318df9e2783e2"  # 「青岛解锁“专精特新”企业培育密码」: 97 家国家级「小巨人」


def test_follow_up_after_a_reload_is_understood(browser, site):
    """Issue #9 through #12's kept conversation: ask about the country, reload (the chat is redrawn
    from browser storage), then 「那青岛呢？」: the history sent to ``ask`` is the kept one, the
    answer says how it understood the follow-up and cites 青岛's 97 「小巨人」."""
    url, _, _ = site
    context, page, watch = open_page(browser, url)
    ask(page, QUESTION)
    answered(page, 1)
    page.wait_for_timeout(300)  # the finished turn is written to browser storage
    page.reload()
    answered(page, 1)
    ask(page, "那青岛呢？")
    answered(page, 2)
    bot = page.locator("#sme-chat .message-row.bot-row").nth(1)
    assert bot.locator(".sme-understood").inner_text() == "按“青岛已培育了多少家专精特新“小巨人”企业？”理解"
    assert page.locator("#sme-chat .sme-understood").count() == 1, "the first question was not rewritten"
    page.screenshot(path=SHOTS / "chat-follow-up-after-reload.png")
    assert not watch.errors and not watch.dialogs and watch.external == []
    answer = bot.inner_text()
    cites_qingdao = bot.locator(f'a.sme-view[href*="/articles/{QINGDAO_DOC}"]').count() >= 1
    context.close()
    assert "97" in answer and cites_qingdao


def test_corpus_page_and_filter_feedback(browser, site):
    """Items 6 and 8: the header states the corpus, /articles lists and filters it; bad date ranges say so."""
    url, searcher, _ = site
    docs = searcher.state.generation.documents
    dates = sorted(d["date"] for d in docs if d.get("date"))
    context, page, watch = open_page(browser, url)
    header = page.locator("#sme-header").inner_text()
    assert f"共 {len(docs)} 篇文章" in header and f"{dates[0]} 至 {dates[-1]}" in header

    page.locator("#sme-from input, #sme-from textarea").fill("2023-01-01")
    page.locator("#sme-to input, #sme-to textarea").fill("2022-01-01")
    ask(page, QUESTION)
    answered(page, 1)
    assert "晚于截止日期" in page.locator("#sme-chat .sme-error").last.inner_text()
    page.locator("#sme-from input, #sme-from textarea").fill("2030")
    page.locator("#sme-to input, #sme-to textarea").fill("")
    ask(page, QUESTION)
    answered(page, 2)
    assert "之间没有文章" in page.locator("#sme-chat .sme-error").last.inner_text()
    page.locator("#sme-from input, #sme-from textarea").fill(dates[0][:4])
    ask(page, QUESTION)
    answered(page, 3)
    assert f"{dates[0][:4]}-01-01 至 不限" in page.locator("#sme-chat .sme-settings").last.inner_text()

    with context.expect_page() as opened:
        page.locator("#sme-browse").click()
    listing = opened.value
    listing.wait_for_load_state()
    rows = listing.locator("table.list tbody tr")
    assert rows.count() == len(docs)
    shown = [listing.locator("table.list tbody tr td.date").nth(i).inner_text() for i in range(rows.count())]
    assert shown == sorted(shown, reverse=True)
    listing.select_option("select[name=sort]", "old")
    listing.locator("form.filter button").click()
    listing.wait_for_url(re.compile("sort=old"))
    shown = [listing.locator("table.list tbody tr td.date").nth(i).inner_text() for i in range(rows.count())]
    assert shown == sorted(shown)
    title = next(d["title"] for d in docs if d["id"] == DOC)
    listing.locator("input[name=q]").fill("海尔")
    listing.locator("form.filter button").click()
    listing.wait_for_url(re.compile("q="))
    assert rows.count() == sum("海尔" in d["title"] for d in docs) >= 1
    assert title in listing.locator("table.list").inner_text()
    listing.screenshot(path=SHOTS / "corpus-page.png", full_page=True)
    page.screenshot(path=SHOTS / "chat-filter-feedback.png")
    assert not watch.errors
    context.close()


def test_add_articles_then_ask_then_delete(browser, site):
    """Item 12: upload a file (with a hostile name) and paste an article, ask about each, delete one."""
    url, searcher, base = site
    corpus = base / "corpus"
    before = {p for p in base.rglob("*") if p.is_file()}
    context, page, watch = open_page(browser, url)
    page.locator("#sme-add").get_by_text("添加文章").first.click()
    result = page.locator("#sme-update-result textarea")
    # A file the loader rejects: one line saying why, nothing written.
    page.locator("#sme-files input[type=file]").set_input_files(files=[{"name": "空白.txt", "mimeType": "text/plain", "buffer": b"  \n"}])
    uploaded(page, "空白")
    page.locator("#sme-add-go").click()
    page.wait_for_function("() => /没有保存/.test(document.querySelector('#sme-update-result textarea').value)")
    assert "空白.txt：empty file" in result.input_value(), result.input_value()
    assert {p for p in base.rglob("*") if p.is_file()} == before
    page.locator("#sme-files button[aria-label='清除']").click()  # the user removes the bad file
    page.wait_for_function("() => !/空白/.test(document.querySelector('#sme-files').innerText)")
    page.locator("#sme-files input[type=file]").set_input_files(
        files=[{"name": "../../../escape-me.md", "mimeType": "text/markdown", "buffer": UPLOADED.encode()}]
    )
    uploaded(page, "escape-me")
    page.locator("#sme-add-go").click()
    page.wait_for_function("() => /已添加|失败/.test(document.querySelector('#sme-update-result textarea').value)", timeout=60_000)
    assert "已添加 1 篇" in result.input_value() and "索引已更新" in result.input_value(), result.input_value()

    assert page.locator("#sme-files").get_by_text("escape-me").count() == 0, "a saved upload is cleared"
    page.locator("#sme-new-title textarea, #sme-new-title input").fill("青松重工订单创新高")
    page.locator("#sme-new-date textarea, #sme-new-date input").fill("2023-03-01")
    page.locator("#sme-new-source textarea, #sme-new-source input").fill("测试日报")
    page.locator("#sme-new-body textarea").fill(PASTED_BODY)
    page.locator("#sme-add").screenshot(path=SHOTS / "add-article-form.png")
    page.locator("#sme-add-go").click()
    page.wait_for_function("() => /青松重工/.test(document.querySelector('#sme-update-result textarea').value)", timeout=60_000)
    assert "已添加" in result.input_value() and "索引已更新" in result.input_value(), result.input_value()

    added = sorted(p for p in {p for p in base.rglob("*") if p.is_file()} - before if "vectors" not in p.parts)
    assert [p.parent for p in added] == [corpus / "uploads"] * 2, added
    assert all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}\.md", p.name) for p in added)
    pasted = next(p for p in added if "青松重工" in p.read_text(encoding="utf-8"))
    assert not list(base.parent.rglob("escape-me*")), "the user's file name never becomes a path"

    ask(page, UPLOAD_Q)
    answered(page, 1)
    ask(page, PASTED_Q)
    answered(page, 2)
    bots = page.locator("#sme-chat .message-row.bot-row")
    assert "4172" in bots.nth(0).inner_text() and "5389" in bots.nth(1).inner_text()
    page.screenshot(path=SHOTS / "chat-added-articles.png")

    # Delete the pasted article from its page, after a confirmation.
    link = bots.nth(1).locator("a.sme-view").first
    with context.expect_page() as opened:
        link.click()
    article = opened.value
    article.wait_for_load_state()
    article.locator("a.delete").click()
    article.locator("#confirm-delete").wait_for()
    article.screenshot(path=SHOTS / "article-delete-confirm.png")
    article.locator("#confirm-delete").click()
    article.wait_for_url(re.compile(r"/articles\?deleted="))
    assert "已删除" in article.locator(".flash").inner_text()
    assert not pasted.exists() and next(p for p in added if p != pasted).exists()
    after = searcher.ask(PASTED_Q)
    assert "5389" not in after.text and all(c.hit.doc_id != "uploads/" + pasted.stem for c in after.citations)
    assert not watch.errors
    context.close()
