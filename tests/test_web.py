"""The web app, served for real: uvicorn on a free port, the real index, gradio_client, raw HTTP.

One server (module scope) over a copy of the sample corpus plus one script-bearing
article; the re-indexing and auth tests start their own, so no test depends on another.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from sme_qa.indexing import build_index
from sme_qa.records import Answer, Citation, Hit
from sme_qa.search import load
from sme_qa.store import index_lock

from evil_article import DOC, EVIL_ID, QUESTION, add_evil_article
from servers import BackgroundServer, ChildServer, free_port

ROOT = Path(__file__).resolve().parent.parent


def serve_app(corpus: Path, vectors: Path, **kwargs):
    from sme_qa.web.server import create_app

    return BackgroundServer(create_app(load(vectors), corpus, **kwargs))


def client(url: str, **kwargs):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False, **kwargs)


@pytest.fixture(scope="module")
def site(tmp_path_factory, sample_index):
    """(url, corpus, vectors): the sample corpus + a script-bearing article, served in a thread."""
    base = tmp_path_factory.mktemp("web")
    corpus, vectors = base / "corpus", base / "vectors"
    shutil.copytree(ROOT / "corpus", corpus)
    shutil.copytree(sample_index, vectors)
    add_evil_article(corpus)
    build_index(corpus, vectors)  # incremental: embeds the one new article
    with serve_app(corpus, vectors) as url:
        yield url, corpus, vectors


@pytest.fixture(scope="module")
def api(site):
    return client(site[0])


def raw_get(url: str, path: str) -> tuple[int, str]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..``)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


# ---------------------------------------------------------------- answers through the API


def check_8997(result: dict) -> None:
    assert result["answered"] is True, result["text"]
    assert "8997" in result["text"]
    cited = [c for c in result["citations"] if c["doc_id"] == DOC]
    assert cited, result["citations"]
    c = cited[0]
    assert re.match(rf"^http://127\.0\.0\.1:\d+/articles/{DOC}\?hl=", c["link"]) and "#p" in c["link"]  # absolute
    assert c["title"] and c["date"] == "2022-09-14" and c["quote"]
    assert set(c) >= {"number", "doc_id", "title", "date", "link", "url", "quote"}


def test_ask_api_with_only_the_question(api):
    check_8997(api.predict(QUESTION, api_name="/ask"))


def test_ask_api_options_and_bad_input(api):
    lexical = api.predict(QUESTION, 3, "lexical", "", "", api_name="/ask")
    assert lexical["answered"] and "8997" in lexical["text"]
    # The only article saying 8997 is from 2022-09-14: a range around it cites it, a range before it
    # cannot, and whatever that answer shows (citations or near misses) lies inside the range.
    around = api.predict(QUESTION, 5, "hybrid", "2022-09-01", "2022-09", api_name="/ask")
    assert around["answered"] and any(c["doc_id"] == DOC for c in around["citations"]), around["text"]
    assert all("2022-09-01" <= c["date"] <= "2022-09-30" for c in around["citations"])
    early = api.predict(QUESTION, 5, "hybrid", "2022-01-01", "2022-06-30", api_name="/ask")
    assert "8997" not in early["text"]
    shown = [c["date"] for c in early["citations"]] + [h["date"] for h in early["near_misses"]]
    assert shown, early  # an answer or near misses from inside the range, not an empty reply
    assert all("2022-01-01" <= d <= "2022-06-30" for d in shown), early
    with pytest.raises(Exception, match="日期格式"):
        api.predict(QUESTION, 5, "hybrid", "not-a-date", "", api_name="/ask")


def test_ask_api_with_history_understands_the_follow_up(api):
    first = api.predict("我国已培育了多少家专精特新“小巨人”企业？", api_name="/ask")
    history = [{"role": "user", "content": "我国已培育了多少家专精特新“小巨人”企业？"}, {"role": "assistant", "content": first["text"]}]
    assert first["understood"] is None
    follow = api.predict("那青岛呢？", history=history, api_name="/ask")
    assert follow["understood"] == "青岛已培育了多少家专精特新“小巨人”企业？"
    as_json = api.predict("那青岛呢？", 5, "hybrid", "", "", json.dumps(history, ensure_ascii=False), api_name="/ask")
    assert as_json["understood"] == follow["understood"]
    alone = api.predict("那青岛呢？", api_name="/ask")
    assert alone["understood"] is None
    with pytest.raises(Exception, match="history"):
        api.predict("那青岛呢？", history=[{"role": "robot", "content": "x"}], api_name="/ask")
    assert follow["answered"] and "97" in follow["text"] and follow["citations"][0]["doc_id"] == "001_9fb318df9e2783e2"


def test_twenty_concurrent_asks(api):
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: api.predict(QUESTION, api_name="/ask"), range(20)))
    assert len(results) == 20
    for result in results:
        check_8997(result)


# ---------------------------------------------------------------- article pages


def test_article_page_anchors_and_highlight(site, api):
    url = site[0]
    searcher = load(site[2])
    article = searcher.article(DOC)
    resp = httpx.get(url + f"articles/{DOC}")
    assert resp.status_code == 200
    html = resp.text
    assert [int(n) for n in re.findall(r'<p id="p(\d+)"', html)] == list(range(1, len(article.paragraphs) + 1))
    assert "<mark>" not in html and "default-src 'none'" in resp.headers["content-security-policy"]

    cite = next(c for c in api.predict(QUESTION, api_name="/ask")["citations"] if c["doc_id"] == DOC)
    html = httpx.get(cite["link"]).text
    marks = re.findall(r"<mark>(.*?)</mark>", html, re.S)
    assert len(marks) == 1 and "8997" in marks[0]
    import html as htmllib

    assert htmllib.unescape(marks[0]) == cite["quote"]
    highlighted = re.findall(r'<p id="p(\d+)" class="hl">', html)
    assert highlighted == [cite["link"].rsplit("#p", 1)[1]]


def test_unknown_article_is_a_friendly_404(site):
    resp = httpx.get(site[0] + "articles/no-such-article")
    assert resp.status_code == 404
    assert "找不到这篇文章" in resp.text and "返回问答" in resp.text


@pytest.mark.parametrize(
    "path",
    [
        "/articles/../../etc/passwd",
        "/articles/%2e%2e/%2e%2e/etc/passwd",
        "/articles/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/articles/..%2F..%2F..%2Fetc%2Fpasswd",
        "/articles//etc/passwd",
        "/articles/../pyproject.toml",
        "/articles/%2e%2e/corpus/000_c01459aaca3a05d0.txt",
    ],
)
def test_path_traversal_never_reads_a_file(site, path):
    status, body = raw_get(site[0], path)
    assert status == 404
    assert "root:" not in body and "[project]" not in body and "headimg" not in body


@pytest.mark.parametrize(
    "path",
    [
        "/gradio_api/file=/etc/passwd",
        f"/gradio_api/file={ROOT}/pyproject.toml",
        "/gradio_api/file=corpus/000_c01459aaca3a05d0.txt",
        "/static/../../pyproject.toml",
        "/assets/../../../pyproject.toml",
    ],
)
def test_gradio_routes_serve_no_files_either(site, path):
    status, body = raw_get(site[0], path)
    assert status in (403, 404)
    assert "root:" not in body and "[project]" not in body and "headimg" not in body


def test_script_bearing_article_is_escaped(site):
    html = httpx.get(site[0] + f"articles/{EVIL_ID}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script>alert" not in html and "<img" not in html and "javascript:" not in html
    # the only script on the page is our own, with the response's nonce
    assert html.count("<script") == 0  # no highlight requested: no script at all


def test_chat_rendering_escapes_corpus_text(site):
    """The chat's message HTML for an answer that cites the script-bearing article."""
    from sme_qa.web.render import answer_messages

    searcher = load(site[2])
    answer = searcher.ask("蓝鲸精密公司的数控系统累计装机量达到多少台？")
    assert answer.answered and any(c.hit.doc_id == EVIL_ID for c in answer.citations), answer.text
    text = "\n".join(answer_messages(answer))
    assert "6123" in text
    assert "<script" not in text and "<img" not in text and "javascript:" not in text
    assert "&lt;script&gt;" in text


