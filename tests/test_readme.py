"""The README's notebook snippet, run as written over the sample index, prints what it says.

Each expression line's ``# comment`` is its expected value: a tuple of literals (a string
ending in ``…`` is a prefix; a float is compared to the digits shown), optionally after a
``words:`` label or before a ``(remark)``; a ``print(...)`` line's comment is its output,
``…`` standing for any text.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import tokenize
from pathlib import Path
from typing import Any

import pytest

from sme_qa import search

README = Path(__file__).resolve().parent.parent / "README.md"


def notebook_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## From a notebook") :]
    return section[section.index("```python\n") + len("```python\n") : section.index("```\n", section.index("```python"))]


def comments(source: str) -> dict[int, str]:
    found = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found[tok.start[0]] = tok.string[1:].strip()
    return found


def check_value(got: Any, expected: str) -> None:
    if expected[:1] not in "'\"0123456789-(":
        expected = expected.split(": ", 1)[1]  # "each leg's evidence: 2, 1"
    expected = re.sub(r"\s+\([^()']*\)$", "", expected)  # "'…' (the question answered)": a remark after the value
    prefixes = re.findall(r"'([^']*)…'", expected)
    literal = ast.literal_eval(re.sub(r"…'", "'", expected))
    values = got if isinstance(got, tuple) else (got,)
    wanted = literal if isinstance(literal, tuple) else (literal,)
    assert len(values) == len(wanted), (got, expected)
    for value, want in zip(values, wanted):
        if isinstance(want, str) and want in prefixes:
            assert str(value).startswith(want), (value, want)
        elif isinstance(want, float):
            digits = len(repr(want).split(".")[1])
            assert round(value, digits) == want, (value, want)
        else:
            assert value == want, (value, want)


def check_printed(out: str, expected: str) -> None:
    pattern = r"\s*".join(re.escape(part) if part != "…" else ".*?" for part in re.split(r"(…)|\s+", expected) if part)
    assert re.match(pattern, out, re.S), (out[:300], expected)


def test_notebook_snippet_prints_what_the_readme_says(sample_index, tmp_path, monkeypatch):
    pytest.importorskip("pandas")  # the last line needs it; gradio installs it
    source = notebook_snippet()
    expected = comments(source)
    (tmp_path / "vectors").symlink_to(sample_index)
    monkeypatch.chdir(tmp_path)  # "the default index in vectors/"
    monkeypatch.setattr(search, "_default", None)
    namespace: dict[str, Any] = {}
    checked = 0
    for stmt in ast.parse(source).body:
        code = ast.get_source_segment(source, stmt)
        comment = expected.get(stmt.end_lineno)
        if isinstance(stmt, ast.Expr) and comment:
            call = stmt.value
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "print":
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    exec(compile(code, "README.md", "exec"), namespace)
                check_printed(out.getvalue(), comment)
            elif code.startswith("sme_qa.hits_dataframe"):
                frame = eval(compile(code, "README.md", "eval"), namespace)
                assert list(frame["chunk_id"]) == [h.chunk_id for h in namespace["hits"]]
            else:
                check_value(eval(compile(code, "README.md", "eval"), namespace), comment)
            checked += 1
        else:
            exec(compile(code, "README.md", "exec"), namespace)
    assert checked >= 4
