"""Paragraph repair and chunking: exact cases plus a hypothesis property (no text lost or duplicated)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sme_qa.chunking import (
    ChunkSettings,
    chunk_article,
    paragraphs_from_texts,
    repair_paragraphs,
    split_paragraph,
)
from sme_qa.records import PARAGRAPH_SEPARATOR, Article
from sme_qa.text import sentence_spans


def make_article(texts: list[str], doc_id: str = "doc") -> Article:
    return Article(id=doc_id, title="标题", paragraphs=paragraphs_from_texts(texts))


# --- repair --------------------------------------------------------------------------------

LAWYER = (
    "围绕政策、资本、人才、科技和产业等多个领域，海创汇可为专精特新企业提供一站式服务，为其精准对接金融机构、科研机构、会计事务所、律师"
)


def test_mid_sentence_split_is_rejoined():
    out = repair_paragraphs([LAWYER, "事务所、孵化器等资源方。", "下一段。"])
    assert out == [LAWYER + "事务所、孵化器等资源方。", "下一段。"]


def test_headings_stay_alone():
    paragraphs = [
        "作为我国经济的“毛细血管”，中小企业发挥着重要作用。",
        "锚定道路专精特新企业跑出加速度",
        "凭借专业化、精细化、特色化、新颖化的特征，专精特新企业往往身怀“独门绝技”。",
        "原标题：做好数字化“加减法”，让“专精特新”企业多起来",
        "新华社记者张辛欣",
        "“专精特新”中小企业是中国制造的重要支撑。",
        "一、坚持创新驱动，加快培育一批专精特新企业和单项冠军企业并推动产业链整体升级和发展",
        "这是正文。",
    ]
    assert repair_paragraphs(paragraphs) == paragraphs


def test_strong_signals_join_even_short_fragments():
    assert repair_paragraphs(["企业数量达到", "，同比增长。"]) == ["企业数量达到，同比增长。"]
    assert repair_paragraphs(["他说：", "“很好。”"]) == ["他说：“很好。”"]
    assert repair_paragraphs(["我们将推动", "。"]) == ["我们将推动。"]


def test_bracketed_note_after_sentence_end_counts_as_complete():
    long_sentence = "工信部部长肖亚庆说，支持专精特新中小企业的政策，还要扩大到广大中小企业发展过程中。（完）"
    assert repair_paragraphs([long_sentence, "下一篇文章的开头部分没有标点但是很长很长很长很长很长很长很长很长很长很长"]) == [
        long_sentence,
        "下一篇文章的开头部分没有标点但是很长很长很长很长很长很长很长很长很长很长",
    ]


def test_ascii_words_get_a_space_cjk_none():
    assert repair_paragraphs(["The company said", "that sales rose."]) == ["The company said that sales rose."]
    assert repair_paragraphs(["x" * 50, "是的。"]) == ["x" * 50 + "是的。"]


def test_empty_paragraphs_dropped():
    assert repair_paragraphs(["", "  ", "正文。"]) == ["正文。"]


# --- chunking ------------------------------------------------------------------------------


def test_one_paragraph_one_chunk_with_stable_id_and_hash():
    texts = ["甲" * 100 + "。", "乙" * 100 + "。"]
    article = make_article(texts)
    chunks = chunk_article(article)
    assert [c.id for c in chunks] == ["doc:p1", "doc:p2"]
    assert [c.paragraphs for c in chunks] == [(1, 1), (2, 2)]
    for c in chunks:
        assert c.text == article.text[c.start : c.end]
        assert c.hash == hashlib.sha1(c.text.encode()).hexdigest()
        assert c.doc_id == "doc"
    assert chunk_article(make_article(texts)) == chunks


def test_short_neighbours_merge_forward_while_they_fit():
    texts = ["小标题", "短句一。", "正文" * 40 + "。", "尾" * 30 + "。"]
    article = make_article(texts)
    chunks = chunk_article(article, ChunkSettings(max_chars=400, min_chars=60))
    # 小标题 and 短句一 are short: they take in what follows until the group reaches min_chars;
    # the short last paragraph ends a sentence, so it joins the group before it.
    assert [(c.id, c.paragraphs) for c in chunks] == [("doc:p1", (1, 4))]
    assert chunks[0].text == PARAGRAPH_SEPARATOR.join(texts) == article.text


def test_short_heading_before_long_paragraph_is_not_glued_backwards():
    texts = ["前文" * 100 + "。", "小标题", "长" * 500 + "。"]
    chunks = chunk_article(make_article(texts), ChunkSettings(max_chars=400, min_chars=60))
    assert [c.id for c in chunks][:2] == ["doc:p1", "doc:p2"]
    assert chunks[1].text == "小标题"
    assert all(c.id.startswith("doc:p3.") for c in chunks[2:])


def test_merge_never_exceeds_max():
    fits = chunk_article(make_article(["短。", "字" * 395 + "。"]), ChunkSettings(max_chars=400, min_chars=60))
    assert [(c.paragraphs, len(c.text)) for c in fits] == [((1, 2), 400)]
    too_long = chunk_article(make_article(["短。", "字" * 396 + "。"]), ChunkSettings(max_chars=400, min_chars=60))
    assert [c.paragraphs for c in too_long] == [(1, 1), (2, 2)]


def test_long_paragraph_split_at_sentence_ends_with_closing_quotes():
    sentence = "他说：“专精特新企业是中国制造的重要支撑，我们要大力培育。”"
    paragraph = sentence * 20
    article = make_article([paragraph])
    chunks = chunk_article(article, ChunkSettings(max_chars=100, min_chars=10))
    assert [c.id for c in chunks] == [f"doc:p1.{k}" for k in range(1, len(chunks) + 1)]
    assert "".join(c.text for c in chunks) == paragraph
    for c in chunks:
        assert len(c.text) <= 100
        assert c.text.endswith("。”")
        assert c.paragraphs == (1, 1)


def test_pieces_are_balanced():
    paragraph = "".join(f"第{i}句话讲了一件事情。" for i in range(40))  # 440+ chars
    spans = split_paragraph(paragraph, 400)
    sizes = [b - a for a, b in spans]
    assert len(sizes) == 2 and min(sizes) > 150


def test_over_long_sentence_is_cut_after_a_comma():
    sentence = "，".join(["专精特新企业"] * 40) + "。"
    spans = split_paragraph(sentence, 100)
    assert "".join(sentence[a:b] for a, b in spans) == sentence
    assert all(b - a <= 100 for a, b in spans)
    assert all(sentence[b - 1] == "，" for a, b in spans[:-1])


def test_over_long_sentence_without_commas_is_cut_hard():
    sentence = "专" * 250
    spans = split_paragraph(sentence, 100)
    assert [b - a for a, b in spans] == [100, 100, 50]


def test_settings_are_validated():
    with pytest.raises(ValueError):
        ChunkSettings(max_chars=0)
    with pytest.raises(ValueError):
        ChunkSettings(max_chars=50, min_chars=60)


def test_empty_article_has_no_chunks():
    assert chunk_article(make_article([])) == []


# --- property: nothing lost, nothing duplicated -------------------------------------------------

_CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x4FFF)
_PIECES = st.one_of(
    st.text(_CJK, min_size=1, max_size=30),
    st.sampled_from([*"。！？；，、…", "。”", "！」", "？）", "；", "”", "“", "」"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12),
    st.just(" "),
)
_PARAGRAPH = st.lists(_PIECES, min_size=1, max_size=40).map("".join).map(str.strip).filter(bool)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(_PARAGRAPH, min_size=0, max_size=12),
    max_chars=st.integers(min_value=8, max_value=200),
    min_ratio=st.floats(min_value=0, max_value=1),
)
def test_chunks_reconstruct_the_article(texts, max_chars, min_ratio):
    config = ChunkSettings(max_chars=max_chars, min_chars=int(max_chars * min_ratio))
    article = make_article(texts)
    chunks = chunk_article(article, config)
    full = article.text
    rebuilt: list[str] = []  # paragraph texts, rebuilt from the chunks in order
    pending: list[str] = []  # pieces of the split paragraph being rebuilt
    for c in chunks:
        assert c.text == full[c.start : c.end]
        assert len(c.text) <= config.max_chars  # even a sentence over the limit is cut
        first, last = c.paragraphs
        if "." in c.id.split(":p", 1)[1]:
            assert first == last
            pending.append(c.text)
            if c.end == article.paragraphs[first - 1].end:
                rebuilt.append("".join(pending))
                pending = []
        else:
            assert c.id == f"doc:p{first}"
            assert c.text == PARAGRAPH_SEPARATOR.join(p.text for p in article.paragraphs[first - 1 : last])
            rebuilt.extend(p.text for p in article.paragraphs[first - 1 : last])
    assert not pending
    assert rebuilt == texts
    assert len({c.id for c in chunks}) == len(chunks)
    # Pieces of a split paragraph end between sentences unless that sentence alone is too long.
    for c in chunks:
        if "." not in c.id.split(":p", 1)[1]:
            continue
        para = article.paragraphs[c.paragraphs[0] - 1]
        end = c.end - para.start
        if end == len(para.text):
            continue
        spans = sentence_spans(para.text)
        at_boundary = any(b == end for _, b in spans)
        inside_long = any(a < end < b and b - a > config.max_chars for a, b in spans)
        assert at_boundary or inside_long
