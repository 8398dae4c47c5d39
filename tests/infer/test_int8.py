"""atrous's own int8 (PT2E, x86 Inductor): every convolution quantised, the stem split off
exactly, saved ranges rebuild the same model, and masks that agree with fp32."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchao")

from atrous.infer.int8 import (
    Int8Model,
    RangesMismatchError,
    _prepare,
    _relabel_conv_subclasses,
    split_stem,
)
from atrous.models import build_model


def _lite(num_classes: int = 3) -> torch.nn.Module:
    model = build_model(
        "deeplabv3plus", num_classes=num_classes, backbone="efficientnet_lite0", head_channels=16
    )
    return model.eval()


def _images(count: int, seed: int, size: tuple[int, int] = (64, 96)) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, 3, *size, generator=generator) for _ in range(count)]


@pytest.mark.parametrize(
    "name, backbone", [("deeplabv3plus", "efficientnet_lite0"), ("fcn", "resnet18")]
)
def test_split_stem_is_exact(name: str, backbone: str) -> None:
    model = build_model(name, num_classes=3, backbone=backbone).eval()
    stem, rest = split_stem(model)
    assert stem is not None
    x = _images(1, seed=0)[0]
    with torch.no_grad():
        split, whole = rest.backbone(stem(x)), model.backbone(x)
    assert split.keys() == whole.keys()
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=0, atol=0)
    # The original keeps its stem.
    assert not isinstance(model.backbone.stem_modules, str)
    assert all(
        not isinstance(getattr(model.backbone, n), torch.nn.Identity)
        for n in model.backbone.stem_modules
    )


def test_every_convolution_is_quantised() -> None:
    """The TF-"same" convolutions (an nn.Conv2d subclass) are found by the quantizer
    once relabelled: no convolution is left with fp32 weights or input."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from atrous.infer.int8 import _Body

    stem, rest = split_stem(_lite())
    body = _Body(rest).eval()
    x = stem(_images(1, seed=1)[0])
    exported = torch.export.export(body, (x,)).module()
    assert _relabel_conv_subclasses(exported, body) > 0  # the stride-2 depthwise convs
    prepared = _prepare(body, x)
    prepared(x)
    converted = convert_pt2e(prepared)
    convs = [n for n in converted.graph.nodes if n.target == torch.ops.aten.conv2d.default]
    assert convs
    for conv in convs:
        source, weight = conv.args[0], conv.args[1]
        assert "dequantize_per_channel" in str(weight.target), conv.name
        assert "dequantize" in str(source.target), conv.name


def test_saved_ranges_rebuild_the_same_model_and_reject_another() -> None:
    model = _lite()
    int8 = Int8Model(model, calibration=_images(3, seed=2))
    again = Int8Model(model, ranges=int8.ranges())
    x = _images(1, seed=3)[0]
    first = int8(x)
    assert first.shape == (1, 3, 64, 96)
    torch.testing.assert_close(again(x), first, rtol=0, atol=0)
    other = build_model("fcn", num_classes=3, backbone="resnet18").eval()
    with pytest.raises(RangesMismatchError, match="calibrate again"):
        Int8Model(other, ranges=int8.ranges())(x)
    with pytest.raises(ValueError, match="either calibration"):
        Int8Model(model)


def test_int8_masks_agree_with_fp32_on_camvid(camvid_root) -> None:
    """The shipped model's int8, calibrated on training frames, on frames of another
    drive: the masks agree with fp32's on almost every pixel."""
    from atrous.data import build_dataset
    from atrous.infer.logits import class_labels
    from atrous.models import load_pretrained

    model = load_pretrained("camvid").eval()
    train = build_dataset("camvid", camvid_root, split="train+val-drive:0006R0")
    held = build_dataset("camvid", camvid_root, split="drive:0006R0")
    int8 = Int8Model(model, calibration=[train[i][0][None] for i in range(0, 360, 45)])
    agree = []
    with torch.no_grad():
        for index in (0, 50, 100):
            x = held[index][0][None]
            agree.append(float((class_labels(int8(x)) == class_labels(model(x))).float().mean()))
    assert min(agree) > 0.97, agree  # 0.9892 mean, 0.973 worst over all 101 frames


@pytest.mark.openvino
def test_openvino_int8_masks_agree_with_fp32_on_camvid(camvid_root) -> None:
    """OpenVINO's NNCF int8 through the runtime layer, same calibration frames."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from atrous.data import build_dataset
    from atrous.infer.logits import class_labels
    from atrous.infer.openvino import cached_openvino_model
    from atrous.models import load_pretrained

    model = load_pretrained("camvid").eval()
    train = build_dataset("camvid", camvid_root, split="train+val-drive:0006R0")
    held = build_dataset("camvid", camvid_root, split="drive:0006R0")
    calibration = [train[i][0][None] for i in range(0, 360, 45)]
    runner = cached_openvino_model(
        model, precision="int8", example=calibration[0], calibration=calibration
    )
    with torch.no_grad():
        for index in (0, 100):
            x = held[index][0][None]
            agree = float((class_labels(runner(x)) == class_labels(model(x))).float().mean())
            assert agree > 0.96, agree  # 0.9886 mean, 0.970 worst over all 101 frames
