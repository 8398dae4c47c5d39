"""What every request passes through: its id, the loopback guards, the access log, metrics.

A plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which buffers bodies and
hides client disconnects from the endpoint): it reads the headers, may refuse the
request, and wraps ``send`` to see the status and add ``X-Request-ID``.

The guards are for a service bound to 127.0.0.1 on a machine where a browser also runs:
- **Host**: a web page from anywhere can point its own domain name at 127.0.0.1 (DNS
  rebinding) and then talk to the service as same-origin; its requests carry that name
  in ``Host``, so only the names the server is known by are accepted.
- **Origin**: a page of another origin can POST a form or an image to the service (a
  "simple" request needs no CORS preflight); browsers say where it came from in
  ``Origin``, so a POST whose origin is not the service's own is refused.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from atrous.serve.config import ServeConfig
from atrous.serve.metrics import Metrics

access_log = logging.getLogger("atrous.serve.access")

ROUTES = frozenset(
    (
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/docs",
        "/openapi.json",
        "/v1/models",
        "/v1/segment",
        "/v1/receptive-field",
    )
)
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def error_response(
    status: int,
    code: str,
    message: str,
    request_id: str | None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one error shape of the service: ``{"error", "detail", "request_id"}``."""
    body: dict[str, Any] = {"error": code, "detail": message}
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status, headers=headers)


def route_label(path: str) -> str:
    """A bounded label for metrics: the route, ``/static``, or ``other``."""
    if path in ROUTES:
        return path
    if path.startswith("/static/"):
        return "/static"
    return "other"


def host_name(host_header: str) -> str:
    """``Host`` without its port, lower-case; IPv6 brackets removed."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class ServiceMiddleware:
    """Request ids, Host and Origin checks, JSON access log lines and request metrics."""

    def __init__(self, app: ASGIApp, *, config: ServeConfig, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.hosts = config.host_names()
        self.origins = frozenset(o.rstrip("/").lower() for o in config.allowed_origins)

    def refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        """``(status, code, message)`` when the request must be refused, else ``None``."""
        host = headers.get("host")
        if self.hosts is not None and host is not None and host_name(host) not in self.hosts:
            return (
                421,
                "host_not_allowed",
                f"this server does not answer to the host name {host!r}; it accepts "
                f"{', '.join(sorted(self.hosts))} (see allowed_hosts)",
            )
        origin = headers.get("origin")
        if scope["method"] not in SAFE_METHODS and origin is not None:
            own = f"{scope.get('scheme', 'http')}://{host}".lower() if host else None
            if origin.rstrip("/").lower() not in (self.origins | {own}):
                return (
                    403,
                    "cross_origin",
                    f"a page from {origin!r} may not send requests to this server; "
                    "open the page it serves, or list the origin in allowed_origins",
                )
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        answer: dict[str, Any] = {"status": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        refused = self.refusal(scope, headers)
        try:
            if refused is not None:
                status, code, message = refused
                state["error"] = code
                self.metrics.rejections.inc(reason=code)
                await error_response(status, code, message, request_id)(
                    scope, receive, send_with_id
                )
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            state.setdefault("error", "internal")
            raise
        finally:
            self._record(scope, state, answer["status"], time.perf_counter() - started)

    def _record(self, scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
        route = route_label(scope["path"])
        self.metrics.requests.inc(method=scope["method"], route=route, status=str(status))
        self.metrics.latency.observe(seconds, route=route)
        line: dict[str, Any] = {
            "request_id": state.get("request_id"),
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "latency_ms": round(seconds * 1000.0, 1),
            "client": scope["client"][0] if scope.get("client") else None,
        }
        if state.get("error"):
            line["error"] = state["error"]
        if state.get("error_detail"):
            line["reason"] = state["error_detail"]
        access_log.info(json.dumps(line))
