"""👍/👎 on answers, kept on this machine: one JSON line per click in ``<vectors>/feedback.jsonl``.

Each line holds the time, the rating, the question, the answer text, its citations and
the settings used, so answer quality can be reviewed later (``jq`` or pandas).  Nothing
is sent anywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

__all__ = ["FEEDBACK_FILE", "FeedbackLog"]

FEEDBACK_FILE = "feedback.jsonl"


class FeedbackLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def add(self, turn: dict[str, Any], rating: str) -> dict[str, Any]:
        """Append one record for ``turn`` (see ``web.turns``) rated ``"up"``, ``"down"`` or ``"cleared"``."""
        record = {
            "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "rating": rating,
            "question": turn.get("question"),
            "answer": turn.get("text"),
            "answered": turn.get("answered"),
            "citations": turn.get("citations", []),
            "settings": turn.get("settings", {}),
            "asked": turn.get("time"),
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
        return record

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
