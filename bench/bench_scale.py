"""A million chunks on one machine: build, one-article update and delete, retrieval, cold start, RSS, disk.

    .venv/bin/python bench/bench_scale.py --chunks 100000 [--json] [--index auto|flat|ivf|hnsw]
                                          [--vectors clustered|random] [--queries 200] [--dir DIR]

The corpus is synthetic but made of real text: ``--chunks``/10 article files (HTML with
front matter, 1,000 to a folder), each of ten paragraphs, each paragraph one real
cmrc2018_dev sentence plus a serial number ("……。第12号34。") so that no two chunks are
equal; titles are real cmrc2018_dev titles.  **The vectors are synthetic**: embedding a
million chunks takes hours on 2 cores, so the bench writes the base index itself —
the library's own reader, chunker, tokenizer counts (jieba runs once per distinct
sentence, the serial numbers' terms are added by rule and checked against the real
tokenizer on a sample), vector bank and vector store, exactly the files and manifest
``sme-qa index`` writes — with ``--vectors clustered`` (default: each a unit vector near
one of 2,000 random centres, like the clusters of real embeddings) or ``random`` (uniform
unit vectors, the worst case for any approximate index).  ``build_s`` is the time of that
write (store training included, embedding excluded).  Everything after is the real
product in fresh processes:

* ``update_one_article_s``: wall time of ``sme-qa index`` after one article's paragraph
  is edited (the real model embeds the changed chunk); ``delete_one_article_s`` after
  one article file is deleted;
* ``retrieve_p50_ms`` / ``retrieve_p95_ms``: warm hybrid ``retrieve(k=5)`` on cmrc2018_dev
  questions, query vectors cached (the query embedding is timed separately by
  bench_retrieval.py), in this process;
* ``ann_recall_at_10``: the store's top 10 against exact inner-product search (numpy),
  for queries drawn like the vectors;
* ``cold_search_s`` / ``serving_rss_mb``: wall time and peak RSS of a fresh-process
  ``sme-qa search``; ``disk_mb``: the vectors folder.

The load average is printed beside the timings: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval" / "cmrc2018_dev"
PER_ARTICLE = 10
_MARKUP = re.compile(r"[<>&\s]")  # sentences the cleaner would change are left out
KEYS = (
    "chunks",
    "index_type",
    "build_s",
    "update_one_article_s",
    "delete_one_article_s",
    "retrieve_p50_ms",
    "retrieve_p95_ms",
    "ann_recall_at_10",
    "cold_search_s",
    "serving_rss_mb",
    "disk_mb",
)


def log(*parts: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}]", *parts, file=sys.stderr, flush=True)


def pools() -> tuple[list[str], list[str]]:
    from sme_qa.text import split_sentences

    sentences: list[str] = []
    titles: list[str] = []
    for line in EVAL.joinpath("passages.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        titles.append(row["title"])
        sentences += [
            s.strip()
            for s in split_sentences(row["text"])
            if 60 <= len(s.strip()) <= 200 and s.strip().endswith("。") and not _MARKUP.search(s)
        ]
    return list(dict.fromkeys(sentences)), list(dict.fromkeys(t for t in titles if 2 <= len(t) <= 30))


def serial(n: int) -> str:
    return f"第{n % 1000}号{n // 1000}。"


def write_corpus(root: Path, articles: int, sentences: list[str], titles: list[str]) -> list[tuple[int, list[int]]]:
    """The article files; returns (title index, sentence indexes) per article."""
    rng = random.Random(0)
    plan = []
    for i in range(articles):
        t, s = rng.randrange(len(titles)), [rng.randrange(len(sentences)) for _ in range(PER_ARTICLE)]
        plan.append((t, s))
        sub = root / f"{i // 1000:04d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        body = "\n".join(f"<p>{sentences[k]}{serial(i * PER_ARTICLE + j)}</p>" for j, k in enumerate(s))
        day = f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}"
        (sub / f"a{i:07d}.html").write_text(f"---\ntitle: {titles[t]}\ndate: {day}\n---\n{body}\n", encoding="utf-8")
    return plan


def synthetic_vectors(n: int, kind: str, seed: int, centres: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, 384), dtype=np.float32)
    for lo in range(0, n, 100_000):
        m = min(100_000, n - lo)
        x = rng.standard_normal((m, 384), dtype=np.float32)
        if kind == "clustered" and centres is not None:
            x = centres[rng.integers(0, len(centres), m)] + 0.05 * x  # |noise| ≈ 1, like the centre
        out[lo : lo + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def build_base(
    corpus: Path, vectors: Path, plan: list, sentences: list[str], titles: list[str], index_type: str, vector_kind: str
) -> float:
    """Write the index ``sme-qa index`` would write for ``corpus`` (synthetic vectors); returns seconds."""
    import scipy.sparse as sp

    from sme_qa._version import __version__
    from sme_qa.chunking import ChunkSettings, chunk_article
    from sme_qa.corpus import read_source, scan
    from sme_qa.embedding import local_fingerprint
    from sme_qa.indexing import _config, _file_sha1, _sha1, article_hash, doc_hashes, embed_input, lexical_input, pipeline_versions
    from sme_qa.lexical import TermTable, Tokenizer, corpus_vocabulary, count_matrix
    from sme_qa.settings import Settings
    from sme_qa.store import index_lock, resolve_kind, write_generation
    from sme_qa.vector_cache import VectorBank
    from sme_qa.vector_store import new_store

    t0 = time.perf_counter()
    settings = Settings.load(corpus=corpus, vectors=vectors)
    config = _config(settings, ChunkSettings(), index_type)
    fingerprint = local_fingerprint(settings.model)
    assert fingerprint, "the bundled model is not installed"
    used_s = sorted({k for _, s in plan for k in s})
    used_t = sorted({t for t, _ in plan})
    vocabulary = corpus_vocabulary([titles[t] for t in used_t] + [sentences[k] for k in used_s])
    tokenizer = Tokenizer(vocabulary)
    table = TermTable()
    # count rows per distinct title, sentence and serial-number part; a chunk's row is their sum
    title_tf = count_matrix([tokenizer.tokens(titles[t]) for t in range(len(titles))], table)
    sent_tf = count_matrix([tokenizer.tokens(s) for s in sentences], table)
    log(f"tokenised {len(sentences)} sentences and {len(titles)} titles")
    scanned, _ = scan(corpus)
    docs, chunk_rows, sources = [], [], {}
    title_idx, sent_idx, serials = [], [], []
    checked = 0
    for a_no, src in enumerate(scanned):
        (article,), _ = read_source(src)
        docs.append({**article.to_dict(), "hash": article_hash(article)})
        sources[src.rel] = {"size": src.size, "mtime_ns": src.mtime_ns, "sha1": _file_sha1(src.real), "docs": [article.id]}
        t, s = plan[int(src.real.stem[1:])]
        chunks = chunk_article(article)
        assert len(chunks) == PER_ARTICLE, f"{src.rel}: {len(chunks)} chunks"
        for j, c in enumerate(chunks):
            n = int(src.real.stem[1:]) * PER_ARTICLE + j
            assert c.text == sentences[s[j]] + serial(n), (c.text, sentences[s[j]])
            lex = lexical_input(article.title, c.text)
            row = {**c.to_dict(), "input_hash": _sha1(embed_input(article.title, c.text)), "lexical_hash": _sha1(lex)}
            chunk_rows.append({**row, "title": article.title, "vid": len(chunk_rows)})
            title_idx.append(t)
            sent_idx.append(s[j])
            serials.append(n)
            if a_no % 997 == 0 and checked < 300:  # the rule for the serial's terms, checked
                checked += 1
                want = sorted(tokenizer.tokens(lex))
                got = sorted(tokenizer.tokens(titles[t]) + tokenizer.tokens(sentences[s[j]]) + tokenizer.tokens(serial(n)))
                assert want == got, f"tokens of a chunk are not the sum of its parts: {lex}"
        if a_no % 20_000 == 0:
            log(f"read {a_no} articles")
    serial_tf = count_matrix([tokenizer.tokens(serial(n)) for n in serials], table)
    n_terms = len(table.terms)
    for m in (title_tf, sent_tf):
        m.resize((m.shape[0], n_terms))
    tf = (title_tf[title_idx] + sent_tf[sent_idx] + serial_tf).tocsr().astype(np.int32)
    log(f"count matrix {tf.shape}, {tf.nnz} non-zeros")
    n = len(chunk_rows)
    centres = synthetic_vectors(2000, "random", 1)
    vecs = synthetic_vectors(n, vector_kind, 2, centres)
    bank = VectorBank(vectors)
    for lo in range(0, n, VectorBank.BATCH_ROWS):
        hi = min(n, lo + VectorBank.BATCH_ROWS)
        bank.add(settings.model, fingerprint, [r["input_hash"] for r in chunk_rows[lo:hi]], vecs[lo:hi])
    t_store = time.perf_counter()
    store = new_store("faiss", 384, resolve_kind(index_type, n), vecs, np.arange(n, dtype=np.int64))
    log(f"vector store {store.describe()} in {time.perf_counter() - t_store:.1f} s")
    manifest = {
        "package": f"sme-qa {__version__}",
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
        "pipeline": pipeline_versions(),
        "fingerprint": fingerprint,
        "backend": "bench_scale synthetic vectors",
        "dimension": 384,
        "normalized": True,
        "metric": "inner_product",
        "index_type": store.kind,
        "next_vid": n,
        "updated_in_place": False,
        "counts": {"documents": len(docs), "chunks": n, "terms": n_terms},
        "sources": sources,
        "documents": doc_hashes(docs),
    }
    lexical = {"terms": table.terms, "vocabulary": sorted(vocabulary), **config["lexical"]}
    with index_lock(vectors):
        write_generation(vectors, manifest, store, chunk_rows, docs, sp.csr_matrix(tf), lexical)
    del vecs, store, chunk_rows, docs, tf
    return time.perf_counter() - t0


# The child reports its own peak RSS (VmHWM of the address space exec gave it): the
# ru_maxrss that wait4 returns counts the bench's own pages, which the fork copied.
_PEAK = (
    "import atexit, runpy, sys\n"
    "def peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'): sys.stderr.write('\\nbench-peak-kb ' + line.split()[1] + '\\n')\n"
    "atexit.register(peak)\n"
    "sys.argv = ['sme-qa', *sys.argv[1:]]\n"
    "runpy.run_module('sme_qa', run_name='__main__', alter_sys=True)\n"
)


def sme_qa(*args: str) -> tuple[float, float, str]:
    """(wall s, peak RSS MB, stdout) of a fresh ``sme-qa`` process."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-c", _PEAK, *args], stdout=out, stderr=err)
        _, status, _usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stderr = err.read().decode()
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"sme-qa {' '.join(args)} failed: {stderr[-2000:]}")
        peaks = re.findall(r"bench-peak-kb (\d+)", stderr)
        return wall, int(peaks[-1]) / 1024 if peaks else float("nan"), out.read().decode()


