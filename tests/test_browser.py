"""The chat in a real Chromium (Debian's /usr/bin/chromium, driven by Playwright's Python API).

Screenshots go to artifacts/screenshots/ for people to look at.  Skipped when Chromium
is missing, unless SME_QA_REQUIRE_BROWSER=1 (then that is a failure).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sme_qa.indexing import build_index
from sme_qa.search import load

from evil_article import DOC, EVIL_ID, MD_ID, MD_QUESTION, QUESTION, add_evil_article, add_markdown_article
from servers import BackgroundServer

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "artifacts" / "screenshots"
EVIL_QUESTION = "蓝鲸精密公司的数控系统累计装机量达到多少台？"


class Trap:
    """An HTTP server on 127.0.0.1 that records every request: nothing in the chat may reach it."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.hits: list[str] = []
        trap = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                trap.hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def trap():
    t = Trap()
    yield t
    t.server.shutdown()


@pytest.fixture(scope="module")
def site(tmp_path_factory, sample_index, trap):
    from sme_qa.web.server import create_app

    base = tmp_path_factory.mktemp("browser")
    corpus, vectors = base / "corpus", base / "vectors"
    shutil.copytree(ROOT / "corpus", corpus)
    shutil.copytree(sample_index, vectors)
    add_evil_article(corpus)
    add_markdown_article(corpus, trap.url)
    build_index(corpus, vectors)
    searcher = load(vectors)
    with BackgroundServer(create_app(searcher, corpus)) as url:
        yield url, searcher


class Watch:
    """Everything a page did that it should not: dialogs, page errors, requests leaving the server."""

    def __init__(self, page, origin: str) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.console: list[str] = []
        self.external: list[str] = []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.console.append(m.text))
        # a Content-Security-Policy violation is reported on the console: the policy broke something
        page.on("console", lambda m: self.errors.append(m.text) if "Content Security Policy" in m.text else None)
        page.on("request", lambda r: None if r.url.startswith((origin, "data:", "blob:")) else self.external.append(r.url))


