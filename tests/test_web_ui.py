"""The chat's pure parts: merged source cards, copy text, kept turns, progress, uploads, feedback, corpus page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sme_qa.records import Answer, Citation, Hit

from servers import BackgroundServer

TEXT = "第一句是铺垫。我国已培育8997家企业。另有4762家获得认定。第四句收尾。"


def _hit(doc: str = "a/b", paragraphs=(2, 2), text: str = TEXT, start: int = 100) -> Hit:
    return Hit(
        doc_id=doc,
        chunk_id=f"{doc}:p{paragraphs[0]}",
        text=text,
        score=1.0,
        title="标题<i>",
        date="2022-09-14",
        source="经济日报",
        url=None,
        link=f"/articles/{doc}#p{paragraphs[0]}",
        paragraphs=paragraphs,
        start=start,
        end=start + len(text),
    )


def _cite(number: int, hit: Hit, quote: str) -> Citation:
    start = hit.start + hit.text.index(quote)
    return Citation(number, hit, quote, start, start + len(quote), f"/articles/{hit.doc_id}?hl={start}-{start + len(quote)}#p2")


def test_two_sentences_of_one_paragraph_are_one_card_with_both_marked():
    from sme_qa.web.render import answer_messages, source_groups

    hit = _hit()
    other = _hit("c/d", (1, 1), "别处的段落，提到3000家。", start=0)
    cites = (_cite(1, hit, "我国已培育8997家企业。"), _cite(2, other, "别处的段落，提到3000家。"), _cite(3, hit, "另有4762家获得认定。"))
    assert [[c.number for c in g] for g in source_groups(cites)] == [[1, 3], [2]]
    _, cards = answer_messages(Answer("q", "答[1][2][3]", cites))
    assert cards.count('class="sme-card"') == 2
    first = cards.split('class="sme-card"')[1]
    assert re.findall(r"<mark>(.*?)</mark>", first) == ["我国已培育8997家企业。", "另有4762家获得认定。"]
    assert '[1]</span><span class="sme-num">[3]' in first


def test_plain_text_is_readable_with_absolute_links():
    from sme_qa.web.render import answer_payload, plain_text

    hit = _hit()
    cite = _cite(1, hit, "我国已培育8997家企业。")
    answer = Answer("q", "**我国已培育8997家企业。**[1]", (cite,))
    text = plain_text(answer, "http://qa.example:8080")
    assert text == (f"我国已培育8997家企业。[1]\n\n参考来源：\n[1] 标题<i>（经济日报，2022-09-14） http://qa.example:8080{cite.link}")
    assert answer_payload(answer, "https://qa.example")["citations"][0]["link"] == "https://qa.example" + cite.link
    assert answer_payload(answer)["citations"][0]["link"] == cite.link  # no base known: as before


def test_turns_redraw_the_chat_and_find_a_message():
    from sme_qa.web import turns

    hit = _hit()
    answer = Answer("q1", "答案[1]", (_cite(1, hit, "我国已培育8997家企业。"),), timings={"total_ms": 312.0})
    options = {"k": 5, "mode": "hybrid", "date_from": "2022-01-01", "date_to": None}
    one = turns.new_turn("q1", ["答案", "<div>卡片</div>"], options, answer, base="http://h")
    assert len(one["messages"]) == 1 and "sme-copy" in one["messages"][0]
    assert "混合检索 · 5 个段落 · 2022-01-01 至 不限 · 0.31 秒" in one["messages"][0]
    assert one["citations"][0]["link"].startswith("http://h/articles/a/b?hl=")
    two = turns.new_turn("q2", ["出错了"], options, error="日期格式不对")
    kept = turns.append(turns.append([], one), two)
    assert [m["role"] for m in turns.chat_messages(kept)] == ["user", "assistant", "user", "assistant"]
    assert turns.history(kept)[1] == {"role": "assistant", "content": "答案[1]"}
    assert turns.history(kept)[2:] == [{"role": "user", "content": "q2"}, {"role": "assistant", "content": ""}]
    from sme_qa.web.render import answer_messages, history_messages

    shown = turns.new_turn("q1", answer_messages(answer), options, answer, base="http://h")
    assert "sme-sources" in shown["messages"][0]  # the answer, its cards and the copy text: one message
    assert history_messages(turns.chat_messages([shown])) == turns.history([shown])  # read back as its text alone
    assert turns.turn_at(kept, 1)["question"] == "q1" and turns.turn_at(kept, 2)["question"] == "q2"
    assert turns.turn_at(kept, 4) is None
    rated, turn = turns.rate(kept, 3, "down")
    assert turn["question"] == "q2" and turns.feedback_values(rated) == [None, "Dislike"]
    assert turns.feedback_values(turns.rate(rated, 3, "cleared")[0]) == [None, None]
    assert turns.rate(kept, 9, "up") == (kept, None)
    # Whatever the browser sends back is checked, not trusted.
    assert turns.chat_messages([{"question": 1}, "x", {"question": "q", "messages": [3]}]) == []
    assert turns.chat_messages("junk") == []
    assert len(turns.append([one] * 40, two)) == turns.MAX_TURNS


def test_progress_only_moves_forward():
    from sme_qa.web.chat import overall_progress

    steps = [("embedding", 0, 3), ("embedding", 1, 3), ("embedding", 3, 3), ("tokenising", 0, 1), ("tokenising", 1, 1)]
    values = [overall_progress(*s) for s in steps]
    assert values == sorted(values) and values[-1] == 1.0 and values[0] > 0


def test_corpus_stats_and_list(sample_searcher):
    from sme_qa.web.corpus_page import articles_html, corpus_stats, stats_line

    docs = sample_searcher.state.generation.documents
    stats = corpus_stats(docs)
    dates = sorted(d["date"] for d in docs if d.get("date"))
    assert stats.articles == len(docs) == 5 and (stats.first, stats.last) == (dates[0], dates[-1])
    assert stats.count_between(dates[0], dates[0]) == dates.count(dates[0]) and stats.count_between("2030-01-01", None) == 0
    assert "共 5 篇文章" in stats_line(stats) and f"时间 {dates[0]} 至 {dates[-1]}" in stats_line(stats)
    page = articles_html(docs, sort="old")
    assert page.count("<tr><td>") == 5
    shown = re.findall(r'<td class="date">([^<]+)</td>', page)
    assert shown == sorted(shown)
    title = docs[0]["title"]
    filtered = articles_html(docs, query=title[:4])
    assert filtered.count("<tr><td>") >= 1 and "找到" in filtered
    assert articles_html(docs, query="<script>不存在</script>").count("<tr><td>") == 0
    assert "<script>不存在" not in articles_html(docs, query="<script>不存在</script>")


def test_uploads_are_validated_like_the_cli_and_named_by_us(tmp_path):
    from sme_qa.web.upload import Incoming, UploadError, pasted_article, save_articles

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good = Incoming("../../../evil name.md", ".md", "---\ntitle: 银杉微电子扩产\n---\n\n银杉微电子的晶圆年产量达到4172万片。\n".encode())
    empty = Incoming("空.txt", ".txt", b"   \n")
    pdf = Incoming("x.pdf", ".pdf", b"%PDF")
    bad_jsonl = Incoming("b.jsonl", ".jsonl", b'{"id": "j1", "title": "t", "text": "ok text."}\n{"id": 3\n')
    with pytest.raises(UploadError) as err:
        save_articles(corpus, [good, empty, pdf, bad_jsonl], set())
    lines = err.value.problems
    assert len(lines) == 3 and lines[0].startswith("空.txt：empty file") and "x.pdf：不支持的文件类型 .pdf" in lines[1]
    assert lines[2].startswith("b.jsonl:2：invalid JSON")
    assert sorted(p.name for p in corpus.rglob("*")) == [], "nothing half-written"
    with pytest.raises(UploadError, match="已在语料中"):
        save_articles(corpus, [Incoming("c.jsonl", ".jsonl", b'{"id": "old", "title": "t", "text": "x."}\n')], {"old"})
    added = save_articles(
        corpus,
        [
            good,
            pasted_article(
                "青松重工订单", "青松重工的风电塔筒订单累计达到5389套。", date="2023-03-01", source="测试日报", url="https://e.com/a"
            ),
        ],
        set(),
    )
    files = sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*") if p.is_file())
    assert len(files) == 2 and all(re.fullmatch(r"uploads/\d{8}-\d{6}-[0-9a-f]{6}\.md", f) for f in files)
    assert [a.id for a in added] == [f[:-3] for f in files] or sorted(a.id for a in added) == [f[:-3] for f in files]
    assert {a.title for a in added} == {"银杉微电子扩产", "青松重工订单"}
    pasted = next(a for a in added if a.title == "青松重工订单")
    assert (pasted.date, pasted.source, pasted.url) == ("2023-03-01", "测试日报", "https://e.com/a")
    assert not list(tmp_path.glob("*.md")) and not list(corpus.glob(".upload-*"))
    with pytest.raises(UploadError) as err:
        pasted_article("", "", date="明天", url="javascript:alert(1)")
    assert len(err.value.problems) == 4


def test_delete_article_file_and_jsonl_line(tmp_path):
    from sme_qa.corpus import load_corpus
    from sme_qa.errors import SmeQaError
    from sme_qa.web.upload import delete_article

    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "sub" / "one.txt").write_text("标题\n\n正文第一句。", encoding="utf-8")
    lines = [json.dumps({"id": i, "title": i, "text": f"{i} 的正文。"}, ensure_ascii=False) for i in ("j1", "j2", "j3")]
    (corpus / "many.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    articles = {a.id: a for a in load_corpus(corpus).articles}
    delete_article(corpus, articles["sub/one"])
    delete_article(corpus, articles["j2"])
    assert sorted(a.id for a in load_corpus(corpus).articles) == ["j1", "j3"]
    with pytest.raises(SmeQaError, match="changed since it was indexed"):
        delete_article(corpus, articles["j3"])  # its line moved up: refuse rather than delete the wrong one
    outside = articles["j1"].__class__(**{**articles["j1"].__dict__, "location": str(tmp_path / "x.jsonl") + ":1"})
    (tmp_path / "x.jsonl").write_text(lines[0] + "\n", encoding="utf-8")
    with pytest.raises(SmeQaError, match="outside the corpus"):
        delete_article(corpus, outside)


def test_feedback_log_appends_lines(tmp_path):
    from sme_qa.web.feedback import FeedbackLog

    log = FeedbackLog(tmp_path / "v" / "feedback.jsonl")
    turn = {
        "question": "q",
        "text": "a[1]",
        "answered": True,
        "citations": [{"number": 1}],
        "settings": {"k": 5},
        "time": "2026-01-01T00:00:00+00:00",
    }
    log.add(turn, "up")
    log.add(turn, "down")
    rows = log.read()
    assert [r["rating"] for r in rows] == ["up", "down"] and rows[0]["question"] == "q"
    assert rows[0]["citations"] == [{"number": 1}] and rows[0]["settings"] == {"k": 5}


def test_public_base():
    from types import SimpleNamespace

    from sme_qa.web.chat import public_base

    req = SimpleNamespace(headers={"host": "10.0.0.5:7860"}, url=SimpleNamespace(scheme="http"))
    assert public_base(req) == "http://10.0.0.5:7860"
    assert public_base(req, "https://qa.example.com/") == "https://qa.example.com"
    assert public_base(SimpleNamespace(headers={"host": "evil.com/<x>"}, url=None)) is None
    assert public_base(None) is None


def test_browser_secret_is_stable(tmp_path):
    from sme_qa.web.server import browser_secret

    first = browser_secret(tmp_path)
    assert browser_secret(tmp_path) == first and len(first) >= 32
    assert (Path(tmp_path) / "browser-secret").stat().st_mode & 0o077 == 0


NEW = "---\ntitle: 星河精工年产能创新高\ndate: 2023-03-01\n---\n\n<p>记者获悉，星河精工的伺服电机年产能已经达到7531台，位居行业前列。</p>\n"


def test_update_progress_moves_forward_and_examples_follow_the_corpus(corpus_copy, index_copy):
    """Item 9: the bar never goes back, the result box is emptied first (UI chain), examples are refreshed."""
    from sme_qa.search import load
    from sme_qa.web.chat import ChatService

    service = ChatService(load(index_copy), corpus_copy)
    assert not any("星河精工" in q for q in service.examples())
    (corpus_copy / "xinghe.txt").write_text(NEW, encoding="utf-8")
    seen: list[float] = []
    message = service.update_index(progress=lambda value, desc="", **_: seen.append(float(value)))
    assert "新增 1 篇" in message, message
    assert seen == sorted(seen) and seen[0] == 0.0 and seen[-1] == 1.0 and len(seen) >= 3, seen
    status, header, examples = service.view()
    assert "索引：6 篇文章" in status and "共 6 篇文章" in header
    assert any("星河精工" in e["text"] for e in examples["examples"]), examples


def test_api_links_are_absolute_and_management_is_off_by_default(corpus_copy, index_copy):
    """Item 11 (SME_QA_PUBLIC_URL, else the request's host) and item 12's switch."""
    import httpx
    from gradio_client import Client

    from sme_qa.search import load
    from sme_qa.web.server import create_app

    searcher = load(index_copy)
    question = "我国已培育了多少家专精特新“小巨人”企业？"
    with BackgroundServer(create_app(searcher, corpus_copy)) as url:
        result = Client(url, verbose=False, download_files=False).predict(question, api_name="/ask")
        assert result["citations"] and all(c["link"].startswith(url + "articles/") for c in result["citations"])
        doc = result["citations"][0]["doc_id"]
        page = httpx.get(url + f"articles/{doc}")
        assert page.status_code == 200 and "删除这篇文章" not in page.text
        assert httpx.get(url + f"manage/delete/articles/{doc}").status_code == 404
        assert httpx.post(url + f"manage/delete/articles/{doc}", data={"token": "x"}).status_code in (404, 405)
        assert "sme-add" not in httpx.get(url + "config").text and (corpus_copy / f"{doc}.txt").exists()
    with BackgroundServer(create_app(searcher, corpus_copy, manage=True, public_url="https://qa.example.com/")) as url:
        result = Client(url, verbose=False, download_files=False).predict(question, api_name="/ask")
        assert all(c["link"].startswith("https://qa.example.com/articles/") for c in result["citations"])
        doc = result["citations"][0]["doc_id"]
        assert "删除这篇文章" in httpx.get(url + f"articles/{doc}").text
        forged = httpx.post(url + f"manage/delete/articles/{doc}", data={"token": "forged"})
        assert forged.status_code == 403 and (corpus_copy / f"{doc}.txt").exists()
