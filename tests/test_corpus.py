"""Loading the corpus: the five real samples, bad files next to good ones, dates, ids."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from pathlib import Path

import pytest

from sme_qa.chunking import chunk_article
from sme_qa.corpus import LoadResult, SourceFile, load_corpus, parse_date, read_source, scan
from sme_qa.errors import CorpusError, InputFileError

SAMPLES = Path(__file__).resolve().parent.parent / "corpus"
URL_001 = "http://finews.zning.xyz/html_News/NewsShare.html?infoCode=NW202204152344884514"
BOILERPLATE = ("海量资讯", "尽在新浪财经APP", "责任编辑", "举报", "反馈", "返回首页", "返回青岛", "appendQr",
               "&#123;", "{", "}", "<", ">", "finews.withounder.com", "文章来源")  # fmt: skip

GOOD = """---
title: 好文章
date: 2022-04-15
---
<p>专精特新企业是中国制造的重要支撑。</p>
"""


@pytest.fixture(scope="module")
def samples() -> LoadResult:
    return load_corpus(SAMPLES)


def by_id(result: LoadResult) -> dict:
    return {a.id: a for a in result.articles}


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


# --- the five samples ------------------------------------------------------------------------


def test_samples_titles_dates_and_metadata(samples):
    assert samples.skipped == []
    articles = by_id(samples)
    expected = {
        "000_c01459aaca3a05d0": ("强基固链！海尔双平台入选首批《专精特新中小企业服务产品目录》", "2022-09-14"),
        "001_9fb318df9e2783e2": ("青岛解锁“专精特新”企业培育密码", "2022-04-15"),
        "002_8d0b6c76a52069f4": ("1万，10万，100万！培育_专精特新_要读懂这三个数字", "2022-05-19"),
        "003_65fb6e7c8d0e95bc": ("行业唯一！海尔2类平台入选首批_科创中国_创新基地", "2022-08-08"),
        "004_e959ace25a1ffca8": ("做好数字化_加减法_，让_专精特新_企业多起来", "2022-03-17"),
    }
    assert {k: (a.title, a.date) for k, a in articles.items()} == expected
    assert [a.id for a in samples.articles] == sorted(expected)
    a0, a1, a4 = articles["000_c01459aaca3a05d0"], articles["001_9fb318df9e2783e2"], articles["004_e959ace25a1ffca8"]
    assert a0.source == "高科技行业门户" and a0.categories == ("新媒体", "高科技行业门户", "新闻")
    assert a1.categories == ("qingdaocaijingribao",) and a1.tags == ("青岛财经日报新闻",)
    assert a1.source == "青岛财经日报"  # from the trailing （文章来源：…）, the front matter names none
    assert a4.source == "新浪财经"
    assert a1.url == URL_001
    assert a0.url is None
    assert a0.location.endswith("000_c01459aaca3a05d0.txt")


def test_samples_paragraph_offsets(samples):
    for article in samples.articles:
        text = article.text
        for n, p in enumerate(article.paragraphs, start=1):
            assert p.number == n
            assert text[p.start : p.end] == p.text
            assert p.text == p.text.strip() and "\n" not in p.text


def test_samples_chunks_have_no_boilerplate(samples):
    for article in samples.articles:
        for chunk in chunk_article(article):
            for junk in BOILERPLATE:
                assert junk not in chunk.text, (chunk.id, junk)
            assert URL_001 not in chunk.text
            assert "zning" not in chunk.text


def test_samples_first_and_last_paragraphs(samples):
    articles = by_id(samples)
    assert articles["004_e959ace25a1ffca8"].paragraphs[-1].text.endswith("还要扩大到广大中小企业发展过程中。（完）")
    assert articles["001_9fb318df9e2783e2"].paragraphs[-1].text.endswith("焕发新活力。")
    assert articles["000_c01459aaca3a05d0"].paragraphs[0].text.startswith("“我国已培育8997家专精特新")


def test_split_sentence_rejoined_and_headings_kept(samples):
    article = by_id(samples)["001_9fb318df9e2783e2"]
    texts = [p.text for p in article.paragraphs]
    assert any("会计事务所、律师事务所、孵化器等资源方。" in t for t in texts)
    assert "锚定道路专精特新企业跑出加速度" in texts  # a subtitle: its own paragraph
    assert "融通发展“硬科技”实现“软着陆”" in texts
    chunks = chunk_article(article)
    assert sum("律师事务所" in c.text for c in chunks) == 1
    heading = next(p for p in article.paragraphs if p.text == "锚定道路专精特新企业跑出加速度")
    # a short heading is merged with the paragraph after it (never before it)
    owner = next(c for c in chunks if c.paragraphs[0] <= heading.number <= c.paragraphs[1])
    assert owner.paragraphs[0] == heading.number and owner.text.startswith("锚定道路专精特新企业跑出加速度\n\n")


def test_chunks_stable_across_loads_and_exact(samples):
    again = load_corpus(SAMPLES)
    first = [(c.id, c.hash, c.start, c.end) for a in samples.articles for c in chunk_article(a)]
    second = [(c.id, c.hash, c.start, c.end) for a in again.articles for c in chunk_article(a)]
    assert first == second
    assert len({cid for cid, *_ in first}) == len(first)
    for article in samples.articles:
        for chunk in chunk_article(article):
            assert chunk.text == article.text[chunk.start : chunk.end]
            assert chunk.doc_id == article.id and chunk.id.startswith(article.id + ":p")


def test_readme_and_hidden_files_skipped(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLES, corpus)
    write(corpus, "README.md", "# 语料说明\n\n这里是说明文字，不是文章。\n")
    write(corpus, "sub/readme.txt", "说明。")
    write(corpus, ".hidden.md", GOOD)
    write(corpus, ".git/x.md", GOOD)
    write(corpus, "photo.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    write(corpus, "notes.pdf", b"%PDF-1.4")
    result = load_corpus(corpus)
    assert len(result.articles) == 5
    assert [s.location for s in result.skipped] == [str(corpus / "notes.pdf")]
    assert "unsupported" in result.skipped[0].reason


# --- bad files next to good ones ----------------------------------------------------------


def test_bad_files_are_skipped_and_good_ones_load(tmp_path):
    gbk = "---\ntitle: 青岛专精特新企业名单发布\ndate: 2022-04-15\n---\n<p>青岛市发布了专精特新企业名单，共有九十七家企业入选。</p>\n"
    write(tmp_path, "good.md", GOOD)
    write(tmp_path, "gbk.txt", gbk.encode("gbk"))
    write(tmp_path, "bom.md", b"\xef\xbb\xbf" + GOOD.replace("好文章", "带BOM的文章").encode())
    write(tmp_path, "binary.txt", bytes(range(256)) * 8)
    write(tmp_path, "broken.md", "\n---\ntitle: 好\ndate: [2022\n---\n<p>正文。</p>\n")
    write(tmp_path, "empty.md", "")
    write(tmp_path, "blank.html", "  \n\n ")
    write(tmp_path, "boilerplate.html", "<p>责任编辑：王蒙</p>")
    lines = [
        {"id": "j1", "title": "第一篇", "text": "第一篇的正文。", "date": "2022-01-02", "categories": ["a", "b"]},
        "{not json",
        {"id": "j3", "title": "第三篇", "html": "<p>第三篇的正文。</p>", "url": "https://example.com/3"},
        ["not", "an", "object"],
        {"title": "没有id", "text": "正文。"},
        {"pid": "p6", "title": "段落", "text": "段落也能作为文章加载。"},
    ]
    write(tmp_path, "more.jsonl", "\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n")
    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.truncate(20 * 1024 * 1024)

    started = time.perf_counter()
    result = load_corpus(tmp_path)
    assert time.perf_counter() - started < 5

    loaded = by_id(result)
    assert sorted(loaded) == ["bom", "gbk", "good", "j1", "j3", "p6"]
    assert loaded["gbk"].title == "青岛专精特新企业名单发布"
    assert loaded["gbk"].paragraphs[0].text == "青岛市发布了专精特新企业名单，共有九十七家企业入选。"
    assert loaded["bom"].title == "带BOM的文章" and loaded["bom"].date == "2022-04-15"
    assert loaded["j1"].categories == ("a", "b") and loaded["j1"].date == "2022-01-02"
    assert loaded["j3"].url == "https://example.com/3" and loaded["j3"].location == f"{tmp_path / 'more.jsonl'}:3"

    reasons = {s.location: s.reason for s in result.skipped}
    assert set(reasons) == {
        str(tmp_path / "big.txt"),
        str(tmp_path / "binary.txt"),
        f"{tmp_path / 'broken.md'}:4",
        str(tmp_path / "empty.md"),
        str(tmp_path / "blank.html"),
        str(tmp_path / "boilerplate.html"),
        f"{tmp_path / 'more.jsonl'}:2",
        f"{tmp_path / 'more.jsonl'}:4",
        f"{tmp_path / 'more.jsonl'}:5",
    }
    assert "too large" in reasons[str(tmp_path / "big.txt")]
    assert "binary" in reasons[str(tmp_path / "binary.txt")]
    assert "line 4" in reasons[f"{tmp_path / 'broken.md'}:4"] and "YAML" in reasons[f"{tmp_path / 'broken.md'}:4"]
    assert "empty" in reasons[str(tmp_path / "empty.md")]
    assert "no article text" in reasons[str(tmp_path / "boilerplate.html")]
    assert "invalid JSON" in reasons[f"{tmp_path / 'more.jsonl'}:2"]
    assert "JSON object" in reasons[f"{tmp_path / 'more.jsonl'}:4"]
    assert "'id'" in reasons[f"{tmp_path / 'more.jsonl'}:5"]


def test_read_source_raises_for_whole_file_problems(tmp_path):
    path = write(tmp_path, "open.md", "---\ntitle: 没有结束\n<p>正文。</p>\n")
    src = scan(path)[0][0]
    with pytest.raises(InputFileError) as err:
        read_source(src)
    assert err.value.location == f"{path}:1" and "never closed" in err.value.reason
    ok = write(tmp_path, "ok.md", "正文有好几个字。")
    with pytest.raises(InputFileError, match="too large"):
        read_source(scan(ok)[0][0], max_bytes=4)


def test_gb18030_big5_and_utf16_read_right(tmp_path):
    text = "---\ntitle: 繁體與简体混合的標題\n---\n企業數量達到九十七家。\n"
    write(tmp_path, "a.txt", text.encode("gb18030"))
    write(tmp_path, "b.txt", text.replace("標題", "第二").encode("utf-16"))
    big5 = "---\ntitle: 專精特新企業\n---\n" + "專精特新中小企業是中國製造的重要支撐。" * 10
    write(tmp_path, "c.txt", big5.encode("big5"))  # also valid GBK bytes: must not be read as GBK
    articles = by_id(load_corpus(tmp_path))
    assert articles["a"].title == "繁體與简体混合的標題"
    assert articles["a"].paragraphs[0].text == "企業數量達到九十七家。"
    assert articles["b"].title == "繁體與简体混合的第二"
    assert articles["c"].title == "專精特新企業"
    assert articles["c"].paragraphs[0].text.startswith("專精特新中小企業是中國製造的重要支撐。")


def test_duplicate_ids_first_wins(tmp_path):
    write(tmp_path, "a.md", GOOD)
    write(tmp_path, "a.txt", GOOD.replace("好文章", "另一篇"))
    write(tmp_path, "x.jsonl", json.dumps({"id": "a", "title": "第三", "text": "正文。"}) + "\n")
    write(tmp_path, "sub/a.md", GOOD)
    result = load_corpus(tmp_path)
    assert [(a.id, a.title) for a in result.articles] == [("a", "好文章"), ("sub/a", "好文章")]
    dupes = [s for s in result.skipped if "duplicate" in s.reason]
    assert [s.location for s in dupes] == [str(tmp_path / "a.txt"), f"{tmp_path / 'x.jsonl'}:1"]
    assert all(str(tmp_path / "a.md") in s.reason for s in dupes)


def test_missing_root_is_a_corpus_error(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "nowhere")


def test_single_jsonl_root(tmp_path):
    path = write(tmp_path, "p.jsonl", json.dumps({"id": 7, "title": "七", "text": "第七篇。"}) + "\n")
    sources, skipped = scan(path)
    assert [s.rel for s in sources] == ["p.jsonl"] and skipped == []
    assert isinstance(sources[0], SourceFile) and sources[0].size == path.stat().st_size
    assert [a.id for a in load_corpus(path).articles] == ["7"]


def test_front_matter_fields_and_url_precedence(tmp_path):
    write(
        tmp_path,
        "x/y.md",
        "\n\n---\ntitle: 标题\ndate: 2022-04-15 13:41:33 +0800\ncategories: 新闻, 财经\ntags: [专精特新]\n"
        "publisher: 某某日报\nlink: https://example.com/front\n---\n"
        "标题\n\n第一段正文。\n\n<https://example.com/body>\n",
    )
    article = load_corpus(tmp_path).articles[0]
    assert article.id == "x/y"
    assert (article.title, article.date, article.source) == ("标题", "2022-04-15", "某某日报")
    assert article.categories == ("新闻", "财经") and article.tags == ("专精特新",)
    assert article.url == "https://example.com/front"
    assert [p.text for p in article.paragraphs] == ["第一段正文。"]  # the repeated title line went


def test_no_front_matter_title_from_first_line_or_stem(tmp_path):
    write(tmp_path, "plain.txt", "青岛专精特新企业达97家\n\n青岛市专精特新企业持续扩容。\n\n第二段。")
    write(tmp_path, "nohead.md", "只有一段正文。")
    articles = by_id(load_corpus(tmp_path))
    assert articles["plain"].title == "青岛专精特新企业达97家"
    assert articles["plain"].paragraphs[0].text == "青岛市专精特新企业持续扩容。"
    assert articles["nohead"].title == "nohead"


# --- dates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Wed, 14 Sep 2022 09:52:00 GMT", "2022-09-14"),
        ("Thu, 31 Dec 2020 23:30:00 -0800", "2020-12-31"),  # as written, not converted to UTC
        ("2022-04-15 13:41:33 +0800", "2022-04-15"),
        ("2022-04-15", "2022-04-15"),
        ("2022/4/5", "2022-04-05"),
        ("2022年4月15日", "2022-04-15"),
        (dt.date(2022, 4, 15), "2022-04-15"),
        (dt.datetime(2022, 4, 15, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))), "2022-04-15"),
        (None, None),
    ],
)
def test_dates(value, expected):
    assert parse_date(value) == expected


def test_unparseable_date_warns_and_loads(tmp_path, caplog):
    write(tmp_path, "a.md", GOOD.replace("2022-04-15", "sometime in spring"))
    write(tmp_path, "b.md", GOOD.replace("2022-04-15", "2022-02-30"))
    write(tmp_path, "c.md", GOOD.replace("2022-04-15", "2022-04-15T08:30:00+08:00"))  # a YAML timestamp
    with caplog.at_level(logging.WARNING, logger="sme_qa.corpus"):
        articles = by_id(load_corpus(tmp_path))
    assert articles["a"].date is None and articles["b"].date is None
    assert articles["c"].date == "2022-04-15"
    assert "sometime in spring" in caplog.text and "a.md" in caplog.text


# --- the corpus boundary -------------------------------------------------------------------


def test_symlinks_out_of_the_corpus_are_never_read(tmp_path):
    outside = tmp_path / "outside"
    write(outside, "secret.txt", "---\ntitle: 机密\n---\n机密内容：root:x:0:0 不应被索引。\n")
    write(outside, "dir/leak.md", GOOD)
    corpus = tmp_path / "corpus"
    write(corpus, "good.md", GOOD)
    write(corpus, "sub/inner.md", GOOD.replace("好文章", "内部文章"))
    (corpus / "passwd_link.txt").symlink_to(outside / "secret.txt")
    (corpus / "etc_link.txt").symlink_to("/etc/passwd")
    (corpus / "dotdot.md").symlink_to("../outside/secret.txt")  # relative, still outside
    (corpus / "linked_dir").symlink_to(outside / "dir", target_is_directory=True)
    (corpus / "inner_link.md").symlink_to(corpus / "sub" / "inner.md")  # inside: read, under its own id
    (corpus / "inner_dir").symlink_to(corpus / "sub", target_is_directory=True)  # not followed: no duplicates
    write(corpus, ".git/objects/x.md", GOOD)
    write(corpus, ".hidden/y.txt", GOOD)

    result = load_corpus(corpus)
    assert sorted(by_id(result)) == ["good", "inner_link", "sub/inner"]
    assert by_id(result)["inner_link"].title == "内部文章"
    reasons = {s.location: s.reason for s in result.skipped}
    assert set(reasons) == {str(corpus / n) for n in ("passwd_link.txt", "etc_link.txt", "dotdot.md", "linked_dir")}
    assert "outside the corpus folder" in reasons[str(corpus / "passwd_link.txt")]
    assert "symlinked folder" in reasons[str(corpus / "linked_dir")]
    assert all("root:x" not in a.text for a in result.articles)


def test_a_file_swapped_for_a_symlink_after_the_scan_is_not_followed(tmp_path):
    corpus = tmp_path / "corpus"
    path = write(corpus, "a.md", GOOD)
    (src,), _ = scan(corpus)
    path.unlink()
    path.symlink_to("/etc/passwd")
    with pytest.raises(InputFileError, match="cannot read file"):
        read_source(src)


def test_size_limit_is_a_setting_named_in_the_message(tmp_path, monkeypatch):
    from sme_qa.settings import Settings

    write(tmp_path, "big.txt", "长文。" * 200_000)  # 1.7 MB
    monkeypatch.setenv("SME_QA_MAX_FILE_MB", "1")
    settings = Settings.load()
    (skip,) = load_corpus(tmp_path, max_bytes=settings.max_file_bytes).skipped
    assert "1.7 MB > 1.0 MB limit" in skip.reason and "--max-file-mb" in skip.reason and "SME_QA_MAX_FILE_MB" in skip.reason
    assert len(load_corpus(tmp_path, max_bytes=Settings.load(max_file_mb=2).max_file_bytes).articles) == 1
    monkeypatch.setenv("SME_QA_MAX_FILE_MB", "lots")
    with pytest.raises(ValueError, match="SME_QA_MAX_FILE_MB"):
        Settings.load()


def test_cli_reports_each_skipped_file_once(tmp_path):
    import os
    import subprocess
    import sys

    write(tmp_path, "good.md", GOOD)
    write(tmp_path, "big.txt", "长文。" * 200_000)
    (tmp_path / "passwd_link.txt").symlink_to("/etc/passwd")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    out = subprocess.run(
        [sys.executable, "-m", "sme_qa", "corpus", "--corpus", str(tmp_path), "--max-file-mb", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert sum(str(tmp_path / "big.txt") in line for line in lines) == 1, lines
    assert sum(str(tmp_path / "passwd_link.txt") in line for line in lines) == 1, lines
    assert lines[-1] == "1 articles, 2 skipped"
    assert "good" in out.stdout and "root:" not in out.stdout + out.stderr
