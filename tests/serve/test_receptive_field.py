"""The receptive-field endpoint against atrous.analysis run directly on the same model."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from atrous.analysis import coverage_map, effective_receptive_field
from atrous.models import load_pretrained
from atrous.serve.service import analysis_grid


def decode(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_small_image_is_analysed_exactly_at_the_clicked_pixel(
    client: TestClient, model_dir: Path
) -> None:
    response = client.get("/v1/receptive-field?x=3&y=20&width=40&height=30")
    assert response.status_code == 200
    body = response.json()
    assert body["scale"] == 1.0
    assert body["analysed_size"] == {"width": 40, "height": 30}
    assert body["location"] == {"x": 3, "y": 20}

    model = load_pretrained(model_dir)
    expected = coverage_map(model, input_size=(30, 40), location=(20, 3), global_pooling="drop")
    assert body["coverage"]["hole_fraction"] == pytest.approx(expected.hole_fraction)
    assert list(body["coverage"]["box"].values()) == list(expected.box)
    heat = decode(body["coverage"]["png"])
    assert heat.shape == (30, 40, 4)
    # Transparent exactly where no path reaches the clicked pixel.
    np.testing.assert_array_equal(heat[..., 3] == 0, expected.counts == 0)

    erf = effective_receptive_field(model, input_size=(30, 40), samples=2, location=(20, 3))
    assert body["erf"]["radius_50"] == pytest.approx(erf.radius(0.5), abs=0.005)
    assert decode(body["erf"]["png"]).shape == (30, 40, 4)


def test_large_image_is_analysed_on_a_capped_grid(client: TestClient) -> None:
    # max_analysis_side is 48 in the test client: 480x320 becomes 48x32.
    body = client.get("/v1/receptive-field?x=479&y=0&width=480&height=320").json()
    assert body["analysed_size"] == {"width": 48, "height": 32}
    assert body["scale"] == pytest.approx(0.1)
    assert body["location"] == {"x": 47, "y": 0}
    assert "48" in body["note"]


def test_post_body_and_png_format(client: TestClient) -> None:
    query = {"x": 5, "y": 6, "width": 20, "height": 16}
    as_get = client.get("/v1/receptive-field", params=query).json()
    as_post = client.post("/v1/receptive-field", json=query).json()
    assert as_post["coverage"]["hole_fraction"] == as_get["coverage"]["hole_fraction"]
    panels = client.post("/v1/receptive-field?format=png", json=query)
    assert panels.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(panels.content)).size == (2 * 20 + 4, 16)


@pytest.mark.parametrize(
    "query",
    ["x=40&y=0&width=40&height=30", "x=0&y=30&width=40&height=30", "x=-1&y=0&width=4&height=4"],
)
def test_pixel_outside_the_image_is_rejected(client: TestClient, query: str) -> None:
    response = client.get(f"/v1/receptive-field?{query}")
    assert response.status_code == 422


def test_analysis_grid_maps_pixel_centres() -> None:
    assert analysis_grid((30, 40), (20, 3), 48) == ((30, 40), (20, 3), 1.0)
    grid, location, scale = analysis_grid((1000, 500), (999, 0), 100)
    assert grid == (100, 50) and location == (99, 0) and scale == pytest.approx(0.1)
    with pytest.raises(ValueError, match="outside"):
        analysis_grid((10, 10), (10, 0), 8)
