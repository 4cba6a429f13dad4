"""The ``sme-qa`` command line.  Heavy imports live inside the commands, so ``--help`` is instant.

A user error is one line on stderr and exit status 1; ``--json`` output is for scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from .errors import SmeQaError

log = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser, *, corpus: bool = False, vectors: bool = False) -> None:
    if corpus:
        p.add_argument("--corpus", help="corpus folder or .jsonl file (env SME_QA_CORPUS, default corpus/)")
        p.add_argument(
            "--max-file-mb",
            type=float,
            metavar="MB",
            help="skip corpus files (and .jsonl lines) larger than this (env SME_QA_MAX_FILE_MB, default 10)",
        )
    if vectors:
        p.add_argument("--vectors", help="index folder (env SME_QA_VECTORS, default vectors/)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")


def _retrieval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-k", type=int, default=5, help="number of passages (default 5)")
    p.add_argument("--mode", choices=["hybrid", "dense", "lexical"], default="hybrid")
    p.add_argument("--date-from", help="only articles dated on or after YYYY-MM-DD")
    p.add_argument("--date-to", help="only articles dated on or before YYYY-MM-DD")
    p.add_argument("--source", action="append", dest="sources", help="only this publisher (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sme-qa", description="Cited answers over Chinese SME news.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("corpus", help="list the corpus, or show one article and its chunks")
    p.add_argument("id", nargs="?", help="document id to show")
    p.add_argument("--strict", action="store_true", help="exit non-zero if any file was skipped")
    _common(p, corpus=True)

    p = sub.add_parser("index", help="embed new or changed chunks into the index")
    p.add_argument("--model", help="sentence-transformers model id or path (env SME_QA_MODEL)")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything")
    p.add_argument("--index", dest="index_type", choices=["auto", "flat", "hnsw", "ivf"], default="auto")
    p.add_argument("--strict", action="store_true", help="exit non-zero if any file was skipped")
    ray = p.add_argument_group("Ray (pip install 'sme-qa[ray]')")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="embed on a Ray cluster: ray://HOST:10001 or auto; no ADDRESS = $RAY_ADDRESS, else a local Ray",
    )
    ray.add_argument("--ray-concurrency", type=int, metavar="N", help="model replicas (default: as the CPUs allow)")
    ray.add_argument("--ray-batch-size", type=int, default=64, metavar="N", help="passages per batch (default 64)")
    ray.add_argument("--ray-threads", type=int, default=1, metavar="N", help="torch threads per replica (default 1)")
    ray.add_argument("--ray-num-cpus", type=float, metavar="X", help="CPUs each replica reserves (default: its share, fractional)")
    ray.add_argument(
        "--ray-timeout", type=float, default=3600.0, metavar="S", help="seconds for the whole Ray run before it is an error (default 3600)"
    )
    _common(p, corpus=True, vectors=True)

    p = sub.add_parser("search", help="the best passages for a question")
    p.add_argument("question")
    _retrieval_options(p)
    _common(p, vectors=True)

    p = sub.add_parser("ask", help="a cited answer to a question")
    p.add_argument("question")
    _retrieval_options(p)
    p.add_argument("--no-llm", action="store_true", help="extractive answer even if an LLM is configured")
    _common(p, vectors=True)

    p = sub.add_parser("chat", help="a conversation in the terminal: follow-ups are understood (Ctrl-D to leave)")
    _retrieval_options(p)
    p.add_argument("--no-llm", action="store_true", help="extractive answers even if an LLM is configured")
    _common(p, vectors=True)

    p = sub.add_parser("eval", help="recall@k / MRR@10 of each retrieval mode on a question set")
    p.add_argument("questions", help="questions .jsonl (seed_qa format or a benchmark set's questions.jsonl)")
    p.add_argument("--k", default="1,5,20", help="cut-offs, comma separated (default 1,5,20)")
    p.add_argument("--modes", default="dense,lexical,hybrid")
    p.add_argument("--fail-under", type=float, help="exit 1 if hybrid recall@5 is below this")
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--answers", action="store_true", help="also ask every question: answer correct, declined, span EM/F1, ask p50/p95")
    _common(p, corpus=True, vectors=True)

    p = sub.add_parser("serve", help="start the chat app (indexes first if needed)")
    p.add_argument("--host", help="address to bind (env SME_QA_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env SME_QA_PORT, default 7860)")
    p.add_argument("--auth", help="user:password for basic auth (env SME_QA_AUTH)")
    _common(p, corpus=True, vectors=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s",
    )
    try:
        return int(COMMANDS[args.command](args) or 0)
    except SmeQaError as exc:
        print(f"sme-qa: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sme-qa: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _emit(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=1, default=str))


# ---------------------------------------------------------------- commands


def cmd_corpus(args) -> int:
    from .chunking import chunk_article
    from .corpus import load_corpus
    from .settings import Settings

    settings = Settings.load(corpus=args.corpus, max_file_mb=args.max_file_mb)
    result = load_corpus(settings.corpus, max_bytes=settings.max_file_bytes)  # logs one line per skipped file
    if args.id:
        article = next((a for a in result.articles if a.id == args.id), None)
        if article is None:
            raise SmeQaError(f"no article {args.id!r} in {settings.corpus}: run `sme-qa corpus` to list the ids")
        chunks = chunk_article(article)
        if args.json:
            _emit({**article.to_dict(), "chunks": [c.to_dict() for c in chunks]})
        else:
            print(f"{article.title}\n  id:     {article.id}\n  date:   {article.date or '-'}")
            print(f"  source: {article.source or '-'}\n  url:    {article.url or '-'}\n  file:   {article.location}")
            print(f"  paragraphs: {len(article.paragraphs)}, chunks: {len(chunks)}\n")
            for c in chunks:
                print(f"[{c.id}] (p{c.paragraphs[0]}-{c.paragraphs[1]}, {c.start}:{c.end})\n{c.text}\n")
    else:
        rows = [(a, len(chunk_article(a))) for a in result.articles]
        if args.json:
            _emit([{"id": a.id, "date": a.date, "title": a.title, "paragraphs": len(a.paragraphs), "chunks": n} for a, n in rows])
        else:
            for a, n in rows:
                print(f"{a.id}\t{a.date or '-':10}\t{len(a.paragraphs):3} ¶ {n:3} chunks\t{a.title}")
            print(f"{len(rows)} articles, {len(result.skipped)} skipped", file=sys.stderr)
    return 1 if args.strict and result.skipped else 0


def cmd_index(args) -> int:
    from .indexing import build_index
    from .progress import progress_bar

    ray_options = None
    if args.ray is not None:
        from .embedding_ray import RayOptions

        ray_options = RayOptions(
            address=args.ray or None,
            concurrency=args.ray_concurrency,
            batch_size=args.ray_batch_size,
            threads=args.ray_threads,
            num_cpus=args.ray_num_cpus,
            timeout=args.ray_timeout,
        )
        if not args.verbose:
            _quiet_ray()
    summary = build_index(
        args.corpus,
        args.vectors,
        model=args.model,
        rebuild=args.rebuild,
        index_type=args.index_type,
        progress=progress_bar(),
        max_file_mb=args.max_file_mb,
        executor="local" if ray_options is None else "ray",
        ray_options=ray_options,
    )  # logs one line per skipped file
    if args.json:
        _emit(summary.to_dict())
    else:
        s = summary
        print(
            f"articles: {s.articles_added} added, {s.articles_changed} changed, {s.articles_removed} removed, "
            f"{s.articles_unchanged} unchanged\nchunks: {s.chunks_embedded} embedded, {s.chunks_reused} reused, "
            f"{s.chunks_removed} removed, {s.chunks_total} in the index\n"
            f"{'index written to' if s.written else 'nothing changed in'} {s.vectors}/ in {s.seconds:.2f} s"
        )
    return 1 if args.strict and summary.skipped else 0


def _quiet_ray() -> None:
    """Ray and Ray Data log each run at INFO/WARNING through handlers of their own: errors only."""
    from .embedding_ray import require_ray

    require_ray()
    import ray.data  # noqa: F401  (sets up its loggers on import)

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _filters(args) -> dict[str, Any]:
    return {"mode": args.mode, "date_from": args.date_from, "date_to": args.date_to, "sources": args.sources}


def cmd_search(args) -> int:
    from .search import load

    hits = load(args.vectors).retrieve(args.question, args.k, **_filters(args))
    if args.json:
        _emit([h.to_dict() for h in hits])
        return 0
    for h in hits:
        legs = f"dense #{h.dense_rank or '-'} lexical #{h.lexical_rank or '-'}"
        print(f"{h.rank}. {h.score:.4f}  {h.title} ({h.date or '-'})  [{h.chunk_id}]  {legs}")
        print(f"   {h.text[:200]}{'…' if len(h.text) > 200 else ''}\n   {h.link}" + (f"  {h.url}" if h.url else ""))
    if not hits:
        print("no passages found")
    return 0


def cmd_ask(args) -> int:
    from .search import load

    answer = load(args.vectors).ask(args.question, k=args.k, llm=False if args.no_llm else None, **_filters(args))
    if args.json:
        _emit(answer.to_dict())
        return 0
    _print_answer(answer)
    return 0


def _print_answer(answer) -> None:
    from .followup import understood_note

    note = understood_note(answer)
    if note:
        print(f"({note})\n")
    print(answer.text)
    if answer.notice:
        print(f"\n({answer.notice})")
    if answer.citations:
        print("\n来源 Sources:")
        for c in answer.citations:
            h = c.hit
            print(f"[{c.number}] {h.title} · {h.source or '-'} · {h.date or '-'}\n    {c.link}" + (f"\n    {h.url}" if h.url else ""))
    if answer.near_misses:
        print("\n可能相关（并非答案） Possibly related, not an answer:")
        for h in answer.near_misses:
            print(f"  - {h.title} ({h.date or '-'}) {h.link}")


CHAT_HISTORY_LINES = 1000


def cmd_chat(args) -> int:
    """Ask, then ask again: the conversation is the history of every answer (Ctrl-D leaves)."""
    from .search import load
    from .settings import Settings

    try:
        import readline  # line editing and ↑ for earlier questions
    except ImportError:  # pragma: no cover - Windows without pyreadline
        readline = None  # type: ignore[assignment]
    searcher = load(args.vectors)
    history_file = Settings.load().cache_dir / "chat-history"
    if readline is not None and history_file.exists():
        try:
            readline.read_history_file(history_file)
        except OSError as exc:
            log.info("could not read %s: %s", history_file, exc)
    messages: list[dict[str, str]] = []
    interactive = sys.stdin.isatty()
    if interactive:
        print("sme-qa chat: 输入问题，回车提问；Ctrl-D 退出。 Type a question; Ctrl-D to leave.")
    try:
        while True:
            try:
                question = input("问> " if interactive else "").strip()
            except EOFError:
                break
            except KeyboardInterrupt:
                print()
                continue
            if not question:
                continue
            try:
                answer = searcher.ask(question, history=messages, k=args.k, llm=False if args.no_llm else None, **_filters(args))
            except SmeQaError as exc:
                print(f"sme-qa: {exc}", file=sys.stderr)
                continue
            if args.json:
                print(json.dumps(answer.to_dict(), ensure_ascii=False, default=str), flush=True)
            else:
                _print_answer(answer)
                print(flush=True)
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer.text}]
    finally:
        if readline is not None and interactive:
            try:
                history_file.parent.mkdir(parents=True, exist_ok=True)
                readline.set_history_length(CHAT_HISTORY_LINES)
                readline.write_history_file(history_file)
            except OSError as exc:
                log.info("could not write %s: %s", history_file, exc)
    if interactive:
        print()
    return 0


def cmd_eval(args) -> int:
    from .evaluate import format_report, run_eval
    from .progress import progress_bar

    report = run_eval(
        args.questions,
        corpus=args.corpus,
        vectors=args.vectors,
        ks=[int(x) for x in args.k.split(",")],
        modes=args.modes.split(","),
        limit=args.limit,
        progress=progress_bar(),
        answers=args.answers,
        max_file_mb=args.max_file_mb,
    )
    if args.json:
        _emit(report)
    else:
        print(format_report(report))
    if args.fail_under is not None:
        got = report["modes"]["hybrid"]["recall"].get("5", 0.0)
        if got < args.fail_under:
            print(f"sme-qa: hybrid recall@5 {got:.3f} is under {args.fail_under}", file=sys.stderr)
            return 1
    return 0


def cmd_serve(args) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from .web.server import serve

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C is how a server is stopped: not an error
        serve(corpus=args.corpus, vectors=args.vectors, host=args.host, port=args.port, auth=args.auth, max_file_mb=args.max_file_mb)
    # serve() returns only once the server has stopped.  Ctrl+C does not always come back as
    # KeyboardInterrupt: uvicorn re-raises the signal into asyncio's runner, which cancels the
    # serving task, and when that task finishes during its shutdown the run just returns.
    print("sme-qa: stopped", file=sys.stderr)
    return 0


COMMANDS = {
    "corpus": cmd_corpus,
    "index": cmd_index,
    "search": cmd_search,
    "ask": cmd_ask,
    "chat": cmd_chat,
    "eval": cmd_eval,
    "serve": cmd_serve,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