def recall_at_10(vectors: Path, queries: np.ndarray, truth: np.ndarray) -> float:
    """The store's top 10 against exact search over the vectors as they were embedded
    (``truth``, row = vid, for the base; the store's own for vids added since): the loss of
    the IVF's probing and of its 8-bit codes together."""
    from sme_qa.store import load_generation

    gen = load_generation(vectors, lazy=True)
    assert gen.store is not None
    got = gen.store.search(queries, 10)[1]
    exact_scores = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    exact_ids = np.zeros((len(queries), 10), dtype=np.int64)
    ids = np.sort(gen.store.ids())
    for lo in range(0, len(ids), 100_000):  # exact search over the stored vectors, in blocks
        part = ids[lo : lo + 100_000]
        block = np.empty((len(part), truth.shape[1]), dtype=np.float32)
        known = part < len(truth)
        block[known] = truth[part[known]]
        block[~known] = gen.store.vectors(part[~known])
        s = queries @ block.T
        both_s = np.concatenate([exact_scores, s], axis=1)
        both_i = np.concatenate([exact_ids, np.broadcast_to(part, s.shape)], axis=1)
        top = np.argsort(-both_s, axis=1)[:, :10]
        exact_scores, exact_ids = np.take_along_axis(both_s, top, 1), np.take_along_axis(both_i, top, 1)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), exact_ids.tolist())]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunks", type=int, required=True)
    ap.add_argument("--json", action="store_true", help="print one JSON object with the keys of the table")
    ap.add_argument("--index", default="auto", choices=["auto", "flat", "ivf", "hnsw"])
    ap.add_argument("--vectors", default="clustered", choices=["clustered", "random"])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dir", type=Path, help="work here and keep it (default: a temporary folder, removed)")
    args = ap.parse_args()

    work = args.dir or Path(tempfile.mkdtemp(prefix="bench_scale-"))
    corpus, vectors = work / "corpus", work / "vectors"
    env_cache = os.environ.get("SME_QA_CACHE")
    try:
        sentences, titles = pools()
        articles = args.chunks // PER_ARTICLE
        log(f"{len(sentences)} sentences, {len(titles)} titles; writing {articles} articles to {corpus}")
        shutil.rmtree(work / "corpus", ignore_errors=True)
        shutil.rmtree(vectors, ignore_errors=True)
        plan = write_corpus(corpus, articles, sentences, titles)
        build = build_base(corpus, vectors, plan, sentences, titles, args.index, args.vectors)
        log(f"base index written in {build:.1f} s")
        out: dict[str, object] = {"chunks": articles * PER_ARTICLE, "build_s": round(build, 1)}
        index_args = ("index", "--corpus", str(corpus), "--vectors", str(vectors), "--index", args.index, "--json")

        # one article edited: one paragraph's sentence replaced
        victim = corpus / f"{(articles // 2) // 1000:04d}" / f"a{articles // 2:07d}.html"
        text = victim.read_text(encoding="utf-8")
        old = plan[articles // 2][1][3]
        victim.write_text(text.replace(sentences[old], sentences[(old + 1) % len(sentences)], 1), encoding="utf-8")
        wall, rss, stdout = sme_qa(*index_args)
        summary = json.loads(stdout)
        log(f"update: {wall:.1f} s, peak RSS {rss:.0f} MB, {summary['chunks_embedded']} embedded, {summary['seconds']} s inside")
        out["update_one_article_s"] = round(wall, 2)
        out["update_peak_rss_mb"] = round(rss)
        (corpus / f"{(articles // 3) // 1000:04d}" / f"a{articles // 3:07d}.html").unlink()
        wall, rss, stdout = sme_qa(*index_args)
        log(f"delete: {wall:.1f} s, peak RSS {rss:.0f} MB, {json.loads(stdout)['articles_removed']} removed")
        out["delete_one_article_s"] = round(wall, 2)

        from sme_qa.search import load

        searcher = load(vectors)
        out["index_type"] = searcher.manifest["index_type"]
        questions = [json.loads(line)["question"] for line in EVAL.joinpath("questions.jsonl").open(encoding="utf-8")][: args.queries]
        searcher.embed_queries(questions)  # cached: the retrieval is timed, not the query embedding
        searcher.retrieve(questions[0], 5)
        times = []
        for q in questions:
            t0 = time.perf_counter()
            searcher.retrieve(q, 5)
            times.append(time.perf_counter() - t0)
        out["retrieve_p50_ms"] = round(float(np.percentile(times, 50)) * 1000, 1)
        out["retrieve_p95_ms"] = round(float(np.percentile(times, 95)) * 1000, 1)
        log(f"retrieve p50 {out['retrieve_p50_ms']} ms, p95 {out['retrieve_p95_ms']} ms")
        del searcher
        centres = synthetic_vectors(2000, "random", 1)
        truth = synthetic_vectors(articles * PER_ARTICLE, args.vectors, 2, centres)  # as build_base made them
        out["ann_recall_at_10"] = round(recall_at_10(vectors, synthetic_vectors(200, args.vectors, 3, centres), truth), 3)
        del truth
        wall, rss, _ = sme_qa("search", questions[1], "--vectors", str(vectors), "--json")
        out["cold_search_s"], out["serving_rss_mb"] = round(wall, 2), round(rss)
        out["disk_mb"] = round(sum(f.stat().st_size for f in vectors.rglob("*") if f.is_file()) / 2**20)
        out["vectors"] = args.vectors
        out["load_avg"] = round(os.getloadavg()[0], 1)
        out["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
        if env_cache is not None:
            os.environ["SME_QA_CACHE"] = env_cache
    if args.json:
        print(json.dumps({k: out.get(k) for k in KEYS} | {k: v for k, v in out.items() if k not in KEYS}))
    else:
        print("| " + " | ".join(k for k in out) + " |")
        print("|" + "---|" * len(out))
        print("| " + " | ".join(str(v) for v in out.values()) + " |")


if __name__ == "__main__":
    main()
