"""Evaluation modes and the result object."""

from __future__ import annotations

import math

import torch
from torch import nn

from atrous.engine import evaluate, predict_batch
from atrous.infer import Predictor


class Pointwise(nn.Module):
    """A 1x1 conv: every pixel's logits depend on that pixel only, so tiling cannot change them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_slide_equals_whole_for_a_pointwise_model() -> None:
    model = Pointwise().eval()
    x = torch.randn(2, 3, 37, 53)
    with torch.no_grad():
        torch.testing.assert_close(
            Predictor(model, mode="slide", window=16, overlap=0.5).scores(x), model(x)
        )
        torch.testing.assert_close(
            Predictor(model, mode="slide", window=64, overlap=0.3).scores(x), model(x)
        )


def test_ms_flip_at_scale_one_equals_whole_for_a_pointwise_model() -> None:
    model = Pointwise().eval()
    x = torch.randn(1, 3, 20, 30)
    assert torch.equal(predict_batch(model, x, mode="ms_flip", scales=(1.0,)), model(x).argmax(1))


def test_evaluate_perfect_model_and_absent_class_note() -> None:
    masks = torch.randint(0, 3, (4, 12, 12))
    masks[0, 0, :] = 255
    images = nn.functional.one_hot(masks.clamp(max=2), 4).permute(0, 3, 1, 2).float()[:, :3]

    class Oracle(nn.Module):  # reads the label out of the one-hot image
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, torch.zeros_like(x[:, :1])], 1) * self.scale

    dataset = list(zip(images, masks))
    result = evaluate(Oracle(), dataset, num_classes=4, class_names=["a", "b", "c", "d"])  # type: ignore[arg-type]
    assert result["miou"] == 1.0 and result["pixel_acc"] == 1.0 and result["boundary_f1"] == 1.0
    assert math.isnan(result.per_class[3]["iou"]) and result.per_class[3]["note"] == "absent"
    assert "left out of mIoU" in result.table() and result.to_dict()["per_class"][3]["iou"] is None
