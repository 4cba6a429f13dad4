"""The web surface: the Gradio chat mounted on FastAPI, and the article pages.

Importing this package imports nothing heavy; ``sme_qa.web.server.serve`` starts the app.
"""

from __future__ import annotations

__all__ = ["serve"]


def serve(**options: object) -> None:
    """Index if needed, then serve the chat (see ``sme_qa.web.server.serve``)."""
    from .server import serve as _serve

    _serve(**options)  # type: ignore[arg-type]
