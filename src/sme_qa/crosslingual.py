"""English question → Chinese words for the lexical leg.  Pure but for the pinyin table.

BM25 over Chinese text can only match an English question's Latin tokens, so it adds nothing
(or noise) to the cross-lingual dense match.  Two cheap sources give it Chinese words to match:

* **names spelled in pinyin** (Qingdao, Haichuanghui, Beijing): a Latin word of two syllables or
  more that spells, without tones, a word of the index vocabulary that is a name (jieba tags it
  as a place, person, organisation or other proper noun, or does not know it: 海创汇);
* **a short glossary** of the terms the corpus domain (专精特新 SME policy news) is written in,
  whose English renderings are not pinyin ("little giant" → 小巨人, "listed companies" → 上市公司).

The dense leg still reads the English question as it was asked; only the lexical query grows.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

__all__ = ["GLOSSARY", "PinyinNames", "chinese_terms", "term_groups"]

# English → Chinese terms of the corpus domain.  Hand-written from the wording of the sample
# corpus and of the English examples in README.md and issue 9; only renderings that mean the
# domain term and little else (generic words such as "issued", "recognized", "platform" or
# "the north" fired on xquad_en2zh's Wikipedia questions and cost their rank there).
GLOSSARY: dict[str, tuple[str, ...]] = {
    r"little giants?": ("小巨人",),
    r"speciali[sz]ed,? (?:and )?sophisticated|speciali[sz]ed,? refined|\bsrdi\b": ("专精特新",),
    r"small and medium[- ]sized enterprises?|small and medium enterprises?|\bsmes?\b": ("中小企业",),
    r"listed compan(?:y|ies)": ("上市公司",),
    r"\bchairman\b|\bchairwoman\b": ("董事长",),
    r"\bvice minister\b": ("副部长",),
    r"\bchief engineer\b": ("总工程师",),
    r"\bincubat(?:e|ed|es|ing|ors?)\b": ("孵化",),
    r"\bgazelle (?:enterprises?|compan(?:y|ies))": ("瞪羚",),
    r"\bunicorns?\b": ("独角兽",),
    r"\bcertification measures\b|\bmeasures for (?:the )?certification\b": ("认定办法",),
    r"\bprofit margin\b": ("利润率",),
    r"\byield rate\b": ("良品率",),
    r"\bdigital transformation\b": ("数字化转型",),
    r"\bindustrial internet\b": ("工业互联网",),
    r"\bnorthern china\b": ("北方",),
    r"\bchina\b|\bnationwide\b": ("我国", "全国"),
}
_GLOSSARY = [(re.compile(pattern, re.IGNORECASE), terms) for pattern, terms in GLOSSARY.items()]
_NAME_TAGS = frozenset({"ns", "nr", "nrt", "nrfg", "nt", "nz"})
_HAN_WORD = re.compile(r"^[\u4e00-\u9fff]{2,6}$")
_LATIN_WORD = re.compile(r"[A-Za-z]+")
MIN_PINYIN_LETTERS = 4  # shorter Latin words (an, he, tie…) spell too many Chinese words
MAX_NAME_SYLLABLES = 5


class PinyinNames:
    """Han strings of an index vocabulary by their toneless pinyin (qingdao → 青岛).

    The vocabulary holds words and character bigrams (``#海创``, ``#创汇``); a Latin word is
    cut into pinyin syllables and matched by a chain of bigrams that overlap by one character
    (hai·chuang·hui → 海创 + 创汇 → 海创汇).  A string that jieba's dictionary knows as a common
    word is dropped (背景 is not Beijing); names and words it does not know are kept."""

    def __init__(self, vocabulary: Iterable[str]) -> None:
        self._pairs: dict[tuple[str, str], list[str]] = {}
        self._words: dict[str, list[str]] = {}  # whole words of 3-6 characters by spelling
        syllables: set[str] = set()
        for term in vocabulary:
            text = term[1:] if term.startswith("#") else term
            if not _HAN_WORD.match(text):
                continue
            spelled = [_spell(ch) for ch in text]
            if not all(x.isalpha() for x in spelled):
                continue
            syllables.update(spelled)
            if len(text) == 2:
                self._pairs.setdefault((spelled[0], spelled[1]), []).append(text)
            else:
                self._words.setdefault("".join(spelled), []).append(text)
        self._syllables = frozenset(syllables)

    def _splits(self, word: str) -> list[list[str]]:
        """Every way to cut ``word`` into known syllables (few: pinyin is nearly prefix-free)."""
        out: list[list[str]] = []

        def walk(rest: str, done: list[str]) -> None:
            if len(out) > 8:
                return
            if not rest:
                out.append(done)
                return
            for n in range(min(6, len(rest)), 0, -1):
                if rest[:n] in self._syllables:
                    walk(rest[n:], [*done, rest[:n]])

        walk(word, [])
        return [s for s in out if 2 <= len(s) <= MAX_NAME_SYLLABLES]

    def _strings(self, syllables: list[str]) -> list[str]:
        found = list(self._pairs.get((syllables[0], syllables[1]), []))
        for i in range(2, len(syllables)):
            nxt = self._pairs.get((syllables[i - 1], syllables[i]), [])
            found = [f + p[1] for f in found for p in nxt if p[0] == f[-1]]
        return found

    def names(self, question: str) -> list[str]:
        out: list[str] = []
        for latin in _candidates(question):
            out += self.spell(latin)
        return out

    def spell(self, latin: str) -> list[str]:
        """The names of the vocabulary one lower-case Latin word spells (qingdao → [青岛]); none
        when it spells no name, or so many strings that it is syllable soup, not a name."""
        tags = _dictionary_tags()
        found = {s for split in self._splits(latin) for s in self._strings(split)} | set(self._words.get(latin, ()))
        found = {s for s in found if tags.get(s, "nz") in _NAME_TAGS}
        return sorted(found) if 0 < len(found) <= 3 else []


def _capitalised_runs(question: str) -> list[list[re.Match[str]]]:
    """Runs of capitalised Latin words after the first word (Xu Xiaolan, Haichuanghui)."""
    runs: list[list[re.Match[str]]] = [[]]
    for m in re.finditer(r"[A-Za-z]+|[^A-Za-z]+", question):
        word = m.group(0)
        if word[0].isalpha() and word[0].isupper() and m.start() > 0:
            runs[-1].append(m)
        elif not word.isspace():
            runs.append([])
    return [r for r in runs if r]


def _candidates(question: str) -> list[str]:
    """Capitalised Latin words, and runs of two or three of them joined (Xu Xiaolan → xuxiaolan)."""
    out = []
    for matches in _capitalised_runs(question):
        run = [m.group(0).lower() for m in matches]
        out += [w for w in run if len(w) >= MIN_PINYIN_LETTERS]
        out += ["".join(run[i : i + n]) for n in (2, 3) for i in range(len(run) - n + 1)]
    return list(dict.fromkeys(out))


@functools.lru_cache(maxsize=8192)
def _spell(char: str) -> str:
    from pypinyin import lazy_pinyin

    return lazy_pinyin(char)[0]


@functools.lru_cache(maxsize=1)
def _dictionary_tags() -> dict[str, str]:
    """jieba's dictionary part-of-speech tags (word → tag), read once."""
    import jieba.posseg

    return dict(jieba.posseg.dt.word_tag_tab)


def chinese_terms(question: str, names: PinyinNames | None = None) -> list[str]:
    """The Chinese words an English ``question`` stands for (none for a Chinese question)."""
    if re.search(r"[\u3400-\u9fff]", question):
        return []
    out = [term for pattern, terms in _GLOSSARY if pattern.search(question) for term in terms]
    if names is not None:
        out += names.names(question)
    return list(dict.fromkeys(out))


def term_groups(question: str, names: PinyinNames) -> tuple[tuple[str, ...], ...]:
    """What an English ``question`` names, as groups of Chinese words any one of which stands for
    it: one group per glossary term ("China" → 我国 / 全国) and per run of capitalised words
    spelling a name (Haichuanghui → 海创汇).  Empty for a Chinese question, and when a capitalised
    word is neither (Shanghai where no text names 上海, Tesla, AR): the question then names
    something these words do not cover, so they cannot vouch for a sentence (``reader.judge``)."""
    if re.search(r"[\u3400-\u9fff]", question):
        return ()
    groups: list[tuple[str, ...]] = []
    covered: list[tuple[int, int]] = []
    for pattern, terms in _GLOSSARY:
        m = pattern.search(question)
        if m:
            groups.append(terms)
            covered.append(m.span())
    for run in _capitalised_runs(question):
        words = [m for m in run if not any(a <= m.start() < b for a, b in covered)]
        if not words:
            continue
        whole = names.spell("".join(m.group(0).lower() for m in words))  # Xu Xiaolan → 徐晓兰
        spelled = [whole] if whole else [names.spell(m.group(0).lower()) if len(m.group(0)) >= MIN_PINYIN_LETTERS else [] for m in words]
        if not all(spelled):
            return ()
        groups += [tuple(found) for found in spelled]
    return tuple(groups)
