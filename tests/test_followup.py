"""Follow-up questions: the offline rewrite on hand-made histories, then through the library and the CLI.

The histories are written here (answers in the form the extractive answer takes: quotes in
「…」, English quotes in “…”), so each rewrite can be checked by reading it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sme_qa.errors import QueryError
from sme_qa.followup import Turn, check_history, resolve, turns, understood_note

ROOT = Path(__file__).resolve().parent.parent
QINGDAO = "001_9fb318df9e2783e2"
NATIONAL = "000_c01459aaca3a05d0"


def chat(*pairs: str) -> list[dict[str, str]]:
    """user, assistant, user, assistant … → messages."""
    return [{"role": ("user", "assistant")[i % 2], "content": text} for i, text in enumerate(pairs)]


# ------------------------------------------------------------ the rule, pure


@pytest.mark.parametrize(
    ("history", "question", "expected"),
    [
        (
            chat("海创汇首创的是什么创业模式？", "据《…》：「海创汇首创“有根创业”模式。」[1]"),
            "它已经孵化出多少家上市公司？",
            "海创汇已经孵化出多少家上市公司？",
        ),
        (
            chat("我国已培育了多少家专精特新“小巨人”企业？", "据《…》：「“我国已培育8997家专精特新‘小巨人’企业。”」[1]"),
            "那青岛呢？",
            "青岛已培育了多少家专精特新“小巨人”企业？",
        ),
        (
            chat("青岛目前有多少家专精特新“小巨人”企业？", "「目前有专精特新“小巨人”97家，全国排名第八。」[1]"),
            "在全国排第几？",
            "青岛的专精特新“小巨人”企业在全国排第几？",
        ),
        (
            chat("京东集团服务了多少家省级专精特新中小企业？", "「京东集团已服务2.7万家省级专精特新中小企业。」[1]"),
            "那“小巨人”企业呢？",
            "京东集团服务了多少家“小巨人”企业？",
        ),
        (
            chat("海创汇的董事长是谁？", "据《…》：「据海创汇董事长刘长文介绍，目前平台已经服务了4000多家中小企业。」[1]"),
            "他说平台服务了多少家中小企业？",
            "海创汇董事长刘长文说平台服务了多少家中小企业？",
        ),
        (
            chat("首批“科创中国”创新基地一共有多少个？", "「近日，中国科学技术协会公布首批194个“科创中国”创新基地认定结果。」[1]"),
            "其中有几个来自青岛？",
            "首批“科创中国”创新基地中有几个来自青岛？",
        ),
        (
            chat("青岛最早印发的专精特新认定办法叫什么名字？", "「青岛早在2012年就印发了《中小企业“专精特新”产品(技术)认定办法》。」[1]"),
            "是哪一年印发的？",
            "《中小企业“专精特新”产品(技术)认定办法》是哪一年印发的？",
        ),
        (
            chat(
                "哪个平台是首批“小巨人”企业高质量发展公共服务示范平台？",
                "「作为首批国家级专精特新“小巨人”企业高质量发展公共服务示范平台，海创汇首创“有根创业”模式。」[1]",
            ),
            "它的董事长是谁？",
            "海创汇的董事长是谁？",
        ),
        (
            chat("Which entrepreneurship model did Haichuanghui pioneer?", "According to 《…》: “海创汇首创“有根创业”模式。” [1]"),
            "How many listed companies has it incubated?",
            "How many listed companies has Haichuanghui incubated?",
        ),
        (
            chat("How many little giants are there in China?", "According to 《…》: “我国已培育8997家专精特新‘小巨人’企业” [1]"),
            "What about Qingdao?",
            "How many little giants are there in Qingdao?",
        ),
    ],
)
def test_follow_ups_become_standalone(history, question, expected):
    r = resolve(question, history)
    assert r.rewritten and r.question == expected, r


def test_who_said_it_asks_about_the_quoted_sentence():
    history = chat(
        "今年国家级“小巨人”企业准备再培育多少家？",
        "据《…》：「“将在已有基础上，进一步创新‘专精特新’中小企业发展的路径。今年国家级‘小巨人’企业准备再培育3000家以上。”」[1]",
    )
    r = resolve("是谁说的？", history)
    assert r.rule == "quote" and r.question == "“今年国家级‘小巨人’企业准备再培育3000家以上”是谁说的？"


def test_who_said_it_skips_the_sentence_that_names_the_speaker():
    answer = "**8997家**\n\n据《…》：「“我国已培育8997家专精特新‘小巨人’企业。”在近日举行的“2022全国专精特新中小企业发展大会”上，工信部部长金壮龙表示。」[1]"
    history = chat("在2022全国专精特新中小企业发展大会上，我国已培育多少家专精特新“小巨人”企业？", answer)
    got = resolve("是谁说的？", history)
    assert "8997家" in got.question and "金壮龙" not in got.question


def test_a_chain_of_follow_ups_keeps_its_subject():
    history = chat(
        "青岛目前有多少家专精特新“小巨人”企业？",
        "「目前有专精特新“小巨人”97家，全国排名第八，除直辖市外北方第一。」[1]",
        "在全国排第几？",
        "「全国排名第八。」[1]",
    )
    assert resolve("那在北方呢？", history).question == "青岛的专精特新“小巨人”企业在北方排第几？"


@pytest.mark.parametrize(
    "question",
    [
        "海创汇首创的是什么创业模式？",
        "联想集团未来五年的研发总投入会达到多少？",
        "青岛征和工业的良品率达到了多少？",
        "How many listed companies has Haichuanghui incubated?",
        "北京已经认定了多少家市级专精特新中小企业？",
    ],
)
def test_a_standalone_question_is_not_rewritten(question):
    history = chat("华纬科技把生产环节搬上了哪个平台？", "「通过设备联网把生产、物流、供应等环节搬上钉钉平台。」[1]")
    r = resolve(question, history)
    assert not r.rewritten and r.question == question


def test_no_history_nothing_to_resolve():
    assert resolve("它已经孵化出多少家上市公司？", []) == resolve("它已经孵化出多少家上市公司？")
    assert not resolve("那青岛呢？").rewritten


def test_history_is_validated_with_a_clear_message():
    assert check_history(None) == []
    for bad, words in [
        ("海创汇", "must be a list"),
        ([["user", "x"]], "history[0]"),
        ([{"role": "system", "content": "x"}], "history[0].role"),
        ([{"role": "user", "content": 3}], "history[0].content"),
    ]:
        with pytest.raises(QueryError, match=words.replace("[", r"\[").replace("]", r"\]")):
            check_history(bad)


def test_turns_pair_questions_with_answers():
    messages = [*chat("问一", "答一"), {"role": "assistant", "content": "来源"}, *chat("问二")]
    assert turns(check_history(messages)) == [Turn("问一", "答一\n来源"), Turn("问二")]


# ------------------------------------------------------------ through the library


def test_ask_with_history_answers_the_follow_up(sample_searcher):
    first = sample_searcher.ask("我国已培育了多少家专精特新“小巨人”企业？", llm=False)
    assert first.understood is None and "8997" in first.text
    history = chat(first.question, first.text)
    follow = sample_searcher.ask("那青岛呢？", history=history, llm=False)
    assert follow.question == "那青岛呢？"
    assert follow.understood == "青岛已培育了多少家专精特新“小巨人”企业？"
    assert understood_note(follow) == "按“青岛已培育了多少家专精特新“小巨人”企业？”理解"
    alone = sample_searcher.ask("那青岛呢？", llm=False)
    assert alone.understood is None and not ("97" in alone.text and any(c.hit.doc_id == QINGDAO for c in alone.citations))
    assert follow.answered and "97" in follow.text and follow.citations[0].hit.doc_id == QINGDAO


def test_streamed_answers_carry_what_was_understood(sample_searcher):
    history = chat("海创汇首创的是什么创业模式？", "「海创汇首创“有根创业”模式。」[1]")
    parts = list(sample_searcher.ask_stream("它已经孵化出多少家上市公司？", history=history, llm=False))
    assert parts and all(p.understood == "海创汇已经孵化出多少家上市公司？" for p in parts)
    assert "5家上市公司" in parts[-1].text


def test_standalone_question_with_history_is_answered_as_typed(sample_searcher):
    history = chat("华纬科技把生产环节搬上了哪个平台？", "「…搬上钉钉平台…」[1]")
    a = sample_searcher.ask("海创汇首创的是什么创业模式？", history=history, llm=False)
    assert a.understood is None and a.question == "海创汇首创的是什么创业模式？" and "有根创业" in a.text


def test_bad_history_is_a_query_error(sample_searcher):
    with pytest.raises(QueryError, match="history"):
        sample_searcher.ask("那青岛呢？", history="not a list", llm=False)


def test_llm_condensation_falls_back_to_the_rule(sample_index, monkeypatch):
    from sme_qa.search import load

    monkeypatch.setenv("SME_QA_LLM_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens on the discard port
    monkeypatch.setenv("SME_QA_LLM_MODEL", "none")
    monkeypatch.setenv("SME_QA_LLM_TIMEOUT", "2")
    searcher = load(sample_index)
    history = chat("海创汇首创的是什么创业模式？", "「海创汇首创“有根创业”模式。」[1]")
    assert searcher.understand("它已经孵化出多少家上市公司？", history) == "海创汇已经孵化出多少家上市公司？"
    assert searcher.understand("海创汇首创的是什么创业模式？", history) == "海创汇首创的是什么创业模式？"


def test_terminal_chat_keeps_the_conversation(sample_index, tmp_path):
    """``sme-qa chat`` with questions on stdin (not a terminal: no prompt), JSON answers on stdout."""
    env = {
        "PYTHONPATH": str(ROOT / "src"),
        "SME_QA_CACHE": str(_cache()),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    done = subprocess.run(  # the exit status is asserted below
        [sys.executable, "-m", "sme_qa", "chat", "--vectors", str(sample_index), "--json", "--no-llm"],
        input="我国已培育了多少家专精特新“小巨人”企业？\n\n那青岛呢？\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(answers) == 2
    assert answers[0]["understood"] is None and "8997" in answers[0]["text"]
    assert answers[1]["understood"] == "青岛已培育了多少家专精特新“小巨人”企业？"
    assert "97" in answers[1]["text"]


def _cache() -> Path:
    from sme_qa.settings import Settings

    return Settings.load().cache_dir


def test_cli_shows_what_was_understood(sample_searcher, capsys):
    from sme_qa.cli import _print_answer

    history = chat("海创汇首创的是什么创业模式？", "「海创汇首创“有根创业”模式。」[1]")
    _print_answer(sample_searcher.ask("它已经孵化出多少家上市公司？", history=history, llm=False))
    out = capsys.readouterr().out
    assert out.startswith("(按“海创汇已经孵化出多少家上市公司？”理解)\n") and "5家上市公司" in out
    english = chat("Which entrepreneurship model did Haichuanghui pioneer?", "“海创汇首创“有根创业”模式。” [1]")
    _print_answer(sample_searcher.ask("How many listed companies has it incubated?", history=english, llm=False))
    assert capsys.readouterr().out.startswith('(Understood as "How many listed companies has Haichuanghui incubated?")')


def test_llm_condenses_a_follow_up_and_bad_condensations_fall_back(tmp_path):
    """A real chat-completions server on 127.0.0.1: its standalone question is used; an answer
    instead of a question (with [n] markers) is rejected for the offline rewrite."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from sme_qa.search import Searcher
    from sme_qa.settings import Settings

    replies = {
        "/good/v1/chat/completions": "海创汇累计孵化了多少家上市公司？",
        "/answers/v1/chat/completions": "海创汇已孵化出5家上市公司。[1]",
    }
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({"choices": [{"message": {"content": replies[self.path]}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        history = chat("海创汇首创的是什么创业模式？", "「海创汇首创“有根创业”模式。」[1]")
        port = server.server_address[1]

        def searcher(path: str) -> Searcher:
            return Searcher(Settings.load(vectors=tmp_path, llm_base_url=f"http://127.0.0.1:{port}/{path}/v1", llm_model="m"))

        assert searcher("good").understand("它已经孵化出多少家上市公司？", history) == "海创汇累计孵化了多少家上市公司？"
        assert "它已经孵化出多少家上市公司？" in seen[-1]["messages"][-1]["content"]
        assert searcher("answers").understand("它已经孵化出多少家上市公司？", history) == "海创汇已经孵化出多少家上市公司？"
        asked = len(seen)
        assert searcher("good").understand("海创汇首创的是什么创业模式？", history) == "海创汇首创的是什么创业模式？"
        assert searcher("good").understand("它已经孵化出多少家上市公司？", history, llm=False) == "海创汇已经孵化出多少家上市公司？"
        assert len(seen) == asked, "a standalone question, or llm=False, asks no LLM"
    finally:
        server.shutdown()


def test_chat_history_is_read_back_as_plain_messages():
    """What the chat shows (the 「按…理解」 line, escaped Markdown, source cards) is read back
    as the question typed and the answer's text with its quotes."""
    from sme_qa.records import Answer
    from sme_qa.web.render import answer_messages, history_messages

    shown = Answer(
        "它已经孵化出多少家上市公司？", "据《海创汇》：「海创汇已孵化出5家上市公司。」[1]", understood="海创汇已经孵化出多少家上市公司？"
    )
    rendered = answer_messages(shown)
    assert "按“海创汇已经孵化出多少家上市公司？”理解" in rendered[0]
    chat_value = [
        {"role": "user", "content": [{"type": "text", "text": "海创汇首创的是什么创业模式？"}]},
        *({"role": "assistant", "content": m} for m in rendered),
        {"role": "assistant", "content": '<div class="sme-sources"><div>来源</div>「不要」</div>'},
    ]
    back = history_messages(chat_value)
    assert back[0] == {"role": "user", "content": "海创汇首创的是什么创业模式？"}
    assert len(back) == 2 and back[1]["role"] == "assistant"
    assert "理解" not in back[1]["content"] and "不要" not in back[1]["content"]
    assert "「海创汇已孵化出5家上市公司。」" in back[1]["content"]


# ------------------------------------------------------------ speakers and titles (the paragraph beside the quote)

XIAO = "“将在已有基础上，进一步创新‘专精特新’中小企业发展的路径。今年国家级‘小巨人’企业准备再培育3000家以上。”工信部部长肖亚庆说，支持“专精特新”中小企业的政策，还要扩大到广大中小企业发展过程中。"
TIAN = "“我们将实施制造业数字化转型行动计划，开展新一代信息技术与制造业融合发展试点示范，培育企业数字技术应用能力。”工信部总工程师田玉龙说，在加快5G行业虚拟专网规模化建设的同时，将鼓励产业链上下游企业开放数据。"


def test_speaker_is_found_beside_the_quotation():
    from sme_qa.speakers import Speaker, speaker, titled

    assert speaker("今年国家级‘小巨人’企业准备再培育3000家以上。", ["无关的段落。", XIAO]) == Speaker("工信部部长肖亚庆", "说")
    before = "据海创汇董事长刘长文介绍，“目前平台已经服务了4000多家中小企业。”"
    assert speaker("目前平台已经服务了4000多家中小企业", [before]) == Speaker("海创汇董事长刘长文", "介绍")
    assert speaker("海创汇首创“有根创业”模式", ["作为示范平台，海创汇首创“有根创业”模式。"]) is None  # nobody said it
    assert speaker("没有这句话的任何地方", [XIAO]) is None
    assert titled("田玉龙", [TIAN]) == "工信部总工程师田玉龙" and titled("贺强", [TIAN]) == "贺强"


def test_who_said_names_the_speaker_of_the_paragraph():
    history = chat("今年国家级“小巨人”企业准备再培育多少家？", "据《…》：「今年国家级‘小巨人’企业准备再培育3000家以上。」[1]")
    seen: list[str] = []

    def lookup(text: str) -> list[str]:
        seen.append(text)
        return [XIAO]

    r = resolve("是谁说的？", history, lookup=lookup)
    assert r.rule == "quote" and r.question == "“今年国家级‘小巨人’企业准备再培育3000家以上”是谁说的（工信部部长肖亚庆说）？"
    assert seen == ["今年国家级‘小巨人’企业准备再培育3000家以上"]
    assert (
        resolve("是谁说的？", history, lookup=lambda text: ["别的段落。"]).question
        == "“今年国家级‘小巨人’企业准备再培育3000家以上”是谁说的？"
    )


def test_he_carries_the_title_the_cited_sentence_gives():
    cited = chat(
        "田玉龙说要加快什么网络的规模化建设？",
        "据《…》：「工信部总工程师田玉龙说，在加快5G行业虚拟专网规模化建设的同时，将鼓励产业链上下游企业开放数据。」[1]",
    )
    assert resolve("他是哪个部门的？", cited).question == "工信部总工程师田玉龙是哪个部门的？"
    # the answer quoted the claim only: the speaker comes from the claim's paragraph
    unnamed = chat(
        "谁说要实施制造业数字化转型行动计划？",
        "据《…》：「“我们将实施制造业数字化转型行动计划，开展新一代信息技术与制造业融合发展试点示范。”」[1]",
    )
    assert resolve("他是什么职务？", unnamed, lookup=lambda text: [TIAN]).question == "工信部总工程师田玉龙是什么职务？"
    assert resolve("他是什么职务？", unnamed).question == "说要实施制造业数字化转型行动计划的人是什么职务？"


def test_it_after_a_question_about_a_person_is_the_thing_asked_for():
    history = chat(
        "徐晓兰透露将于近期发布的是什么办法？", "据《…》：「徐晓兰还透露了《优质中小企业梯度培育管理暂行办法》将于近期发布的消息。」[1]"
    )
    assert resolve("它将由哪个部门发布？", history).question == "《优质中小企业梯度培育管理暂行办法》将由哪个部门发布？"


@pytest.mark.parametrize(
    ("history", "question", "expected"),
    [
        (
            chat("华纬科技说开放平台让企业更加便捷获得什么？", "「“开放平台让企业更加便捷获得数字能力。”华纬科技有关负责人表示。」[1]"),
            "它专注这一行多少年了？",
            "华纬科技专注这一行多少年了？",
        ),
        (
            chat("截至2022年7月，海创汇孵化出了多少家独角兽？", "「已成功孵化出5家上市公司、7家独角兽。」[1]"),
            "那瞪羚呢？",
            "截至2022年7月，海创汇孵化出了多少家瞪羚？",
        ),
        (
            chat(
                "What is the name of the measures Qingdao issued for specialized products?",
                "According to 《…》: “青岛早在2012年就印发了认定办法。” [1]",
            ),
            "When was it issued?",
            "When was the measures Qingdao issued for specialized products issued?",
        ),
        (
            chat(
                "How many little giants will be cultivated this year?",
                "According to 《…》: “今年国家级‘小巨人’企业准备再培育3000家以上。” [1]",
            ),
            "Who said that?",
            "“今年国家级‘小巨人’企业准备再培育3000家以上”是谁说的？",
        ),
    ],
)
def test_more_follow_ups_become_standalone(history, question, expected):
    assert resolve(question, history).question == expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Who is the chairman of Haichuanghui?", "Who is the chairman of 青岛?"),
        ("how many little giants are there?", "how many little giants are there (青岛)?"),
    ],
)
def test_a_chinese_ellipsis_after_an_english_question_keeps_its_subject(question, expected):
    # the Chinese rule cannot find the slot in English words: it returned the English question unchanged
    history = chat(question, "**刘长文** According to 《…》: “据海创汇董事长刘长文介绍…” [1]")
    assert resolve("那青岛呢？", history).question == expected


@pytest.mark.parametrize(
    ("previous", "expected"),
    [("海尔 集团的董事长是谁？", "青岛的董事长是谁？"), ("Haier 集团 的董事长是谁？", "青岛 的董事长是谁？")],
)
def test_an_ellipsis_finds_a_subject_written_with_spaces(previous, expected):
    # the subject's words are joined without the spaces: the question came back unchanged
    assert resolve("那青岛呢？", chat(previous, "「…」[1]")).question == expected


def test_who_said_through_the_library_quotes_the_speaker(sample_searcher):
    """The answer to 「今年…再培育多少家？」 quotes the claim only; 「是谁说的？」 then finds 肖亚庆
    in the claim's paragraph and the answer quotes the sentence that names him."""
    first = sample_searcher.ask("今年国家级“小巨人”企业准备再培育多少家？", llm=False)
    assert "3000家以上" in first.text
    follow = sample_searcher.ask("是谁说的？", history=chat(first.question, first.text), llm=False)
    assert follow.understood and "肖亚庆" in follow.understood
    assert follow.answered and "肖亚庆" in follow.text


# ------------------------------------------------------------ English questions: Chinese words for the lexical leg


def test_english_names_and_terms_become_chinese_words():
    from sme_qa.crosslingual import PinyinNames, chinese_terms

    names = PinyinNames(["#青岛", "#海创", "#创汇", "#北京", "#背景", "董事长", "#董事"])
    assert PinyinNames(["青岛", "海创汇"]).names("Who founded Haichuanghui in Qingdao?") == ["海创汇", "青岛"]  # words, no bigrams
    assert chinese_terms("Who is the chairman of Haichuanghui?", names) == ["董事长", "海创汇"]
    assert chinese_terms("What about Beijing?", names) == ["北京"]  # not 背景, a common word spelled the same
    assert chinese_terms("How many little giants does Qingdao have?", names) == ["小巨人", "青岛"]
    assert chinese_terms("Who sang the national anthem?", names) == []
    assert chinese_terms("青岛有多少家？", names) == []


def test_english_question_reaches_chinese_text_lexically(sample_searcher):
    hits = sample_searcher.retrieve("Who is the chairman of Haichuanghui?", k=5)
    liu = [h for h in hits if "刘长文" in h.text]
    assert liu and liu[0].lexical_rank == 1
