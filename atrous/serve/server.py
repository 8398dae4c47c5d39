"""Running the app on uvicorn, with a deadline on request headers and JSON access logs.

uvicorn times out idle keep-alive connections but not a client that sends its request
headers one slow line at a time: each line cancels the keep-alive timer and nothing
else is armed, so such a connection stays open for as long as the client likes (a
slow-header or "slowloris" attack). ``HeaderTimeoutProtocol`` arms a deadline when a
connection opens and after every response, and closes the connection if the next
request's headers are not complete by then.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from atrous.serve.config import ServeConfig


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol plus a bound on the time a request's headers may take."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers took too long")
            self.transport.close()


def protocol_for(config: ServeConfig) -> type[HeaderTimeoutProtocol]:
    """The protocol class with ``config.header_timeout_s`` (uvicorn takes a class)."""
    return type(
        "HeaderTimeoutProtocol",
        (HeaderTimeoutProtocol,),
        {"header_timeout_s": config.header_timeout_s},
    )


def uvicorn_config(app: Any, config: ServeConfig, *, log_level: str = "info") -> uvicorn.Config:
    """uvicorn's settings for the app: our protocol, our access log, bounded shutdown."""
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        http=protocol_for(config),
        # Our middleware writes JSON access lines with latency and error reason.
        access_log=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=config.shutdown_grace_s,
        log_level=log_level,
    )


def configure_access_log(stream: Any = None) -> None:
    """Write ``atrous.serve.access`` records as bare JSON lines (one per request)."""
    logger = logging.getLogger("atrous.serve.access")
    if any(getattr(h, "_atrous_access", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._atrous_access = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
