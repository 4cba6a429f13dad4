"""The Ray executor against the local path on one machine: throughput and overheads.

    .venv/bin/python bench/bench_ray.py [--n 2000] [--tokens 150] [--cpus 2] [--threads 1]

Needs the ray extra (``pip install -e '.[ray]'``).  The first ``--n`` cmrc2018_dev
(then drcd_dev) passages of at least ``--tokens`` tokens (cut there) are embedded twice, each in a
fresh interpreter:

* ``local``: ``load_embedder(purpose="index").embed_passages`` in this process (torch
  threads = the CPUs, chosen per batch by measuring, sme_qa.threads);
* ``ray``: ``RayEmbedder`` on a local ``ray.init(num_cpus=--cpus)``: replicas of
  ``--threads`` torch threads each, as many as the CPUs allow.

Printed: start-up (model load; for Ray: ``ray.init``, then the time to the first
finished batch, which holds actor start-up and model loads), steady passages/s (after
the first batch), whole-run passages/s, the ratio of the steady rates, and the
row-wise minimum cosine between the two results.  Other processes share the CPU:
the load average is printed beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from bench_embedding import DEFAULT_PASSAGES, cut_passages, read_texts  # noqa: E402


def worker(path: str, data: Path, cpus: int, threads: int) -> None:
    texts = json.loads(data.read_text(encoding="utf-8"))
    marks: list[tuple[float, int]] = []
    progress = lambda done, total: marks.append((time.perf_counter(), done))  # noqa: E731
    t0 = time.perf_counter()
    if path == "local":
        from sme_qa.embedding import load_embedder

        embedder = load_embedder(purpose="index")
        start = {"model load": time.perf_counter() - t0}
        t1 = time.perf_counter()
        vectors = embedder.embed_passages(texts, batch_size=32, progress=progress)
    else:
        import ray

        from sme_qa.embedding_ray import RayEmbedder, RayOptions

        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        start = {"ray.init": time.perf_counter() - t0}
        t1 = time.perf_counter()
        embedder = RayEmbedder(options=RayOptions(threads=threads, batch_size=32))
        vectors = embedder.embed_passages(texts, progress=progress)
        start["to first batch"] = marks[0][0] - t1
        ray.shutdown()
    end = marks[-1][0]
    first_t, first_n = marks[0]
    steady = (len(texts) - first_n) / (end - first_t) if end > first_t else float("nan")
    np.save(data.with_suffix(f".{path}.npy"), vectors)
    print(
        json.dumps(
            {
                "start": start,
                "steady": steady,
                "whole": len(texts) / (end - t0),
                "embed": len(texts) / (end - t1),
                "backend": embedder.backend,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--tokens", type=int, default=150)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per Ray replica")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.cpus, args.threads)
        return

    from sme_qa.bundled_st import materialize

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        # cmrc2018_dev has 847 passages of 150 tokens or more; drcd_dev's make up the 2,000
        sources = [DEFAULT_PASSAGES, DEFAULT_PASSAGES.parent.parent / "drcd_dev" / "passages.jsonl"]
        texts = cut_passages([t for source in sources for t in read_texts(source)], materialize(), args.n, args.tokens)
        data = Path(tmp) / "texts.json"
        data.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        print(
            f"{len(texts)} passages of {args.tokens} tokens; {args.cpus} CPUs for Ray, "
            f"{args.threads} torch thread(s) a replica; load average {os.getloadavg()[0]:.1f}"
        )
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_TMPDIR": tmp}
        for path in ("local", "ray"):
            out = subprocess.run(
                [sys.executable, __file__, "--worker", path, "--data", str(data), "--cpus", str(args.cpus), "--threads", str(args.threads)],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if out.returncode:
                sys.exit(f"{path} failed:\n{out.stderr[-3000:]}")
            rows[path] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  {path} done, load average {os.getloadavg()[0]:.1f}", flush=True)
        cosine = float(np.sum(np.load(data.with_suffix(".local.npy")) * np.load(data.with_suffix(".ray.npy")), axis=1).min())
    print("\n| path | start-up s | steady passages/s | whole run passages/s | backend |\n|---|---|---|---|---|")
    for path, r in rows.items():
        start = ", ".join(f"{k} {v:.1f}" for k, v in r["start"].items())
        print(f"| {path} | {start} | {r['steady']:.1f} | {r['whole']:.1f} | {r['backend']} |")
    print(
        f"\nRay steady / local steady: {rows['ray']['steady'] / rows['local']['steady']:.2f}; "
        f"min cosine ray vs local {cosine:.5f}; load average after: {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
