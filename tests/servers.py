"""Test helpers: the real app served by uvicorn in a thread, or a server process, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from sme_qa.web.server import ReadyServer


class BackgroundServer:
    """``with BackgroundServer(app) as url: ...`` serves ``app`` until the block ends."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0) -> None:
        self.server = ReadyServer(uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=1))
        self.timeout = timeout
        self.thread = threading.Thread(target=self._run, name="sme-qa-server", daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + self.timeout
        while not self.server.url:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self.server.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChildServer:
    """``with ChildServer([...command...], port) as url:`` runs a server process until it prints
    ``url`` on stdout, and stops it with Ctrl+C (SIGINT) at the end; ``code`` and ``stderr`` then
    hold its exit status and error output."""

    def __init__(self, command: list[str], port: int, *, cwd: Path, timeout: float = 120.0) -> None:
        self.url = f"http://127.0.0.1:{port}/"
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "SME_QA_HOST": "127.0.0.1"}
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
        self.timeout = timeout
        self.lines: list[str] = []
        self.code: int | None = None
        self.stderr = ""

    def __enter__(self) -> str:
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout or ()), daemon=True).start()
        deadline = time.monotonic() + self.timeout
        while not any(self.url in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise AssertionError(f"no URL printed; exit status {self.code}; stderr:\n{self.stderr}")
            time.sleep(0.1)
        return self.url

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.code = self.proc.wait()
        self.stderr = self.proc.stderr.read() if self.proc.stderr else ""


# Debian's Chromium, driven by Playwright (never `playwright install`).
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
