"""Progress reporting for long work (indexing, evaluation), below every surface.

The library reports progress as ``progress(stage, done, total)`` calls; the CLI and the
web server turn them into terminal bars with :func:`progress_bar`, the chat into Gradio's
progress.  Nothing here imports a surface.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def progress_bar() -> Progress:
    """A callback drawing one tqdm bar per stage on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="chunk", disable=None, file=sys.stderr)
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update
