"""Work nobody waits for does not run: cost admission, skipped queue entries, cancelled windows.

Before this: a 16-megapixel upload that could not finish in time ran on after its
504, and clients that hung up left their work queued. These tests check each part of
the fix on the tiny model, with a gated or slowed model where timing matters.
"""

from __future__ import annotations

import io
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from atrous.infer import Predictor
from atrous.models import load_pretrained
from atrous.serve import ServeConfig, create_app
from atrous.serve.limiter import Cancelled
from atrous.serve.service import ServedModel
from tests.serve.conftest import BASE_URL, png, random_image, wait_ready
from tests.serve.live import free_port, live_server
from tests.serve.test_limits import gated_loader


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when the series does not exist)."""
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if found == labels:
            return float(match[3])
    return 0.0


# -- sliding windows --------------------------------------------------------------------


@pytest.mark.parametrize("size", [(70, 90), (20, 90), (64, 64)])
def test_windows_match_the_predictors_slide_mode(model_dir: Path, size: tuple[int, int]) -> None:
    network = load_pretrained(model_dir)
    served = ServedModel(network, name="m", window=32, slide_above_pixels=1)
    image = random_image(*size, seed=5)
    reference = Predictor(network, mode="slide", window=32, overlap=1 / 3).predict(image)
    assert served.slides(*size)
    np.testing.assert_array_equal(served.segment(image), reference)


def test_windows_stop_between_windows_once_cancelled(model_dir: Path) -> None:
    network = load_pretrained(model_dir)
    served = ServedModel(network, name="m", window=16, slide_above_pixels=1)
    cancel = threading.Event()
    forwards = []

    def count(*_args: object) -> None:
        forwards.append(1)
        if len(forwards) == 2:
            cancel.set()  # the client hung up while the second window ran

    network.register_forward_hook(count)
    with pytest.raises(Cancelled):
        served.segment_windows(random_image(64, 64), cancel)
    assert len(forwards) == 2  # of 5 x 5 = 25 windows


def test_whole_image_forward_stops_between_layers_once_cancelled(model_dir: Path) -> None:
    network = load_pretrained(model_dir)
    served = ServedModel(network, name="m")
    cancel = threading.Event()
    convs = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    ran = []
    convs[0].register_forward_hook(lambda *_: cancel.set())  # the client leaves here
    convs[-1].register_forward_hook(lambda *_: ran.append(1))
    with pytest.raises(Cancelled):
        served.segment_batch([random_image(32, 32)], cancel)
    assert ran == []  # the last layer never ran
    # A batch stops only when none of its clients waits.
    from atrous.serve.service import AllSet

    other = threading.Event()
    cancel.clear()
    labels = served.segment_batch([random_image(32, 32)] * 2, AllSet([cancel, other]))
    assert len(labels) == 2 and ran == [1]
    assert served.segment(random_image(16, 16)).shape == (16, 16)  # no cancel left behind


def test_cost_counts_the_overlapping_windows(model_dir: Path) -> None:
    served = ServedModel(load_pretrained(model_dir), name="m", window=32, slide_above_pixels=1000)
    served.cost.seconds_per_pixel = 1e-6
    assert served.processed_pixels(20, 40) == 800  # whole image
    # 70 rows: windows at 0, 22, 38 (stride 22, last flush); 90 columns: 0, 22, 44, 58.
    assert served.processed_pixels(70, 90) == 3 * 4 * 32 * 32
    assert served.estimate_s(70, 90) == pytest.approx(3 * 4 * 32 * 32 * 1e-6)


# -- admission ----------------------------------------------------------------------------


def test_image_too_costly_for_the_timeout_is_refused_before_decoding(model_dir: Path) -> None:
    gate = threading.Event()
    gate.set()
    model, loader = gated_loader(model_dir, gate)
    config = ServeConfig(model="gated", request_timeout_s=5)
    with TestClient(create_app(config, loader=loader), base_url=BASE_URL) as client:
        wait_ready(client)
        # As if measured on a slow machine: 1 ms per pixel, so 100x100 needs 10 s > 5 s.
        model.cost.seconds_per_pixel = 1e-3
        response = client.post("/v1/segment", content=png(random_image(100, 100)))
        assert response.status_code == 413
        body = response.json()
        assert body["error"] == "too_costly"
        assert "100x100" in body["detail"] and "5 s request timeout" in body["detail"]
        assert "0.0 megapixels (70x70)" in body["detail"]  # what would fit: 4900 pixels
        assert model.batches == []  # never decoded, never run
        small = client.post("/v1/segment?format=json", content=png(random_image(40, 40)))
        assert small.status_code == 200  # 1.6 s of estimated work fits
        text = client.get("/metrics").text
        assert metric(text, "atrous_rejections_total", reason="too_costly") == 1


def test_work_queued_ahead_beyond_the_deadline_gets_503_with_its_wait(model_dir: Path) -> None:
    gate = threading.Event()
    model, loader = gated_loader(model_dir, gate)
    config = ServeConfig(model="gated", request_timeout_s=10, retry_after_s=1)
    body = png(random_image(16, 16))
    with TestClient(create_app(config, loader=loader), base_url=BASE_URL) as client:
        wait_ready(client)
        model.cost.seconds_per_pixel = 6.0 / 256  # 6 s per 16x16 image
        first = threading.Thread(
            target=client.post, args=("/v1/segment",), kwargs={"content": body}
        )
        first.start()
        assert model.started.acquire(timeout=10)
        second = client.post("/v1/segment", content=body)  # 6 s ahead + 6 s > 10 s
        assert second.status_code == 503
        assert second.json()["error"] == "busy"
        assert int(second.headers["Retry-After"]) >= 5
        gate.set()
        first.join(timeout=20)


# -- queued work of clients that left -----------------------------------------------------


def raw_post(port: int, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        b"POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_queued_requests_of_clients_that_hung_up_never_run(model_dir: Path) -> None:
    gate = threading.Event()
    model, loader = gated_loader(model_dir, gate)
    config = ServeConfig(model="gated", port=free_port(), max_batch_size=1)
    body = png(random_image(16, 16))
    with live_server(config, loader=loader) as (url, _server):
        running = raw_post(config.port, body)
        assert model.started.acquire(timeout=10)
        waiting = [raw_post(config.port, body) for _ in range(3)]
        wait_for(lambda: httpx.get(f"{url}/readyz").json()["load"]["waiting"] == 3)
        for sock in waiting:
            sock.close()  # the clients give up
        wait_for(lambda: httpx.get(f"{url}/readyz").json()["load"]["waiting"] == 0)
        gate.set()
        reply = running.recv(65536)
        running.close()
        assert reply.startswith(b"HTTP/1.1 200")
        wait_for(
            lambda: (
                metric(
                    httpx.get(f"{url}/metrics").text,
                    "atrous_jobs_skipped_total",
                    reason="client_gone",
                )
                == 3
            )
        )
        assert model.batches == [1]  # only the request whose client stayed ran
        after = httpx.post(f"{url}/v1/segment?format=json", content=body, timeout=20)
        assert after.status_code == 200


def test_queued_request_past_its_deadline_is_answered_504_and_never_runs(model_dir: Path) -> None:
    gate = threading.Event()
    model, loader = gated_loader(model_dir, gate)
    config = ServeConfig(model="gated", request_timeout_s=0.5, max_batch_size=1)
    body = png(random_image(16, 16))
    with TestClient(create_app(config, loader=loader), base_url=BASE_URL) as client:
        wait_ready(client)
        first = threading.Thread(
            target=client.post, args=("/v1/segment",), kwargs={"content": body}
        )
        first.start()
        assert model.started.acquire(timeout=10)
        late = client.post("/v1/segment", content=body)
        assert late.status_code == 504
        gate.set()
        first.join(timeout=20)
        wait_for(lambda: client.get("/readyz").json()["load"]["running"] == 0)
        assert model.batches == [1]
        assert (
            metric(client.get("/metrics").text, "atrous_jobs_skipped_total", reason="timeout") == 1
        )


def test_large_image_stops_between_windows_when_its_client_hangs_up(model_dir: Path) -> None:
    network = load_pretrained(model_dir)
    forwards = []

    def slow(*_args: object) -> None:
        forwards.append(1)
        time.sleep(0.05)

    network.register_forward_hook(slow)
    served = ServedModel(network, name="slow", window=32, slide_above_pixels=1024)
    config = ServeConfig(model="slow", port=free_port())
    body = png(random_image(256, 256))  # 11 x 11 = 121 windows, about 6 s
    with live_server(config, loader=lambda: served) as (url, _server):
        served.cost.seconds_per_pixel = 1e-7
        calibration = len(forwards)
        sock = raw_post(config.port, body)
        wait_for(lambda: len(forwards) > calibration + 2)
        sock.close()
        wait_for(
            lambda: (
                metric(
                    httpx.get(f"{url}/metrics").text,
                    "atrous_jobs_cancelled_total",
                    reason="client_gone",
                )
                == 1
            )
        )
        ran = len(forwards) - calibration
        time.sleep(0.3)
        assert len(forwards) - calibration == ran  # stopped, not running on
        assert ran < 40, f"{ran} of 121 windows ran after the client left"
        assert httpx.get(f"{url}/readyz").json()["load"]["running"] == 0


# -- batching -----------------------------------------------------------------------------


def test_concurrent_requests_of_one_size_share_a_batch(model_dir: Path) -> None:
    gate = threading.Event()
    model, loader = gated_loader(model_dir, gate)
    config = ServeConfig(model="gated", max_batch_size=4, batch_wait_ms=50)
    images = [random_image(24, 32, seed=s) for s in range(4)]
    reference = Predictor(load_pretrained(model_dir), mode="whole")
    with TestClient(create_app(config, loader=loader), base_url=BASE_URL) as client:
        wait_ready(client)
        results: dict[int, object] = {}

        def send(index: int) -> None:
            results[index] = client.post("/v1/segment?format=png", content=png(images[index]))

        first = threading.Thread(target=send, args=(0,))
        first.start()
        assert model.started.acquire(timeout=10)  # the first runs alone, holding the slot
        others = [threading.Thread(target=send, args=(i,)) for i in (1, 2, 3)]
        for thread in others:
            thread.start()
        wait_for(lambda: client.get("/readyz").json()["load"]["waiting"] == 3)
        gate.set()
        for thread in [first, *others]:
            thread.join(timeout=20)
        assert model.batches == [1, 3]
        for index, image in enumerate(images):
            mask = np.asarray(Image.open(io.BytesIO(results[index].content)))
            np.testing.assert_array_equal(mask, reference.predict(image))
        text = client.get("/metrics").text
        assert metric(text, "atrous_inference_batch_size_count") == 2  # calibration not counted
        assert metric(text, "atrous_inference_batch_size_bucket", le="2") == 1


def test_calibration_measures_a_cost(model_dir: Path) -> None:
    served = ServedModel(load_pretrained(model_dir), name="m")
    assert served.cost.seconds_per_pixel is None
    seconds = served.calibrate(side=64)
    assert seconds > 0
    assert served.cost.seconds_per_pixel == pytest.approx(seconds / 64**2)
    assert torch.is_inference_mode_enabled() is False
