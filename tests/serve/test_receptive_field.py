"""The receptive-field endpoint against atrous.analysis run directly on the same model."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from atrous.analysis import coverage_map, effective_receptive_field
from atrous.models import load_pretrained
from atrous.serve.service import analysis_grid
from tests.serve.conftest import png, random_image


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


def test_erf_is_computed_on_the_uploaded_image_with_the_models_weights(
    client: TestClient, model_dir: Path
) -> None:
    import torch

    from atrous.infer.predictor import normalize

    image = random_image(30, 40, seed=7)
    segmented = client.post("/v1/segment?format=json&mask=true", content=png(image)).json()
    image_id = segmented["image_id"]
    query = f"x=3&y=20&width=40&height=30&image_id={image_id}"
    body = client.get(f"/v1/receptive-field?{query}").json()
    assert body["erf"]["on_image"] is True
    assert "uploaded image" in body["erf"]["depends_on"]
    assert "architecture only" in body["coverage"]["depends_on"]

    # Reference: atrous.analysis's ERF of the model evaluated at this image (the random
    # inputs scaled by 1e-6, so the gradient is the one at the image itself).
    model = load_pretrained(model_dir).eval()
    base = normalize(image)
    reference = effective_receptive_field(
        lambda x: model(base + 1e-6 * x), input_size=(30, 40), samples=1, location=(20, 3)
    )
    assert body["erf"]["radius_50"] == pytest.approx(reference.radius(0.5), abs=0.01)
    drawn = decode(body["erf"]["png"])[..., 3] > 0
    np.testing.assert_array_equal(drawn, reference.map > 0)

    # Another photo gives another ERF; without image_id it is the random-input average.
    other = random_image(30, 40, seed=8)
    other_id = client.post("/v1/segment?format=json&mask=true", content=png(other)).json()
    other_body = client.get(
        f"/v1/receptive-field?x=3&y=20&width=40&height=30&image_id={other_id['image_id']}"
    ).json()
    assert decode(other_body["erf"]["png"]).tolist() != decode(body["erf"]["png"]).tolist()
    plain = client.get("/v1/receptive-field?x=3&y=20&width=40&height=30").json()
    assert plain["erf"]["on_image"] is False
    assert torch.is_grad_enabled()


def test_unknown_or_mismatched_image_id_is_refused(client: TestClient) -> None:
    unknown = client.get("/v1/receptive-field?x=0&y=0&width=4&height=4&image_id=feedbeef")
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_image"
    image_id = client.post(
        "/v1/segment?format=json&mask=true", content=png(random_image(10, 12))
    ).json()["image_id"]
    wrong = client.get(f"/v1/receptive-field?x=0&y=0&width=4&height=4&image_id={image_id}")
    assert wrong.status_code == 422 and wrong.json()["error"] == "size_mismatch"


def test_dilated_stages_are_measured_at_the_image_size_on_their_maps(
    client: TestClient, model_dir: Path
) -> None:
    from atrous.analysis.model_report import dilated_stages_at

    # 480x320 is analysed on a 48x32 grid for the ERF, but the stages at the image size:
    # gridding lives on the feature maps the network builds for this image.
    body = client.get("/v1/receptive-field?x=400&y=50&width=480&height=320").json()
    assert body["stage_size"] == {"width": 480, "height": 320}
    model = load_pretrained(model_dir)
    expected = dilated_stages_at(model, (320, 480), (50, 400))
    assert [stage["name"] for stage in body["stages"]] == [s.name for s in expected] == ["body"]
    (stage,), (reference,) = body["stages"], expected
    coverage = reference.coverage
    assert stage["source"] == "stem" and stage["stride"] == 2 and stage["rates"] == [1, 2, 5, 9]
    assert stage["grid"] == {"width": 240, "height": 160}
    assert stage["location"] == {"x": 200, "y": 25}
    assert list(stage["box"].values()) == list(coverage.box)
    assert stage["hole_fraction"] == coverage.hole_fraction == 0.0
    reached = coverage.counts[coverage.counts > 0]
    assert stage["paths"] == {"low": reached.min(), "high": reached.max()}
    heat = decode(stage["png"])
    assert heat.shape == (160, 240, 4)
    np.testing.assert_array_equal(heat[..., 3] > 0, coverage.counts > 0)
    # Log scale, opaque where reached: the fewest paths get the colour bar's first
    # colour, the most its last.
    bar = body["colour_bars"]["coverage"]
    assert bar["scale"] == "log10" and "log" in bar["label"]
    first, last = (tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in bar["colours"][::15])
    assert tuple(heat[coverage.counts == reached.min()][0, :3]) == first
    assert tuple(heat[coverage.counts == reached.max()][0, :3]) == last
    assert body["colour_bars"]["erf"]["scale"] == "sqrt"


@pytest.fixture(scope="module")
def gridded_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A model whose body (rates 2, 2, 2) grids: every other stem position is a hole."""
    import torch

    from atrous.models import build_model, save_pretrained
    from atrous.serve import ServeConfig, create_app
    from tests.serve.conftest import BASE_URL, wait_ready

    torch.manual_seed(0)
    model = build_model("dilated_net", num_classes=3, width=4, rates=(2, 2, 2))
    folder = save_pretrained(model, tmp_path_factory.mktemp("gridded"))
    config = ServeConfig(model=str(folder), max_analysis_side=48, erf_samples=1)
    with TestClient(create_app(config), base_url=BASE_URL) as test_client:
        wait_ready(test_client)
        yield test_client


def test_a_gridded_stage_shows_its_holes_where_the_pixel_is(gridded_client: TestClient) -> None:
    middle = gridded_client.get("/v1/receptive-field?x=50&y=40&width=100&height=80").json()
    corner = gridded_client.get("/v1/receptive-field?x=0&y=0&width=100&height=80").json()
    (stage,), (cut,) = middle["stages"], corner["stages"]
    # Rates 2, 2, 2 on the 40x50 stem map: a 13x13 box, even offsets only.
    assert stage["location"] == {"x": 25, "y": 20}
    assert stage["box"] == {"y0": 14, "y1": 27, "x0": 19, "x1": 32}
    assert stage["hole_fraction"] == pytest.approx(1 - (7 / 13) ** 2)
    assert stage["lattice"] == {"y": 2, "x": 2}
    # At the corner the field is cut off: another box, another map.
    assert cut["box"] == {"y0": 0, "y1": 7, "x0": 0, "x1": 7}
    assert decode(cut["png"]).tolist() != decode(stage["png"]).tolist()
    # At the image the stem fills the holes: the whole network reaches every pixel.
    assert middle["coverage"]["hole_fraction"] == 0.0
