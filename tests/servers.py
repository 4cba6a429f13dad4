"""A test helper: the real app served by uvicorn in a thread, on a free port of 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
import time
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
