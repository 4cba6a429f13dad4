"""Shared test data: an article whose text and metadata carry script-bearing HTML."""

from pathlib import Path

QUESTION = "我国已培育了多少家专精特新“小巨人”企业？"
DOC = "000_c01459aaca3a05d0"
EVIL_ID = "evil/script-article"
EVIL = """---
title: '蓝鲸精密<script>alert(1)</script>装机量'
author: 测试<img src=x onerror=alert(1)>日报
date: 2023-01-05
url: 'javascript:alert(1)'
---

<p>蓝鲸精密公司宣布，其自主研发的&lt;script&gt;alert(1)&lt;/script&gt;数控系统累计装机量达到6123台。</p>
<p>该公司称，&lt;img src=x onerror=alert(1)&gt;这一成果源于十年的研发投入。</p>
"""


def add_evil_article(corpus: Path) -> None:
    (corpus / "evil").mkdir(exist_ok=True)
    (corpus / "evil" / "script-article.txt").write_text(EVIL, encoding="utf-8")


MD_ID = "evil/markdown-title"
MD_QUESTION = "星辰动力的氢燃料电池堆功率密度达到了多少？"


def markdown_article(trap: str) -> str:
    """An article whose title, publisher and body carry Markdown links and images to ``trap``."""
    return f"""---
title: '[官方通知]({trap}/phish) ![t]({trap}/pixel.png) 星辰动力'
author: '![源]({trap}/source.png)'
date: 2023-02-01
url: 'ftp://127.0.0.1/orig'
tags: ['[标签]({trap}/tag)']
---

星辰动力公司宣布，其自研的氢燃料电池堆功率密度达到了4.6千瓦每升 ![b]({trap}/body.png) 详见 {trap}/bare 。

该公司表示，这一成果来自五年的持续研发。
"""


def add_markdown_article(corpus: Path, trap: str) -> None:
    (corpus / "evil").mkdir(exist_ok=True)
    (corpus / "evil" / "markdown-title.md").write_text(markdown_article(trap), encoding="utf-8")