# ---------------------------------------------------------------- re-indexing without a restart

NEW = """---
title: 星河精工年产能创新高
author: 测试日报
date: 2023-03-01
---

<p>星河精工是一家专精特新“小巨人”企业。</p>
<p>记者获悉，星河精工的伺服电机年产能已经达到7531台，位居行业前列。</p>
"""
NEW_QUESTION = "星河精工的伺服电机年产能达到多少台？"
LATER = """---
title: 云帆传感完成新一轮融资
date: 2023-04-02
---

<p>云帆传感是一家专精特新中小企业。</p>
<p>云帆传感近日宣布完成新一轮融资，融资金额为4286万元。</p>
"""
LATER_QUESTION = "云帆传感新一轮融资金额是多少万元？"


def test_update_index_from_the_ui_then_cli_rebuild(corpus_copy, index_copy):
    with serve_app(corpus_copy, index_copy) as url:
        api = client(url)
        before = api.predict(NEW_QUESTION, api_name="/ask")
        assert "7531" not in before["text"]
        (corpus_copy / "xinghe.txt").write_text(NEW, encoding="utf-8")

        update = api.submit(api_name="/update_index")
        during = api.predict(QUESTION, api_name="/ask")  # answered meanwhile, from whichever index is live
        check_8997(during)
        message = update.result(timeout=120)
        assert "新增 1 篇" in message, message

        after = api.predict(NEW_QUESTION, api_name="/ask")
        assert after["answered"] and "7531" in after["text"], after["text"]
        assert any(c["doc_id"] == "xinghe" for c in after["citations"])
        assert httpx.get(url + "articles/xinghe").status_code == 200
        assert "语料没有变化" in api.predict(api_name="/update_index")

        # An index rebuilt outside the app (as `sme-qa index` does) is served on the next query.
        (corpus_copy / "yunfan.txt").write_text(LATER, encoding="utf-8")
        build_index(corpus_copy, index_copy)
        later = api.predict(LATER_QUESTION, api_name="/ask")
        assert later["answered"] and "4286" in later["text"], later["text"]


