"""Fixtures for the service tests: a tiny saved model, images, and app clients."""

from __future__ import annotations

import io
import time
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Starlette's TestClient still runs on httpx and says so on import; not our concern here.
warnings.filterwarnings("ignore", message=".*httpx2.*")
pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")

from fastapi.testclient import TestClient  # noqa: E402

from atrous.serve import ServeConfig, create_app  # noqa: E402

# The loopback name the service answers to (its Host check refuses "testserver").
BASE_URL = "http://127.0.0.1"

CLASS_NAMES = ["sky", "road", "tree"]
PALETTE = [(70, 130, 180), (128, 64, 128), (107, 142, 35)]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved three-class dilated_net, narrow enough to run in milliseconds."""
    import torch

    from atrous.models import build_model, save_pretrained

    torch.manual_seed(0)
    model = build_model("dilated_net", num_classes=3, width=8)
    return save_pretrained(
        model, tmp_path_factory.mktemp("model"), class_names=CLASS_NAMES, palette=PALETTE
    )


def png(image: np.ndarray | Image.Image) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def random_image(height: int = 40, width: int = 56, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def huge_png(side: int = 30000, rows: int | None = None) -> bytes:
    """A 1-bit PNG of ``side`` x ``side`` pixels that compresses to ~100 kB.

    Built by hand (rows of zeros deflated) so the test never holds the decoded image.
    With ``rows``, only that many rows of data follow the header: a truncated file whose
    header still declares the full size (quick to build; enough for a size check).
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])  # 1-bit greyscale
    row = b"\x00" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    count = side if rows is None else rows
    data = b"".join(compressor.compress(row) for _ in range(count)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def wait_ready(client: TestClient, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError(f"service not ready after {timeout_s} s: {client.get('/readyz').json()}")


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    """A ready client on the tiny model, small limits so the tests can reach them."""
    config = ServeConfig(
        model=str(model_dir),
        max_upload_bytes=200_000,
        max_image_pixels=1_000_000,
        max_analysis_side=48,
        erf_samples=2,
    )
    with TestClient(create_app(config), base_url=BASE_URL) as test_client:
        wait_ready(test_client)
        yield test_client
