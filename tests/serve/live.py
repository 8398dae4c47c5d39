"""A real uvicorn server on 127.0.0.1 in a background thread, for browser and shutdown tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from atrous.serve import ServeConfig, create_app
from atrous.serve.server import uvicorn_config
from atrous.serve.service import ServedModel


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(
    config: ServeConfig, *, loader: Callable[[], ServedModel] | None = None
) -> Iterator[tuple[str, uvicorn.Server]]:
    """Run the app on ``config.port`` (127.0.0.1) until the block ends; yields its URL."""
    assert config.host == "127.0.0.1"
    # The same uvicorn settings as `atrous serve` (header timeout, bounded shutdown).
    server = uvicorn.Server(
        uvicorn_config(create_app(config, loader=loader), config, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{config.port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the test server at {url} did not become ready")
            time.sleep(0.05)
        yield url, server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
