"""clean_body: markup out, paragraphs kept, boilerplate dropped by general patterns."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sme_qa.cleaning import clean_body, looks_like_html

BODY = "专精特新企业是中国制造的重要支撑。"
BODY2 = "工信部表示，将加大对企业的服务力度，特别是降低数字化门槛。"


def test_non_text_elements_dropped():
    html = f"""
    <html><head><title>页面标题</title><style>p{{color:red}}</style><script>var a = "脚本";</script></head>
    <body><nav><a href="/">首页</a></nav>
    <p>{BODY}</p><!-- 注释 --><iframe src="x">框架</iframe><img src="a.jpg" alt="图片说明">
    <noscript>请开启脚本</noscript><form><input value="输入"><button>提交按钮</button></form>
    <p>{BODY2}</p></body></html>"""
    clean = clean_body(html)
    assert clean.paragraphs == [BODY, BODY2]
    assert clean.title == "页面标题"


def test_paragraph_boundaries_and_soft_breaks():
    html = f"<div>{BODY}<br><br>青岛专精特新企业<br>持续扩容。</div><p>甲 乙</p><h2>小标题</h2><ul><li>一项</li><li>二项</li></ul>"
    assert clean_body(html).paragraphs == [BODY, "青岛专精特新企业持续扩容。", "甲 乙", "小标题", "一项", "二项"]


def test_single_br_after_sentence_end_or_before_indent_ends_a_paragraph():
    html = f"<p>　　{BODY}<br>　　{BODY2}<br>没有句号的一行<br>接着写。<br>　　缩进的一行</p>"
    assert clean_body(html).paragraphs == [BODY, BODY2, "没有句号的一行接着写。", "缩进的一行"]


def test_entities_decoded_and_whitespace_folded():
    html = "<p>研发投入&nbsp;超过&lt;1000&gt;亿元&amp;人才，\n   同比增长。 AR\nglass 产品\n说明　二\u200b三</p>"
    assert clean_body(html).paragraphs == ["研发投入 超过<1000>亿元&人才，同比增长。 AR glass 产品说明 二三"]


def test_double_escaped_entities_and_leaked_css():
    html = (
        "<p>.appendQr_wrap&amp;#123;border:1px solid #E6E6E6;padding:8px;&amp;#125;</p>"
        f"<p>{BODY}</p><div>.box{{float:left;}} .box img{{width:74px;}}</div>"
    )
    assert clean_body(html).paragraphs == [BODY]


def test_markdown_body():
    md = f"""# 大标题

