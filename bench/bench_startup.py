"""Cold start of the chat app: from launching ``python app.py`` to the first answer.

    .venv/bin/python bench/bench_startup.py [--runs 3] [--corpus corpus]

The index is built once beforehand (not timed), so each run is the ordinary start of an
app whose index is present: check the corpus (nothing changed), load the index, import
Gradio, build the UI, listen, then answer one question through ``gradio_client``.
Prints one table, medians over the runs:

* ``import gradio`` / ``import sme_qa.web.server``: a bare interpreter importing them;
* ``server ready``: launch → the URL line on stdout;
* ``first answer``: launch → the ``/ask`` result back in the client (includes the
  client's own connection and the query embedder's first load).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "我国已培育了多少家专精特新“小巨人”企业？"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def one_start(corpus: Path, vectors: Path) -> tuple[float, float, str]:
    from gradio_client import Client

    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--corpus", str(corpus), "--vectors", str(vectors), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    ready = threading.Event()

    def watch() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            if f":{port}/" in line:
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        if not ready.wait(120):
            raise RuntimeError("the app printed no URL within 120 s")
        t_ready = time.perf_counter() - started
        result = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(QUESTION, api_name="/ask")
        t_answer = time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return t_ready, t_answer, result["text"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    args = parser.parse_args()
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from sme_qa.indexing import build_index

    with tempfile.TemporaryDirectory() as tmp:
        vectors = Path(tmp) / "vectors"
        build_index(args.corpus, vectors)
        imports = {m: statistics.median(import_seconds(m) for _ in range(args.runs)) for m in ("gradio", "sme_qa.web.server")}
        runs = [one_start(args.corpus, vectors) for _ in range(args.runs)]
    ready = statistics.median(r[0] for r in runs)
    first = statistics.median(r[1] for r in runs)
    load = os.getloadavg()[0]
    print(
        f"cold start of python app.py, median of {args.runs} runs "
        f"({len(os.sched_getaffinity(0))} CPUs, load average {load:.1f}: other work on the machine slows every row)"
    )
    print(f"{'stage':<28}{'seconds':>9}")
    print(f"{'import gradio':<28}{imports['gradio']:>9.2f}")
    print(f"{'import sme_qa.web.server':<28}{imports['sme_qa.web.server']:>9.2f}")
    print(f"{'server ready (URL printed)':<28}{ready:>9.2f}")
    print(f"{'first answer via client':<28}{first:>9.2f}")
    print(f"{'  of which not Gradio import':<28}{first - imports['gradio']:>9.2f}")
    print(f"first answer: {runs[-1][2][:60]}…")


if __name__ == "__main__":
    main()
