"""Graceful shutdown on a real uvicorn server: stop accepting, finish in-flight requests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from atrous.serve import ServeConfig
from tests.serve.conftest import png, random_image
from tests.serve.live import free_port, live_server
from tests.serve.test_limits import gated_loader


def test_shutdown_finishes_in_flight_request_and_refuses_new_ones(model_dir: Path) -> None:
    gate = threading.Event()
    model, loader = gated_loader(model_dir, gate)
    config = ServeConfig(model="gated", port=free_port(), shutdown_grace_s=20)
    body = png(random_image(16, 16))
    with live_server(config, loader=loader) as (url, server), ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(
            httpx.post, f"{url}/v1/segment?format=json", content=body, timeout=30
        )
        assert model.started.acquire(timeout=10)
        server.should_exit = True  # what uvicorn's SIGTERM/SIGINT handler does
        deadline = time.monotonic() + 10
        while True:  # the listening socket closes while the request still runs
            try:
                httpx.get(f"{url}/healthz", timeout=1)
            except httpx.TransportError:
                break
            assert time.monotonic() < deadline, "server kept accepting after shutdown began"
            time.sleep(0.05)
        assert not in_flight.done()
        gate.set()
        response = in_flight.result(timeout=20)
        assert response.status_code == 200
        assert response.json()["width"] == 16


def test_trickled_upload_times_out_with_408(model_dir: Path) -> None:
    config = ServeConfig(model=str(model_dir), port=free_port(), request_timeout_s=0.5)
    with live_server(config) as (_url, _server):
        with socket.create_connection(("127.0.0.1", config.port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: image/png\r\nContent-Length: 1000\r\n\r\n\x89PNG"
            )  # and then nothing more
            reply = ""
            while not reply.endswith("}"):  # headers and JSON body may come apart
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk.decode("latin-1")
        assert reply.startswith("HTTP/1.1 408"), reply
        assert "upload_timeout" in reply


def test_connection_trickling_header_lines_is_closed_within_the_bound(model_dir: Path) -> None:
    config = ServeConfig(model=str(model_dir), port=free_port(), header_timeout_s=1.0)
    with live_server(config) as (url, _server):
        with socket.create_connection(("127.0.0.1", config.port), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            closed_after = None
            for line in range(100):  # one header line every 0.1 s, never the blank line
                try:
                    sock.sendall(f"X-Line-{line}: a\r\n".encode())
                    sock.settimeout(0.1)
                    if sock.recv(1024) == b"":
                        closed_after = time.monotonic() - started
                        break
                except TimeoutError:
                    continue
                except OSError:  # reset or broken pipe: closed too
                    closed_after = time.monotonic() - started
                    break
        assert closed_after is not None, "the connection stayed open for 10 s of header lines"
        assert 0.9 <= closed_after < 3.0
        # A normal client on a new connection is served.
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_shutdown_drain_is_bounded_when_inference_never_ends(model_dir: Path) -> None:
    gate = threading.Event()  # never set while the server runs: a stuck inference
    model, loader = gated_loader(model_dir, gate)
    config = ServeConfig(model="gated", port=free_port(), shutdown_grace_s=1.0, max_batch_size=1)
    body = png(random_image(16, 16))
    try:
        with live_server(config, loader=loader) as (url, server), ThreadPoolExecutor(2) as pool:
            stuck = pool.submit(httpx.post, f"{url}/v1/segment", content=body, timeout=30)
            assert model.started.acquire(timeout=10)
            queued = pool.submit(httpx.post, f"{url}/v1/segment", content=body, timeout=30)
            deadline = time.monotonic() + 10
            while httpx.get(f"{url}/readyz").json()["load"]["waiting"] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            started = time.monotonic()
            server.should_exit = True
            for request in (stuck, queued):  # both are answered or cut off, not left hanging
                with contextlib.suppress(httpx.HTTPError):
                    request.result(timeout=10)
            assert time.monotonic() - started < 5.0
        assert time.monotonic() - started < 6.0, "the server thread outlived the grace period"
        assert model.batches == [1]  # the queued request was dropped, not run
    finally:
        gate.set()
