"""The ``atrous serve`` app on Ray Serve: replicas answer like the app run directly."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed (make test-ray)")
pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
warnings.filterwarnings("ignore", message=".*httpx2.*")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from atrous.scale.ray_serve import ReplicaSettings  # noqa: E402
from atrous.serve import ServeConfig, create_app  # noqa: E402
from tests.scale.conftest import free_port  # noqa: E402
from tests.serve.conftest import png, random_image, wait_ready  # noqa: E402


def test_fixed_replicas_bound_each_replicas_queue() -> None:
    config = ServeConfig(model="camvid", max_concurrent_inferences=2, max_queued_requests=6)
    options = ReplicaSettings(replicas=3, cpus_per_replica=2).deployment_options(config)
    assert options["num_replicas"] == 3
    assert "autoscaling_config" not in options
    assert options["max_ongoing_requests"] == 8  # running + queued inside the replica
    assert options["max_queued_requests"] == 6  # waiting at the proxy before 503
    assert options["ray_actor_options"] == {"num_cpus": 2}


def test_autoscaling_targets_the_apps_concurrency() -> None:
    config = ServeConfig(model="camvid", max_concurrent_inferences=1, max_queued_requests=4)
    settings = ReplicaSettings(min_replicas=0, max_replicas=4, proxy_queue=10)
    options = settings.deployment_options(config)
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {
        "min_replicas": 0,
        "initial_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 1,
    }
    assert options["max_queued_requests"] == 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"replicas": 0}, "replicas must be >= 1"),
        ({"min_replicas": 3, "max_replicas": 2}, "max_replicas must be >= max"),
        ({"cpus_per_replica": 0}, "cpus_per_replica must be > 0"),
        ({"proxy_queue": -1}, "proxy_queue must be >= 0"),
    ],
)
def test_bad_replica_settings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReplicaSettings(**kwargs)


def _wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{url}/readyz", timeout=5)
            if answer.status_code == 200:
                return
            last = answer.text
        except httpx.TransportError as error:
            last = error
        time.sleep(0.2)
    raise AssertionError(f"Serve app at {url} not ready after {timeout_s} s: {last}")


@pytest.mark.slow
def test_serve_replicas_answer_segment_like_atrous_serve(
    ray_local: object, model_dir: Path
) -> None:
    from ray import serve

    from atrous.scale.ray_serve import APP_NAME, start

    port = free_port()
    config = ServeConfig(model=str(model_dir), port=port, max_upload_bytes=200_000)
    url = f"http://127.0.0.1:{port}"
    start(config, ReplicaSettings(replicas=2, cpus_per_replica=0.5))
    try:
        _wait_ready(url, timeout_s=180)
        status = serve.status().applications[APP_NAME].deployments["AtrousService"]
        assert status.replica_states.get("RUNNING") == 2
        with TestClient(create_app(config), base_url=url) as direct:
            wait_ready(direct)
            served_models = httpx.get(f"{url}/v1/models").json()["models"]
            local_models = direct.get("/v1/models").json()["models"]
            for info in (*served_models, *local_models):
                info.pop("seconds_per_megapixel", None)  # measured on each replica
            assert served_models == local_models
            for seed, (height, width) in enumerate([(37, 53), (24, 24), (40, 31)]):
                image = png(random_image(height, width, seed=seed))
                served = httpx.post(f"{url}/v1/segment?format=png", content=image, timeout=60)
                local = direct.post("/v1/segment?format=png", content=image)
                assert served.status_code == local.status_code == 200
                assert served.headers["content-type"] == "image/png"
                assert served.content == local.content
                files = {"file": ("photo.png", image, "image/png")}
                served_json = httpx.post(
                    f"{url}/v1/segment?format=json&mask=true", files=files, timeout=60
                ).json()
                local_json = direct.post("/v1/segment?format=json&mask=true", files=files).json()
                for key in ("model", "width", "height", "classes", "mask_png"):
                    assert served_json[key] == local_json[key], key
            # Errors are the app's own answers too, not the proxy's.
            served = httpx.post(f"{url}/v1/segment", content=b"not an image", timeout=60)
            local = direct.post("/v1/segment", content=b"not an image")
            assert served.status_code == local.status_code
            assert served.json()["error"] == local.json()["error"]
    finally:
        serve.shutdown()
