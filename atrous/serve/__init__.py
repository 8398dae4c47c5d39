"""``atrous serve``: an HTTP service and web page for segmentation and receptive fields.

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart). Build the app with
``create_app`` and run it with any ASGI server; ``atrous serve`` runs it on uvicorn.
"""

from __future__ import annotations

from atrous.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str) -> object:
    # Lazy: the config is importable (and the CLI's --help fast) without FastAPI/torch.
    if name == "create_app":
        from atrous.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'atrous.serve' has no attribute {name!r}")
