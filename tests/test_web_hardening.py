"""The web app's hard edges: security headers on every route, API argument errors, login for
``gradio_client``, and article text that must reach the chat as text.  A real server on 127.0.0.1."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest

from sme_qa.records import Answer, Citation, Hit
from sme_qa.search import load

from servers import BackgroundServer

ROOT = Path(__file__).resolve().parent.parent
DOC = "000_c01459aaca3a05d0"
QUESTION = "我国已培育了多少家专精特新“小巨人”企业？"


def serve_app(corpus: Path, vectors: Path, **kwargs):
    from sme_qa.web.server import create_app

    return BackgroundServer(create_app(load(vectors), corpus, **kwargs))


def client(url: str, **kwargs):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False, **kwargs)


@pytest.fixture(scope="module")
def site(tmp_path_factory, sample_index):
    base = tmp_path_factory.mktemp("hard")
    shutil.copytree(sample_index, base / "vectors")
    with serve_app(ROOT / "corpus", base / "vectors") as url:
        yield url


@pytest.fixture(scope="module")
def api(site):
    return client(site)


# ---------------------------------------------------------------- headers


def _csp(headers) -> dict[str, str]:
    return {d.split()[0]: d for d in (p.strip() for p in headers["content-security-policy"].split(";")) if d}


@pytest.mark.parametrize("path", ["", "config", "gradio_api/info", f"articles/{DOC}", "articles/nope", "healthz", "manifest.json"])
def test_security_headers_on_every_route(site, path):
    resp = httpx.get(site + path)
    assert resp.status_code in (200, 404), resp.status_code
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "no-referrer"
    assert resp.headers["x-frame-options"] == "DENY"
    policy = _csp(resp.headers)
    assert policy["frame-ancestors"] == "frame-ancestors 'none'"
    assert "'unsafe-inline'" not in policy.get("script-src", "") and "'unsafe-eval'" not in policy.get("script-src", "")
    assert "*" not in resp.headers["content-security-policy"]


def test_chat_page_scripts_carry_the_nonce_of_its_policy(site):
    first, second = httpx.get(site), httpx.get(site)
    nonce = re.search(r"'nonce-([^']+)'", first.headers["content-security-policy"]).group(1)
    assert nonce not in second.headers["content-security-policy"]  # fresh per response
    tags = re.findall(r"<script\b[^>]*>", first.text)
    assert len(tags) >= 3 and all(f'nonce="{nonce}"' in t for t in tags)
    assert int(first.headers["content-length"]) == len(first.content)
    assert _csp(first.headers)["script-src"] == f"script-src 'self' 'nonce-{nonce}'"


# ---------------------------------------------------------------- API arguments


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("abc",), "引用段落数 k 必须是 1 到 20 之间的整数"),
        ((0,), "引用段落数 k"),
        ((2.5,), "引用段落数 k"),
        ((5, "fuzzy"), "未知的检索方式 mode"),
        ((5, 3), "未知的检索方式 mode"),
        ((5, "hybrid", 12), "起始日期 date_from 必须是文本"),
        ((5, "hybrid", "", ["2022"]), "截止日期 date_to 必须是文本"),
        ((5, "hybrid", "2022-02-30x"), "日期格式不对"),
    ],
)
def test_api_argument_errors_are_clear_chinese_lines(api, args, said, caplog, capfd):
    from gradio_client.exceptions import AppError

    caplog.set_level("INFO", logger="sme_qa")
    with pytest.raises(AppError) as err:
        api.predict(QUESTION, *args, api_name="/ask")
    message = str(err.value)
    assert said in message
    for leak in ("invalid literal", "attribute", "Traceback", "Error:", "int()", "NoneType"):
        assert leak not in message
    rejected = [r for r in caplog.records if r.getMessage().startswith("rejected /ask")]
    assert len(rejected) == 1 and rejected[0].levelname == "INFO" and rejected[0].exc_info is None
    assert said in rejected[0].getMessage()
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize(("question", "said"), [(5, "问题 question 必须是文本"), ("   ", "问题是空的")])
def test_api_question_errors(api, question, said):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=said):
        api.predict(question, api_name="/ask")


def test_good_arguments_in_their_other_forms(api):
    assert api.predict(QUESTION, "3", "lexical", None, "2023", api_name="/ask")["answered"]


# ---------------------------------------------------------------- auth


def test_gradio_client_logs_in_with_auth(sample_index, tmp_path):
    from gradio_client.exceptions import AuthenticationError

    shutil.copytree(sample_index, tmp_path / "vectors")
    with serve_app(ROOT / "corpus", tmp_path / "vectors", auth=("ann", "s3cret")) as url:
        result = client(url, auth=("ann", "s3cret")).predict(QUESTION, api_name="/ask")
        assert result["answered"] and "8997" in result["text"]
        with pytest.raises(AuthenticationError):
            client(url, auth=("ann", "wrong"))
        login = httpx.post(url + "login", data={"username": "ann", "password": "s3cret"})
        assert login.status_code == 200 and "httponly" in login.headers["set-cookie"].lower()
        assert httpx.get(url + f"articles/{DOC}", cookies=login.cookies).status_code == 200
        denied = httpx.get(url + f"articles/{DOC}", cookies={"sme-qa-session": "guess"})
        assert denied.status_code == 401 and denied.headers["x-content-type-options"] == "nosniff"
        assert httpx.post(url + "login", data={"username": "ann", "password": "s3cre"}).status_code == 401


# ---------------------------------------------------------------- article text reaches the chat as text

TRAP = "http://127.0.0.1:9"
MD_TITLE = f"[官方通知]({TRAP}/phish) ![t]({TRAP}/pixel.png)"


def _md_html(markdown: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).render(markdown)


def test_markdown_in_article_fields_renders_as_text():
    from sme_qa.web.render import answer_messages

    text = f"宣布![b]({TRAP}/body.png)其产能达到4.2万套，详见 {TRAP}/bare 或 www.example.com、a@example.com。"
    hit = Hit(
        doc_id="x",
        chunk_id="x:p1",
        text=text,
        score=1.0,
        title=MD_TITLE,
        date="2023-01-01",
        source=f"<img src={TRAP}/s.png>[源]({TRAP}/src)",
        url="ftp://127.0.0.1:9/orig",
        link="/articles/x#p1",
        paragraphs=(1, 1),
        start=0,
        end=len(text),
    )
    cite = Citation(1, hit, text, 0, len(text), "/articles/x?hl=0-10#p1")
    composed = f"据《{hit.title}》（{hit.source}，2023-01-01）：「{text}」[1]"  # as answer.py writes it
    messages = answer_messages(Answer("q", composed, (cite,)))
    refusal = answer_messages(Answer("q", f"没有找到。《{MD_TITLE}》", answered=False, near_misses=(hit,)))
    for message in [*messages, *refusal]:
        html = _md_html(message)
        assert "<img" not in html and TRAP + "/" not in re.sub(r"\s+", "", "".join(re.findall(r'(?:href|src)="([^"]*)"', html)))
        assert 'href="ftp:' not in html
    html = _md_html(messages[0])
    assert re.findall(r'href="([^"]*)"', html) == ["/articles/x?hl=0-10#p1"]  # the citation, and nothing else
    assert "[官方通知]" in html and f"{TRAP}/phish" in html.replace("\\", "")  # shown, as text
