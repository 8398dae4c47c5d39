"""Graceful shutdown on a real uvicorn server: stop accepting, finish in-flight requests."""

from __future__ import annotations

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
