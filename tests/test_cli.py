"""The ``sme-qa`` command line: every command's output, ``--json`` schema and exit status.

Commands run in this process through ``cli.main`` (output captured by pytest), over the
session's sample index or a copy of it; ``serve`` runs as a real child process.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

import httpx
import pytest

from sme_qa.cli import main
from sme_qa.records import Answer, Hit
from sme_qa.store import read_manifest

from servers import ChildServer, free_port

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
SEED = ROOT.parent / "shared" / "eval" / "seed_qa.jsonl"
QUESTION = "我国已培育了多少家专精特新“小巨人”企业？"
SUMMARY_KEYS = {
    "vectors",
    "articles_added",
    "articles_changed",
    "articles_removed",
    "articles_unchanged",
    "chunks_embedded",
    "chunks_reused",
    "chunks_removed",
    "chunks_total",
    "seconds",
    "written",
    "rebuilt",
    "skipped",
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, starts: str) -> None:
    """A user error: exactly one line on stderr, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(starts), lines[0]
    assert "Traceback" not in err


def sample_ids() -> list[str]:
    return sorted(p.stem for p in CORPUS.glob("*.txt"))


# ---------------------------------------------------------------- corpus


def test_corpus_lists_every_article(capsys):
    code, out, err = run(capsys, "corpus", "--corpus", CORPUS, "--json")
    assert code == 0
    rows = json.loads(out)
    assert sorted(r["id"] for r in rows) == sample_ids()
    for r in rows:
        assert set(r) == {"id", "date", "title", "paragraphs", "chunks"}
        assert r["title"] and r["paragraphs"] >= 1 and r["chunks"] >= 1
    code, out, err = run(capsys, "corpus", "--corpus", CORPUS)
    assert code == 0 and len(out.strip().splitlines()) == len(rows)
    assert err.strip() == f"{len(rows)} articles, 0 skipped"


def test_corpus_shows_one_article_with_its_chunks(capsys):
    doc = sample_ids()[0]
    code, out, _ = run(capsys, "corpus", doc, "--corpus", CORPUS, "--json")
    assert code == 0
    article = json.loads(out)
    assert article["id"] == doc and article["chunks"]
    text = "\n\n".join(p["text"] for p in article["paragraphs"])
    for c in article["chunks"]:
        assert set(c) == {"id", "doc_id", "text", "paragraphs", "start", "end", "hash"}
        assert text[c["start"] : c["end"]] == c["text"]
    code, out, _ = run(capsys, "corpus", doc, "--corpus", CORPUS)
    assert code == 0 and f"id:     {doc}" in out and f"chunks: {len(article['chunks'])}" in out


def test_corpus_errors_are_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "corpus", "no-such-id", "--corpus", CORPUS)
    assert code == 1
    one_line_error(err, "sme-qa: no article 'no-such-id'")
    code, _, err = run(capsys, "corpus", "--corpus", tmp_path / "missing")
    assert code == 1
    one_line_error(err, "sme-qa: ")
    assert str(tmp_path / "missing") in err


def test_corpus_strict_turns_skipped_files_into_an_exit_status(capsys, caplog, corpus_copy):
    (corpus_copy / "empty.txt").write_text("", encoding="utf-8")
    code, _, err = run(capsys, "corpus", "--corpus", corpus_copy)
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped ")]
    assert code == 0 and skipped == [f"skipped {corpus_copy / 'empty.txt'}: empty file; write the article into it or remove it"]
    code, _, err = run(capsys, "corpus", "--corpus", corpus_copy, "--strict")
    assert code == 1 and "1 skipped" in err


# ---------------------------------------------------------------- index


def test_index_reports_what_it_did(capsys, corpus_copy, index_copy):
    code, out, _ = run(capsys, "index", "--corpus", corpus_copy, "--vectors", index_copy, "--json")
    assert code == 0
    summary = json.loads(out)
    assert set(summary) == SUMMARY_KEYS
    assert summary["written"] is False and summary["chunks_embedded"] == 0
    assert summary["articles_unchanged"] == len(sample_ids())

    path = corpus_copy / "003_65fb6e7c8d0e95bc.txt"
    path.write_text(path.read_text(encoding="utf-8").replace("20％提高到40％", "20％提高到45％"), encoding="utf-8")
    code, out, _ = run(capsys, "index", "--corpus", corpus_copy, "--vectors", index_copy)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == f"articles: 0 added, 1 changed, 0 removed, {len(sample_ids()) - 1} unchanged"
    assert lines[1].startswith("chunks: 1 embedded, ")
    assert lines[2].startswith(f"index written to {index_copy}/ in ")


def test_index_errors_are_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "index", "--corpus", tmp_path / "nothing-here", "--vectors", tmp_path / "v")
    assert code == 1
    one_line_error(err, "sme-qa: ")
    assert "nothing-here" in err


# ---------------------------------------------------------------- search and ask


