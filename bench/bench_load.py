"""Load on the chat server: N concurrent ``gradio_client`` clients asking ``/ask`` for a bounded time.

    .venv/bin/python bench/bench_load.py [--clients 24] [--seconds 60] [--vectors DIR] [--corpus corpus]

Starts ``python -m sme_qa serve`` on a free 127.0.0.1 port (its own process, so its RSS
is its own), asks each question once to record the reference answers, then lets N client
threads ask the questions round-robin until the time is up.  Prints one table: asks,
asks/s, latency p50/p95/max, errors, answers that differ from the reference, the
server's RSS before and after, and the load average before and after (the machine may
be shared: read the timings beside it).  The clients pass ``ssl_verify=False``: they speak
plain HTTP to 127.0.0.1, and otherwise httpx builds a CA-loaded SSL context for each of
gradio_client's requests (70% of the client's CPU in py-spy), so the load generator,
not the server, would be measured.  Without --vectors the sample corpus is indexed
into a temporary folder first (not timed).  Goal (issue #10): >= 50 asks/s at 24 clients
with p95 <= 0.5 s on 2 cores, 0 errors, answers unchanged.
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
QUESTIONS = [
    "我国已培育了多少家专精特新“小巨人”企业？",
    "海创汇首创的是什么创业模式？",
    "纽氏达特的整体利润率提高到了多少？",
    "青岛有多少家专精特新企业？",
    "专精特新企业有多少家？",
    "火星上第一座城市的市长叫什么名字？",  # a refusal is an answer too
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def key(result: dict) -> tuple:
    """What must not change under load: the text, the verdict and what is cited."""
    return result["text"], result["answered"], tuple((c["doc_id"], c["quote"]) for c in result["citations"])


def start_server(corpus: Path, vectors: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sme_qa",
            "serve",
            "--corpus",
            str(corpus),
            "--vectors",
            str(vectors),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 180
    assert proc.stdout is not None
    for line in proc.stdout:
        if f"http://127.0.0.1:{port}/" in line:
            return proc
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit(f"the server did not start: {proc.stderr.read() if proc.stderr else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    parser.add_argument("--vectors", type=Path, help="an index of --corpus (default: build one in a temp dir)")
    args = parser.parse_args()
    from gradio_client import Client

    with tempfile.TemporaryDirectory() as tmp:
        vectors = args.vectors
        if vectors is None:
            from sme_qa.indexing import build_index

            vectors = Path(tmp) / "vectors"
            print(f"indexing {args.corpus} into {vectors} (not timed) …", file=sys.stderr)
            build_index(args.corpus, vectors)
        port = free_port()
        server = start_server(args.corpus, vectors, port)
        url = f"http://127.0.0.1:{port}/"
        try:
            first = Client(url, verbose=False, download_files=False, ssl_verify=False)
            reference = {q: key(first.predict(q, api_name="/ask")) for q in QUESTIONS}
            rss_before, load_before = rss_mb(server.pid), os.getloadavg()
            clients = [Client(url, verbose=False, download_files=False, ssl_verify=False) for _ in range(args.clients)]
            latencies: list[float] = []
            errors: list[str] = []
            changed: list[str] = []
            lock = threading.Lock()
            stop = time.monotonic() + args.seconds

            def worker(n: int, client) -> None:
                i = n
                while time.monotonic() < stop:
                    question = QUESTIONS[i % len(QUESTIONS)]
                    i += 1
                    started = time.perf_counter()
                    try:
                        result = client.predict(question, api_name="/ask")
                    except Exception as exc:  # noqa: BLE001 - counted and shown, the run goes on
                        with lock:
                            errors.append(f"{type(exc).__name__}: {exc}")
                        continue
                    took = time.perf_counter() - started
                    with lock:
                        latencies.append(took)
                        if key(result) != reference[question]:
                            changed.append(question)

            began = time.perf_counter()
            server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
            threads = [threading.Thread(target=worker, args=(n, c), daemon=True) for n, c in enumerate(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=args.seconds + 120)
            elapsed = time.perf_counter() - began
            server_cpu, client_cpu = cpu_seconds(server.pid) - server_cpu, time.process_time() - client_cpu
            rss_after, load_after = rss_mb(server.pid), os.getloadavg()
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()

    lat = sorted(latencies)
    pct = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]) if lat else (lambda p: float("nan"))
    rows = [
        ("clients", f"{args.clients}"),
        ("seconds", f"{elapsed:.1f}"),
        ("asks", f"{len(lat)}"),
        ("asks/s", f"{len(lat) / elapsed:.1f}"),
        ("p50 s", f"{pct(0.50):.3f}"),
        ("p95 s", f"{pct(0.95):.3f}"),
        ("max s", f"{lat[-1] if lat else float('nan'):.3f}"),
        ("mean s", f"{statistics.fmean(lat) if lat else float('nan'):.3f}"),
        ("errors", f"{len(errors)}"),
        ("answers changed", f"{len(changed)}"),
        ("server CPU ms per ask", f"{1000 * server_cpu / max(1, len(lat)):.1f}"),
        ("client CPU ms per ask", f"{1000 * client_cpu / max(1, len(lat)):.1f}"),
        ("server RSS MB before/after", f"{rss_before:.0f} / {rss_after:.0f}"),
        ("load avg before (1/5/15 min)", " ".join(f"{x:.2f}" for x in load_before)),
        ("load avg after (1/5/15 min)", " ".join(f"{x:.2f}" for x in load_after)),
        ("cores", f"{os.cpu_count()}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"bench_load: {args.clients} gradio_client clients x {args.seconds:.0f} s against python -m sme_qa serve")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    for e in sorted(set(errors))[:5]:
        print(f"  error: {e}")


if __name__ == "__main__":
    main()