def new_page(browser, url: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    return context, page, Watch(page, url.rstrip("/"))


def ask(page, question: str) -> None:
    box = page.locator("#sme-question textarea")
    box.fill(question)
    box.press("Enter")


def in_viewport(page, locator) -> bool:
    box = locator.bounding_box()
    view = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= view["height"]


def test_answer_link_opens_highlighted_sentence(browser, site):
    url, searcher = site
    quote = next(c.quote for c in searcher.ask(QUESTION).citations if c.hit.doc_id == DOC)
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page, watch = new_page(browser, url)
    page.goto(url)
    page.locator("#sme-question textarea").wait_for()
    assert page.locator(".sme-header h1").inner_text() == "专精特新企业新闻问答"  # rendered under the CSP
    page.screenshot(path=SHOTS / "chat-empty.png")
    ask(page, QUESTION)

    link = page.locator(f'#sme-chat a[href*="/articles/{DOC}"]', has_text="[1]").first
    link.wait_for(timeout=30_000)
    page.locator("#sme-chat .sme-card").first.wait_for()
    bot = page.locator("#sme-chat .bot").first.inner_text()
    assert "8997" in bot
    assert "查看原文" in page.locator("#sme-chat .sme-sources").inner_text()
    assert page.locator("#sme-chat .sme-card mark").first.inner_text() == quote
    page.screenshot(path=SHOTS / "chat-answer.png")

    with context.expect_page() as opened:
        link.click()
    article = opened.value
    article.wait_for_load_state("load")
    article.wait_for_function(
        "() => { const m = document.querySelector('mark'); if (!m) return false;"
        " const r = m.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }"
    )
    assert f"/articles/{DOC}" in article.url and "hl=" in article.url
    mark = article.locator("mark")
    assert mark.count() == 1 and mark.inner_text() == quote
    paragraph = article.locator("p.hl")
    assert paragraph.count() == 1 and "8997" in paragraph.inner_text()
    assert in_viewport(article, paragraph) or in_viewport(article, mark)
    assert in_viewport(article, mark)
    article.screenshot(path=SHOTS / "article-highlight.png")
    assert not watch.dialogs and not watch.errors
    assert watch.external == [], "nothing may come from a CDN"
    context.close()


def test_example_then_refusal_keeps_history(browser, site):
    url, _ = site
    context, page, watch = new_page(browser, url)
    page.goto(url)
    example = page.locator("#sme-chat button.example", has_text="我国已培育多少家")
    example.click()  # examples are drawn from the corpus; clicking one asks it
    page.locator("#sme-chat .sme-card").first.wait_for(timeout=30_000)
    ask(page, "火星上第一座城市的市长叫什么名字？")
    refusal = page.locator("#sme-chat .sme-refusal")
    refusal.wait_for(timeout=30_000)
    assert "未找到可靠答案" in refusal.inner_text()
    near = page.locator("#sme-chat .sme-near")
    near.wait_for()
    assert "可能相关（并非答案）" in near.inner_text() and near.locator("a").count() >= 1
    assert page.locator("#sme-chat .sme-card").count() >= 1, "the first answer stays in the history"
    assert page.locator("#sme-chat .user").count() == 2
    page.screenshot(path=SHOTS / "chat-refusal.png")
    assert watch.external == [] and not watch.dialogs
    context.close()


def test_script_bearing_article_runs_nothing(browser, site):
    url, _ = site
    context, page, watch = new_page(browser, url)
    page.goto(url)
    ask(page, EVIL_QUESTION)
    page.locator(f'#sme-chat a[href*="/articles/{EVIL_ID}"]').first.wait_for(timeout=30_000)
    page.locator("#sme-chat .sme-card").first.wait_for()
    chat_text = page.locator("#sme-chat").inner_text()
    assert "6123" in chat_text
    assert "<script>alert(1)</script>" in chat_text  # shown as text
    assert page.locator("#sme-chat script, #sme-chat img[onerror], #sme-chat img[src='x']").count() == 0
    page.screenshot(path=SHOTS / "chat-script-article.png")

    article = context.new_page()
    article.on("dialog", lambda d: (watch.dialogs.append(d.message), d.dismiss()))
    article.on("pageerror", lambda e: watch.errors.append(str(e)))
    article.on("console", lambda m: watch.console.append(m.text))
    article.goto(url + f"articles/{EVIL_ID}")
    body = article.locator("body").inner_text()
    assert "<script>alert(1)</script>" in body and "<img src=x onerror=alert(1)>" in body
    assert article.locator("main script, main img").count() == 0
    article.screenshot(path=SHOTS / "article-script.png")
    article.wait_for_timeout(300)
    assert watch.dialogs == [] and watch.errors == []
    assert not any(c.strip() == "1" for c in watch.console)
    context.close()


def test_markdown_in_article_metadata_renders_as_text(browser, site, trap):
    """Links and images in a title, publisher or body: shown as text, nothing fetched, only our links live."""
    url, searcher = site
    answer = searcher.ask(MD_QUESTION)
    assert answer.answered and any(c.hit.doc_id == MD_ID for c in answer.citations), answer.text
    context, page, watch = new_page(browser, url)
    page.goto(url)
    ask(page, MD_QUESTION)
    page.locator(f'#sme-chat a[href*="/articles/{MD_ID}"]').first.wait_for(timeout=30_000)
    page.locator("#sme-chat .sme-card").first.wait_for()
    page.wait_for_timeout(500)  # time for any image to be requested
    chat = page.locator("#sme-chat")
    text = chat.inner_text()
    assert "4.6" in text and "[官方通知]" in text and f"{trap.url}/phish" in text  # the title, as text
    hrefs = chat.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert hrefs and all(h.startswith("/articles/") for h in hrefs), hrefs
    assert chat.locator("img").count() == 0
    page.screenshot(path=SHOTS / "chat-markdown-title.png")
    assert trap.hits == [], trap.hits
    assert watch.external == [] and not watch.errors and not watch.dialogs
    context.close()


def test_follow_up_is_understood_from_the_conversation(browser, site):
    """Ask about the whole country, then 「那青岛呢？」: the chat passes its history, shows how it
    understood the follow-up, and the answer cites 青岛's 97 「小巨人」."""
    url, _ = site
    context, page, watch = new_page(browser, url)
    page.goto(url)
    page.locator("#sme-question textarea").wait_for()
    ask(page, "我国已培育了多少家专精特新“小巨人”企业？")
    page.locator("#sme-chat .sme-card").first.wait_for(timeout=30_000)
    ask(page, "那青岛呢？")
    understood = page.locator("#sme-chat .sme-understood")
    understood.wait_for(timeout=30_000)
    assert understood.inner_text() == "按“青岛已培育了多少家专精特新“小巨人”企业？”理解"
    page.locator("#sme-chat .sme-sources").nth(1).wait_for(timeout=30_000)
    answer = page.locator("#sme-chat .bot").filter(has=page.locator(".sme-understood")).inner_text()
    assert page.locator("#sme-chat .sme-understood").count() == 1, "the first question was not rewritten"
    page.screenshot(path=SHOTS / "chat-follow-up.png")
    assert watch.external == [] and not watch.dialogs and not watch.errors
    cites_qingdao = page.locator('#sme-chat a[href*="/articles/001_9fb318df9e2783e2"]').count() >= 1
    context.close()
    assert "97" in answer and cites_qingdao
