"""Readiness, the bounded inference queue (503 + Retry-After) and the request timeout."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from atrous.serve import ServeConfig, create_app
from atrous.serve.service import ServedModel
from tests.serve.conftest import BASE_URL, png, random_image, wait_ready


class GatedModel(ServedModel):
    """The real tiny model, but every segmentation waits for ``gate`` (a slow inference)."""

    def __init__(self, *args, gate: threading.Event, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate
        self.started = threading.Semaphore(0)
        self.batches: list[int] = []  # images per segment_batch call

    def segment_batch(self, images: list[np.ndarray], cancel=None) -> list[np.ndarray]:
        self.batches.append(len(images))
        self.started.release()
        self.gate.wait(timeout=20)
        return super().segment_batch(images, cancel)


def gated_loader(model_dir: Path, gate: threading.Event) -> tuple[GatedModel, object]:
    from atrous.models import load_pretrained

    model = GatedModel(load_pretrained(model_dir), name="gated", gate=gate)
    return model, lambda: model


def test_readyz_turns_ready_only_after_the_model_loads(model_dir: Path) -> None:
    release = threading.Event()

    def slow_loader() -> ServedModel:
        release.wait(timeout=20)
        return ServedModel.load(str(model_dir))

    with TestClient(
        create_app(ServeConfig(model="slow"), loader=slow_loader), base_url=BASE_URL
    ) as client:
        assert client.get("/healthz").status_code == 200
        before = client.get("/readyz")
        assert before.status_code == 503
        assert before.json()["status"] == "loading"
        refused = client.post("/v1/segment", content=png(random_image(8, 8)))
        assert refused.status_code == 503
        assert refused.json()["error"] == "model_loading"
        assert "Retry-After" in refused.headers
        assert client.get("/v1/models").status_code == 503
        release.set()
        wait_ready(client)
        assert client.get("/readyz").json()["status"] == "ready"
        assert client.get("/v1/models").status_code == 200


def test_failed_load_is_reported_and_the_process_stays_up(tmp_path: Path) -> None:
    config = ServeConfig(model=str(tmp_path / "missing"))
    with TestClient(create_app(config), base_url=BASE_URL) as client:
        deadline = time.monotonic() + 20
        while client.get("/readyz").json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "failed"
        assert "missing" in ready.json()["detail"]
        assert client.get("/healthz").status_code == 200
        response = client.post("/v1/segment", content=png(random_image(8, 8)))
        assert response.status_code == 503
        assert response.json()["error"] == "model_failed"


def test_queue_limit_answers_503_with_retry_after(model_dir: Path) -> None:
    gate = threading.Event()
    model, loader = gated_loader(model_dir, gate)
    config = ServeConfig(
        model="gated", max_concurrent_inferences=1, max_queued_requests=2, retry_after_s=7
    )
    body = png(random_image(16, 16))
    with (
        TestClient(create_app(config, loader=loader), base_url=BASE_URL) as client,
        ThreadPoolExecutor(3) as pool,
    ):
        wait_ready(client)
        running = pool.submit(client.post, "/v1/segment?format=json", content=body)
        assert model.started.acquire(timeout=10)  # the first holds the only slot
        queued = [pool.submit(client.post, "/v1/segment", content=body) for _ in range(2)]
        deadline = time.monotonic() + 10
        while client.get("/readyz").json()["load"]["waiting"] < 2:
            assert time.monotonic() < deadline, "requests never queued"
            time.sleep(0.01)
        rejected = client.post("/v1/segment", content=body)
        assert rejected.status_code == 503
        assert rejected.json()["error"] == "busy"
        assert rejected.headers["Retry-After"] == "7"
        assert client.get("/healthz").status_code == 200  # probes never queue
        gate.set()
        assert running.result(timeout=20).status_code == 200
        assert [f.result(timeout=20).status_code for f in queued] == [200, 200]
        load = client.get("/readyz").json()["load"]
        assert (load["running"], load["waiting"]) == (0, 0)


def test_slow_inference_times_out_with_504_and_frees_its_slot(model_dir: Path) -> None:
    gate = threading.Event()
    model, loader = gated_loader(model_dir, gate)
    config = ServeConfig(model="gated", request_timeout_s=0.3, max_queued_requests=0)
    with TestClient(create_app(config, loader=loader), base_url=BASE_URL) as client:
        wait_ready(client)
        response = client.post("/v1/segment", content=png(random_image(8, 8)))
        assert response.status_code == 504
        assert response.json()["error"] == "timeout"
        assert model.started.acquire(timeout=5)  # it timed out while running, not queued
        # The torch call cannot be interrupted: its slot stays taken until it ends.
        assert client.get("/readyz").json()["load"]["running"] == 1
        gate.set()
        deadline = time.monotonic() + 10
        while client.get("/readyz").json()["load"]["running"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert client.post("/v1/segment", content=png(random_image(8, 8))).status_code == 200


@pytest.mark.parametrize(
    "field,value",
    [
        ("max_upload_bytes", 0),
        ("max_concurrent_inferences", 0),
        ("max_queued_requests", -1),
        ("port", 70000),
        ("model", ""),
    ],
)
def test_config_rejects_unsafe_values(field: str, value: object) -> None:
    changes = {"model": "m", field: value}
    with pytest.raises(ValueError, match=field):
        ServeConfig(**changes)
