"""Endpoint tests: answers checked against atrous.infer run directly on the same image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from atrous.infer import Predictor, overlay
from atrous.models import load_pretrained
from tests.data.helpers import dds_with_unimplemented_format
from tests.serve.conftest import CLASS_NAMES, PALETTE, huge_png, png, random_image


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> Predictor:
    """The same saved model, run without the service."""
    return Predictor(load_pretrained(model_dir), device="cpu", mode="whole")


def test_probes(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["load"]["running"] == 0


def test_models_reports_classes_colours_stride_and_limits(
    client: TestClient, model_dir: Path
) -> None:
    (info,) = client.get("/v1/models").json()["models"]
    assert info["name"] == model_dir.name  # the folder's name, not the server's path
    assert [c["name"] for c in info["classes"]] == CLASS_NAMES
    assert [tuple(c["color"]) for c in info["classes"]] == PALETTE
    assert info["num_classes"] == 3
    assert info["output_stride"] == load_pretrained(model_dir).output_stride
    assert info["limits"]["max_upload_bytes"] == 200_000
    assert info["limits"]["max_image_pixels"] == 1_000_000


def test_segment_png_is_the_palette_mask(client: TestClient, reference: Predictor) -> None:
    image = random_image(37, 53, seed=1)
    response = client.post("/v1/segment?format=png", content=png(image))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    mask = Image.open(io.BytesIO(response.content))
    assert mask.mode == "P"
    assert mask.getpalette()[:9] == [v for colour in PALETTE for v in colour]
    np.testing.assert_array_equal(np.asarray(mask), reference.predict(image))


def test_segment_json_areas_match_direct_prediction(
    client: TestClient, reference: Predictor
) -> None:
    image = random_image(30, 44, seed=2)
    files = {"file": ("photo.png", png(image), "image/png")}
    response = client.post("/v1/segment?format=json&mask=true", files=files)
    assert response.status_code == 200
    body = response.json()
    expected = reference.predict(image)
    assert (body["width"], body["height"]) == (44, 30)
    counts = np.bincount(expected.ravel(), minlength=3)
    assert [c["pixels"] for c in body["classes"]] == counts.tolist()
    assert sum(c["fraction"] for c in body["classes"]) == pytest.approx(1.0)
    assert [c["name"] for c in body["classes"]] == CLASS_NAMES
    # The page's mask: greyscale PNG, value = class index.
    header, encoded = body["mask_png"].split(",", 1)
    assert header == "data:image/png;base64"
    import base64

    labels = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))
    np.testing.assert_array_equal(labels, expected)


def test_segment_overlay_matches_infer_overlay(client: TestClient, reference: Predictor) -> None:
    image = random_image(24, 24, seed=3)
    response = client.post("/v1/segment?format=overlay&alpha=0.3", content=png(image))
    assert response.status_code == 200
    drawn = np.asarray(Image.open(io.BytesIO(response.content)))
    expected = np.asarray(overlay(image, reference.predict(image), PALETTE, 0.3))
    np.testing.assert_array_equal(drawn, expected)


def test_jpeg_and_greyscale_uploads_are_accepted(client: TestClient) -> None:
    buffer = io.BytesIO()
    Image.fromarray(random_image(20, 30)[..., 0]).save(buffer, format="JPEG")
    response = client.post("/v1/segment?format=json", content=buffer.getvalue())
    assert response.status_code == 200
    assert (response.json()["width"], response.json()["height"]) == (30, 20)


BAD_UPLOADS = {
    "empty body": (b"", 400, "empty_body"),
    "not an image": (b"this is plain text, not a picture", 415, "not_an_image"),
    "truncated png": (png(random_image(64, 64))[:300], 422, "corrupt_image"),
    # A decoder that raises NotImplementedError (a DDS pixel format Pillow lacks) used to
    # answer 500.
    "unimplemented DDS format": (dds_with_unimplemented_format(), 422, "corrupt_image"),
    "30000x30000 image": (huge_png(30000), 413, "too_many_pixels"),
    "over the size limit": (b"\x89PNG" + bytes(250_000), 413, "upload_too_large"),
}


@pytest.mark.parametrize("name", list(BAD_UPLOADS))
def test_bad_upload_gets_4xx_json_and_service_stays_healthy(client: TestClient, name: str) -> None:
    data, status, code = BAD_UPLOADS[name]
    for send in ("raw", "multipart"):
        if send == "raw":
            response = client.post("/v1/segment", content=data)
        else:
            response = client.post("/v1/segment", files={"file": ("x.png", data, "image/png")})
        assert response.status_code == status, (send, response.text)
        body = response.json()
        assert body["error"] == code
        assert len(body["detail"]) > 10
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    good = client.post("/v1/segment?format=json", content=png(random_image(16, 16)))
    assert good.status_code == 200


def test_pixel_limit_below_pillow_guard_names_the_size(client: TestClient) -> None:
    # 1200x1000 = 1.2 MP: over this server's 1 MP limit, far under Pillow's own guard.
    data = png(Image.new("1", (1200, 1000)))
    response = client.post("/v1/segment", content=data)
    assert response.status_code == 413
    assert "1200x1000" in response.json()["detail"]


def test_streamed_upload_without_length_is_cut_at_the_limit(client: TestClient) -> None:
    def chunks():  # no Content-Length: the server must count while reading
        for _ in range(30):
            yield bytes(10_000)

    response = client.post("/v1/segment", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"] == "upload_too_large"


def test_multipart_without_file_field(client: TestClient) -> None:
    response = client.post("/v1/segment", files={"image": ("a.png", png(random_image(8, 8)))})
    assert response.status_code == 400
    assert response.json()["error"] == "no_file"


def test_unknown_format_is_rejected(client: TestClient) -> None:
    response = client.post("/v1/segment?format=gif", content=png(random_image(8, 8)))
    assert response.status_code == 422


def test_openapi_docs_and_page_are_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/v1/segment", "/v1/models", "/v1/receptive-field", "/healthz", "/readyz"} <= set(
        schema["paths"]
    )
    assert "multipart/form-data" in schema["paths"]["/v1/segment"]["post"]["requestBody"]["content"]
    # No endpoint takes a model or a file name from the client.
    for path in schema["paths"].values():
        for operation in path.values():
            names = {p["name"] for p in operation.get("parameters", [])}
            assert not names & {"model", "path", "dir", "weights", "checkpoint"}
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200
    assert 'src="/static/app.js"' in page.text
    assert "drawOverlay" in client.get("/static/app.js").text
    assert client.get("/static/style.css").status_code == 200
