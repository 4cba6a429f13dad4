"""The lexical leg: real jieba tokens and BM25 numbers checked by hand."""

import math

import numpy as np
import pytest

from sme_qa.lexical import BM25, TermTable, Tokenizer, corpus_vocabulary, count_matrix


@pytest.fixture(scope="module")
def tok():
    return Tokenizer(["海创汇", "卡奥斯"])


def test_tokens_drop_stop_words_and_punctuation(tok):
    terms = tok.tokens("我国已培育了多少家专精特新“小巨人”企业？")
    assert "多少" not in terms and "了" not in terms
    assert not any(t in {"？", "“", "”"} for t in terms)
    assert "企业" in terms and "#巨人" in terms


def test_traditional_and_simplified_give_the_same_terms(tok):
    assert tok.tokens("臺灣資訊產業發展") == tok.tokens("台湾资讯产业发展")


def test_full_width_digits_fold(tok):
    assert "99.5%" in tok.tokens("良品率99．5％")


def test_vocabulary_words_stay_whole_and_queries_do_not_mutate_it(tok):
    assert "海创汇" in tok.tokens("海创汇孵化了企业")
    before = len(tok._jieba.FREQ)
    tok.tokens("一个前所未见的新名字叫做琪琪格")
    assert len(tok._jieba.FREQ) == before


def test_corpus_vocabulary_takes_quoted_names():
    found = corpus_vocabulary(["首创“有根创业”模式，入选《专精特新中小企业服务产品目录》和「科创中国」，“Haier”"])
    assert {"有根创业", "科创中国"} <= found
    # a long title is not a name: as one dictionary word it would hide its own words
    assert "专精特新中小企业服务产品目录" not in found and "haier" not in found


def test_bm25_matches_hand_computation():
    docs = [["a", "b", "a"], ["b", "c"], ["c", "c", "c", "d"]]
    table = TermTable()
    tf = count_matrix(docs, table)
    bm = BM25(tf, k1=1.2, b=0.75)
    avg = (3 + 2 + 4) / 3

    def expected(doc, term):
        n_t = sum(term in d for d in docs)
        idf = math.log(1 + (3 - n_t + 0.5) / (n_t + 0.5))
        f = doc.count(term)
        return idf * f * 2.2 / (f + 1.2 * (1 - 0.75 + 0.75 * len(doc) / avg))

    for term in "abcd":
        got = bm.scores([table.ids[term]])
        assert np.allclose(got, [expected(d, term) for d in docs], rtol=1e-5)
    rows, _ = bm.top([table.ids["c"]], k=5)
    assert rows.tolist() == [2, 1]  # doc 0 has no "c": not returned
    rows, _ = bm.top([table.ids["c"]], k=5, mask=np.array([True, False, True]))
    assert rows.tolist() == [2]
    assert bm.top([], k=3)[0].tolist() == []