def test_update_index_reports_a_held_lock(corpus_copy, index_copy):
    with serve_app(corpus_copy, index_copy) as url, index_lock(index_copy):
        message = client(url).predict(api_name="/update_index")
    assert "另一个索引进程" in message


# ---------------------------------------------------------------- auth


def test_basic_auth_guards_everything(corpus_copy, index_copy):
    token = base64.b64encode(b"ann:s3cret").decode()
    with serve_app(corpus_copy, index_copy, auth=("ann", "s3cret")) as url:
        for path in ("", f"articles/{DOC}", "gradio_api/info", "healthz"):
            assert httpx.get(url + path).status_code == 401
            assert httpx.get(url + path, auth=("ann", "wrong")).status_code == 401
        assert httpx.get(url + f"articles/{DOC}", auth=("ann", "s3cret")).status_code == 200
        result = client(url, headers={"Authorization": f"Basic {token}"}).predict(QUESTION, api_name="/ask")
        check_8997(result)


# ---------------------------------------------------------------- python app.py


def test_app_py_indexes_then_serves(corpus_copy, index_copy, tmp_path):
    """`python app.py` with a stale index: indexes the new article, prints the URL, answers, stops on Ctrl+C."""
    (corpus_copy / "xinghe.txt").write_text(NEW, encoding="utf-8")
    port = free_port()
    command = [sys.executable, str(ROOT / "app.py"), "--corpus", str(corpus_copy), "--vectors", str(index_copy), "--port", str(port)]
    server = ChildServer(command, port, cwd=tmp_path)
    with server as url:
        health = httpx.get(url + "healthz").json()
        assert health["documents"] == len(list((ROOT / "corpus").glob("*.txt"))) + 1
        app = client(url)
        check_8997(app.predict(QUESTION, api_name="/ask"))
        assert "7531" in app.predict(NEW_QUESTION, api_name="/ask")["text"]
    assert server.code in (0, 130), server.stderr
    assert "sme-qa: index updated: articles 1 added, 0 changed, 0 removed; chunks 1 embedded, in " in server.stderr


def test_busy_port_is_one_clear_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--corpus", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith(f"sme-qa: cannot listen on 127.0.0.1:{port}")


# ---------------------------------------------------------------- pure helpers


