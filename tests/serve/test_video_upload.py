"""``POST /v1/segment-video``: a clip in, the overlay or the exact mask video out;
bounded by length and cost before decoding; bad clips get a 4xx."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from tests.serve.conftest import BASE_URL, PALETTE, TestClient, wait_ready

av = pytest.importorskip("av")


def _clip(tmp_path: Path, frames: int = 8, fps: int = 10) -> tuple[bytes, list[np.ndarray]]:
    from tests.infer.test_video import write_clip

    path = tmp_path / "clip.mkv"
    images = write_clip(path, frames=frames, size=(32, 48), fps=fps)
    return path.read_bytes(), images


@pytest.fixture(scope="module")
def video_client(model_dir: Path):
    from atrous.serve import ServeConfig, create_app

    config = ServeConfig(model=str(model_dir), max_video_seconds=2.0, max_analysis_side=48)
    with TestClient(create_app(config), base_url=BASE_URL) as client:
        wait_ready(client)
        yield client


def test_a_clip_comes_back_as_its_mask_and_overlay_videos(
    video_client: TestClient, model_dir: Path, tmp_path: Path
) -> None:
    from atrous.infer import Predictor
    from atrous.infer.video import read_mask_video
    from atrous.models import load_pretrained

    data, frames = _clip(tmp_path)
    response = video_client.post("/v1/segment-video?format=mask", content=data)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/x-matroska"
    (tmp_path / "mask.mkv").write_bytes(response.content)
    predictor = Predictor(load_pretrained(model_dir))
    got = list(read_mask_video(tmp_path / "mask.mkv", PALETTE))
    assert len(got) == len(frames)
    for mask, frame in zip(got, frames, strict=True):
        np.testing.assert_array_equal(mask, predictor.predict(frame))
    response = video_client.post(
        "/v1/segment-video", files={"file": ("clip.mkv", data, "video/x-matroska")}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(response.content)) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(frames)


def test_clips_are_bounded_and_bad_ones_get_a_4xx(video_client: TestClient, tmp_path: Path) -> None:
    long_clip, _ = _clip(tmp_path, frames=40, fps=10)  # 4 s > max_video_seconds=2
    response = video_client.post("/v1/segment-video", content=long_clip)
    assert response.status_code == 413 and response.json()["error"] == "video_too_long"
    response = video_client.post("/v1/segment-video", content=b"not a video at all" * 50)
    assert response.status_code == 415 and response.json()["error"] == "not_a_video"
    data, _ = _clip(tmp_path, frames=20)
    response = video_client.post("/v1/segment-video", content=data[: len(data) // 2])
    assert response.status_code == 422 and response.json()["error"] == "corrupt_video"
    assert video_client.get("/healthz").status_code == 200
