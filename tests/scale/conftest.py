"""Fixtures for the scale tests: a tiny saved model, a folder of images, a local Ray.

The Ray instance is started once per test session on this machine only (two CPUs, no
dashboard, nodes addressed as 127.0.0.1) and shut down at the end.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

from tests.infer.test_io import _write_bomb

CLASS_NAMES = ["sky", "road", "car"]
PALETTE = [(0, 0, 255), (128, 128, 128), (255, 0, 0)]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved three-class dilated_net, 8 channels wide: milliseconds per image."""
    from atrous.models import build_model, save_pretrained

    torch.manual_seed(0)
    model = build_model("dilated_net", num_classes=3, width=8, rates=(1, 2, 4))
    return save_pretrained(
        model.eval(),
        tmp_path_factory.mktemp("model") / "tiny",
        class_names=CLASS_NAMES,
        palette=PALETTE,
    )


def write_images(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """``count`` random RGB PNGs of ``size`` (height, width) named ``img000.png`` ..."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"img{index:03d}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Readable images of three sizes (two of them sharing a stem), plus a truncated JPEG,
    a text file named .png and a decompression bomb."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    sizes = [("a.png", (40, 56)), ("a.jpg", (33, 47)), ("b.png", (40, 56)), ("c.png", (21, 30))]
    for name, size in sizes:
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)
    (folder / "broken.jpg").write_bytes((folder / "a.jpg").read_bytes()[:200])
    (folder / "notes.png").write_text("not an image")
    _write_bomb(folder / "bomb.png")
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def ray_local() -> Iterator[ModuleType]:
    """A local Ray instance: two CPUs, loopback, no dashboard (skipped without the extra)."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (make test-ray)")
    for attempt in range(3):
        try:
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                configure_logging=False,
            )
            break
        except Exception as error:
            # Ray waits a fixed 30 s for its raylet to register; a loaded CPU can miss it.
            if "timed out during startup" not in str(error) or attempt == 2:
                raise
            ray.shutdown()
    yield ray
    ray.shutdown()