{BODY}见[工信部网站](https://www.miit.gov.cn/ "工信部")。
![图](a.png)
## 小节
- 第一项
- 第二项

**加粗**的{BODY2}
"""
    clean = clean_body(md)
    assert not looks_like_html(md)
    assert clean.title == "大标题"
    assert clean.paragraphs == ["大标题", BODY + "见工信部网站。", "小节", "第一项", "第二项", "加粗的" + BODY2]


def test_markdown_heading_line_is_its_own_paragraph():
    md = f"## 小节标题\n青岛专精特新企业\n持续扩容。\n\n　\n{BODY2}"
    assert clean_body(md).paragraphs == ["小节标题", "青岛专精特新企业持续扩容。", BODY2]


def test_chinese_plain_text_one_paragraph_a_line():
    text = f"　　{BODY}\n　　{BODY2}\n这一行被硬换行\n折断了。\n“引语。”\n下一段"
    assert clean_body(text).paragraphs == [BODY, BODY2, "这一行被硬换行折断了。", "“引语。”", "下一段"]


def test_plain_text_with_angle_brackets_is_not_html():
    text = f"营收<100万元的企业a<b。\n\n{BODY}"
    assert clean_body(text).paragraphs == ["营收<100万元的企业a<b。", BODY]


def test_markdown_mixed_into_html_bare_trailing_link_becomes_url():
    body = f"""<p>{BODY} </p>
 <p>{BODY2}</p><p class="x">（文章来源：某某日报）</p>

<http://news.example.com/a.html?id=42>

[返回某某新闻](//example.com/list.html)｜[返回首页](//example.com/)
"""
    clean = clean_body(body)
    assert clean.paragraphs == [BODY, BODY2]
    assert clean.url == "http://news.example.com/a.html?id=42"
    assert clean.source == "某某日报"


def test_lone_url_and_original_link_label():
    assert clean_body(f"{BODY}\n\nhttps://example.com/x\n").url == "https://example.com/x"
    clean = clean_body(f"<p>{BODY}</p><p>原文链接：https://example.com/y</p><p>编辑：李四</p>")
    assert clean.url == "https://example.com/y"
    assert clean.paragraphs == [BODY]


def test_promotions_credits_widgets_and_navigation():
    body = f"""<p>　　{BODY}</p>
    <p>扫码下载某某新闻客户端，看更多新闻</p>
    <p>{BODY2}</p>
    <p><font>举报/反馈</font></p>
    <p>上一篇：某某企业获评小巨人｜下一篇：另一篇文章</p>
    <div class="qr">海量资讯、精准解读，尽在某某财经APP</div>
    <p>关注微信公众号“某某财经”</p>
    <p>责任编辑：张三 </p>
    <p>校对：王五</p>
    <p>（完）</p>"""
    clean = clean_body(body)
    assert clean.paragraphs == [BODY, BODY2]


def test_credit_lines_in_the_middle_stay_but_editor_credit_never_does():
    body = f"<p>记者：张三</p><p>{BODY}</p><p>责任编辑：李四</p><p>{BODY2}</p>"
    assert clean_body(body).paragraphs == ["记者：张三", BODY, BODY2]


def test_news_about_an_app_is_not_a_promotion():
    long_news = "该企业推出的APP用户已超过一千万，" + "企业负责人表示将继续加大研发投入，" * 3 + "扫码支付功能也已上线。"
    assert clean_body(f"<p>{long_news}</p>").paragraphs == [long_news]


def test_trailing_disclaimer_dropped():
    body = f"<p>{BODY}</p><p>免责声明：本文仅代表作者个人观点，不构成投资建议。</p>"
    assert clean_body(body).paragraphs == [BODY]


def test_trailing_link_lists_share_widgets_and_disclaimers_dropped():
    body = f"""<div><p>　　来源：证券日报</p><p>{BODY}<a href="/x">某公司</a>营收增长。</p>
    <p>新浪声明：此消息系转载自新浪合作媒体，文章内容仅供参考，不构成投资建议。</p>
    <p>责任编辑：李四 SF001</p></div><div class="share">分享到：微信 微博</div>
    <div>相关阅读</div><ul><li><a href="/a">另一篇专精特新的新闻标题</a></li><li>[第二篇](http://y)</li></ul>"""
    assert clean_body(body).paragraphs == ["来源：证券日报", BODY + "某公司营收增长。"]


def test_link_inside_a_block_does_not_leak_markers():
    assert clean_body(f'<a href="/x"><div>{BODY}</div><p>{BODY2}</p></a>').paragraphs == [BODY, BODY2]


def test_meta_date_read():
    html = (
        f'<html><head><meta property="article:published_time" content="2022-04-15T08:00:00+08:00"></head><body><p>{BODY}</p></body></html>'
    )
    assert clean_body(html).date == "2022-04-15T08:00:00+08:00"


def test_empty_and_boilerplate_only_bodies():
    assert clean_body("").paragraphs == []
    assert clean_body("<div><p>责任编辑：王蒙</p><!-- x --></div>").paragraphs == []


def test_deeply_nested_html_does_not_recurse():
    html = "<div>" * 3000 + BODY + "</div>" * 3000
    assert clean_body(html).paragraphs == [BODY]


_MARKUP = st.sampled_from(["<p>", "</p>", "<br>", "<div>", "</div>", "<a href='x'>", "</a>", "\n", "\n\n", "　　", "<!--", "-->",
                           "[链接](http://x)", "# ", "- ", "。", "”", "<http://a.b/c>", "&amp;", "{", "}", "\x1e", "\x02"])  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_MARKUP, st.text(max_size=20)), max_size=30).map("".join))
def test_clean_body_never_fails_and_leaks_no_markers(body):
    clean = clean_body(body)
    for p in clean.paragraphs:
        assert p and p == p.strip()
        assert not any(c in p for c in "\n\x1e\x1f\x02\x03")