def test_parse_hl_and_safe_url():
    from sme_qa.web.pages import parse_hl, safe_url

    assert parse_hl("3-10") == (3, 10)
    assert parse_hl(None) is parse_hl("") is parse_hl("10-3") is parse_hl("a-b") is parse_hl("5-5") is None
    assert safe_url("https://example.com/a?b=1") == "https://example.com/a?b=1"
    for bad in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,x", "//evil", "/local", None):
        assert safe_url(bad) is None


def test_date_bounds():
    from sme_qa.errors import QueryError
    from sme_qa.web.chat import date_bound

    assert date_bound("", upper=False) is None
    assert date_bound("2022", upper=False) == "2022-01-01" and date_bound("2022", upper=True) == "2022-12-31"
    assert date_bound("2022-5", upper=True) == "2022-05-31" and date_bound("2022/05/03", upper=False) == "2022-05-03"
    with pytest.raises(QueryError):
        date_bound("2022-13", upper=False)


def test_auth_parsing_and_loopback(caplog):
    from sme_qa.errors import SmeQaError
    from sme_qa.web.server import is_loopback, parse_auth

    assert parse_auth("a:b:c") == ("a", "b:c") and parse_auth(None) is None
    with pytest.raises(SmeQaError):
        parse_auth("nocolon")
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")


def test_examples_come_from_the_corpus(sample_searcher):
    from sme_qa.web.examples import example_questions

    questions = example_questions(sample_searcher.articles(), 4)
    assert len(questions) == 4 and all(q.endswith("？") for q in questions)
    assert "我国已培育多少家专精特新‘小巨人’企业？" in questions
    text = "\n".join(a.text for a in sample_searcher.articles())
    for q in questions:  # each is a corpus clause with its count replaced by 多少
        head = q.split("多少")[0]
        assert head in text


def test_excerpt_marks_the_quote_and_escapes():
    from sme_qa.web.render import answer_messages, excerpt_html

    text = "前文<b>粗体</b>。我国已培育8997家企业。后文"
    hit = Hit(
        doc_id="a/b",
        chunk_id="a/b:p1",
        text=text,
        score=1.0,
        title="T<i>",
        date="2022-01-01",
        source="S",
        url="javascript:alert(1)",
        link="/articles/a/b#p1",
        paragraphs=(1, 1),
        start=100,
        end=100 + len(text),
    )
    start = 100 + text.index("我国")
    cite = Citation(1, hit, "我国已培育8997家企业。", start, start + 13, f"/articles/a/b?hl={start}-{start + 13}#p1")
    assert excerpt_html(cite) == "前文&lt;b&gt;粗体&lt;/b&gt;。<mark>我国已培育8997家企业。</mark>后文"
    answer_md, cards = answer_messages(Answer("q", "据报道，我国已培育8997家企业。[1]<b>", (cite,)))
    assert answer_md == f"据报道，我国已培育8997家企业。[\\[1\\]]({cite.link})&lt;b&gt;"
    assert "T&lt;i&gt;" in cards and "javascript" not in cards and "查看原文" in cards
    two = Hit(**{**hit.__dict__, "text": "第一段。\n\n第二段<b>。"})
    assert "\n" not in answer_messages(Answer("q", "x", answered=False, near_misses=(two,)))[0].split("</div>\n\n")[-1]
    refusal = answer_messages(Answer("q", "语料中没有找到。\n\n可能相关（并非答案）：\n\n- x", answered=False, near_misses=(hit,)))
    assert len(refusal) == 1 and "未找到可靠答案" in refusal[0] and "可能相关（并非答案）" in refusal[0]
    assert "- x" not in refusal[0]


def test_no_work_at_import(monkeypatch):
    """Importing the web package starts nothing and does not import Gradio."""
    code = "import sys, sme_qa.web, sme_qa.web.pages; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_warm_up_builds_what_the_first_english_question_needs(sample_index):
    """The server's warm-up asks an English question too: the index vocabulary by pinyin (~1.3 s
    of the first English question otherwise) is built before anyone asks."""
    from sme_qa.web.server import _warm

    searcher = load(sample_index)
    assert searcher.state.pinyin is None
    _warm(searcher)
    assert searcher.state.pinyin is not None