def test_search_json_is_a_list_of_hits(capsys, sample_index):
    code, out, _ = run(capsys, "search", QUESTION, "--vectors", sample_index, "-k", "3", "--json")
    assert code == 0
    hits = json.loads(out)
    assert 1 <= len(hits) <= 3
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1))
    for h in hits:
        assert set(h) == {f.name for f in fields(Hit)}
    assert "8997" in hits[0]["text"]
    code, out, _ = run(capsys, "search", QUESTION, "--vectors", sample_index, "-k", "2")
    assert code == 0 and out.startswith("1. ") and "dense #" in out and "lexical #" in out


def test_search_filters_by_source_and_mode(capsys, sample_searcher, sample_index):
    by_source: dict[str, set[str]] = {}
    for a in sample_searcher.articles():
        by_source.setdefault(a.source or "", set()).add(a.id)
    source = min((s for s in by_source if s), key=lambda s: len(by_source[s]))
    code, out, _ = run(
        capsys, "search", "专精特新企业", "--vectors", sample_index, "-k", "20", "--source", source, "--mode", "lexical", "--json"
    )
    assert code == 0
    hits = json.loads(out)
    assert hits and {h["doc_id"] for h in hits} <= by_source[source]
    assert all(h["source"] == source and h["dense_rank"] is None for h in hits)


def test_search_errors_are_one_line(capsys, sample_index, tmp_path):
    code, _, err = run(capsys, "search", "  ", "--vectors", sample_index)
    assert code == 1
    one_line_error(err, "sme-qa: the question is empty")
    code, _, err = run(capsys, "search", QUESTION, "--vectors", tmp_path / "none")
    assert code == 1
    one_line_error(err, f"sme-qa: no index in {tmp_path / 'none'}/: run `sme-qa index")


def test_bad_arguments_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["search"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["search", "q", "--mode", "fuzzy"])
    assert exc.value.code == 2


def test_ask_json_is_an_answer_with_citations(capsys, sample_index):
    code, out, _ = run(capsys, "ask", QUESTION, "--vectors", sample_index, "--no-llm", "--json")
    assert code == 0
    answer = json.loads(out)
    assert set(answer) == {f.name for f in fields(Answer)}
    assert answer["answered"] is True and "8997" in answer["text"]
    assert answer["citations"] and all(f"[{c['number']}]" in answer["text"] for c in answer["citations"])
    assert set(answer["citations"][0]["hit"]) == {f.name for f in fields(Hit)}
    code, out, _ = run(capsys, "ask", QUESTION, "--vectors", sample_index, "--no-llm")
    assert code == 0 and "8997" in out and "\n来源 Sources:\n[1] " in out


# ---------------------------------------------------------------- eval


def test_eval_reports_every_mode_and_fails_under_a_floor(capsys, index_copy):
    if not SEED.exists():
        pytest.skip(f"{SEED} not found")
    argv = ["eval", SEED, "--corpus", CORPUS, "--vectors", index_copy, "--k", "1,5", "--json"]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    report = json.loads(out)
    rows = [json.loads(line) for line in SEED.read_text(encoding="utf-8").splitlines() if line.strip()]
    answerable = sum(bool(r["docs"]) for r in rows)
    assert (report["n"], report["unanswerable"]) == (answerable, len(rows) - answerable)
    assert set(report["modes"]) == {"dense", "lexical", "hybrid"}
    for m in report["modes"].values():
        assert set(m["recall"]) == {"1", "5"} and 0 <= m["recall"]["1"] <= m["recall"]["5"] <= 1
    assert report["modes"]["hybrid"]["recall"]["5"] >= 0.8
    assert report["index"]["written"] is False  # the copy was up to date

    code, out, err = run(capsys, *argv[:-1], "--fail-under", "1.01")
    assert code == 1
    assert out.splitlines()[1] == "| mode | R@1 | R@5 | MRR@10 | q/s |"
    one_line_error(err, "sme-qa: hybrid recall@5 ")


def test_eval_bad_question_file_is_one_line(capsys, tmp_path, sample_index):
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question": "好"}\nnot json\n', encoding="utf-8")
    code, _, err = run(capsys, "eval", bad, "--corpus", CORPUS, "--vectors", sample_index)
    assert code == 1
    one_line_error(err, f"sme-qa: {bad}:2: not JSON")


# ---------------------------------------------------------------- serve


def test_serve_starts_answers_health_and_stops_on_ctrl_c(corpus_copy, index_copy, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "sme_qa", "serve", "--corpus", str(corpus_copy), "--vectors", str(index_copy), "--port", str(port)]
    server = ChildServer(command, port, cwd=tmp_path)
    with server as url:
        health = httpx.get(url + "healthz").json()
        manifest = read_manifest(index_copy)
        assert health == {
            "status": "ok",
            "documents": manifest["counts"]["documents"],
            "chunks": manifest["counts"]["chunks"],
            "built": manifest["built"],
        }
    assert server.code == 0, server.stderr
    assert "sme-qa: stopped" in server.stderr and "Traceback" not in server.stderr


def test_serve_bad_auth_is_one_line(capsys, sample_index):
    code, _, err = run(capsys, "serve", "--auth", "nocolon", "--corpus", CORPUS, "--vectors", sample_index)
    assert code == 1
    one_line_error(err, "sme-qa: --auth / SME_QA_AUTH must look like user:password")
