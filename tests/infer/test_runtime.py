"""--runtime/--precision: what auto picks and why, saved quantisations that are trusted
only while they match the weights, clear errors for what cannot run."""

from __future__ import annotations

import sys

import pytest
import torch

from atrous.infer.logits import class_labels
from atrous.infer.quantized import find_quantized, save_quantized
from atrous.infer.runtime import (
    COMPILE_PAYS_AFTER,
    RuntimeUnavailableError,
    build_runner,
    choose,
    cpu_name,
    native_bf16,
)
from atrous.models import build_model


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch) -> None:
    """Saved quantisations are keyed by the weights, and every test here builds the same
    seeded model: each test gets its own cache so none sees another's record."""
    monkeypatch.setenv("ATROUS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def model() -> torch.nn.Module:
    return build_model("fcn", num_classes=3, backbone="resnet18").eval()


def _accepted(model: torch.nn.Module, **extra) -> dict:
    ranges = {"activation_post_process_0.min_val": torch.zeros(1)}
    details = {
        "accuracy": {"held_out": "drive:X", "images": 4, "pixel_agreement": 0.999,
                     "miou_fp32": 0.5, "miou_int8": 0.499},
        **extra,
    }  # fmt: skip
    return save_quantized(model, ranges, details, None)


def test_labels_equal_argmax_with_ties() -> None:
    scores = torch.randn(2, 5, 7, 9)
    scores[:, 3] = scores[:, 1]  # ties: the first index wins, as with argmax
    assert torch.equal(class_labels(scores), scores.argmax(1))
    assert torch.equal(class_labels(scores[0], dim=0), scores[0].argmax(0))


def test_auto_without_native_bf16_falls_back_to_fp32(model, monkeypatch) -> None:
    monkeypatch.setenv("ATROUS_NATIVE_BF16", "0")
    assert not native_bf16()
    choice = choose(model, "torch", "auto")
    assert (choice.precision, choice.compiled) == ("fp32", True)
    assert "no native bf16" in choice.reason
    monkeypatch.setenv("ATROUS_NATIVE_BF16", "1")
    assert choose(model, "torch", "auto").precision == "bf16"


def test_auto_compiles_only_when_it_pays(model, monkeypatch) -> None:
    monkeypatch.setenv("ATROUS_NATIVE_BF16", "1")
    few = choose(model, "torch", "auto", images=3)
    assert not few.compiled and "3 images" in few.reason
    assert choose(model, "torch", "auto", images=COMPILE_PAYS_AFTER).compiled
    served = choose(model, "torch", "auto", varied_shapes=True)
    assert not served.compiled and "sizes vary" in served.reason
    assert choose(model, "torch", "fp32", images=3).compiled is False


def test_auto_uses_a_saved_int8_and_says_why(model, monkeypatch) -> None:
    monkeypatch.setenv("ATROUS_NATIVE_BF16", "1")
    _accepted(model)
    choice = choose(model, "torch", "auto")
    assert (choice.precision, choice.compiled) == ("int8", True)
    assert "agreement 99.90 %" in choice.reason and "-0.10" in choice.reason
    # Few images: compiling does not pay, so not int8.
    assert choose(model, "torch", "auto", images=2).precision == "bf16"


def test_auto_picks_the_fastest_measured_on_this_cpu(model, monkeypatch) -> None:
    monkeypatch.setenv("ATROUS_NATIVE_BF16", "0")
    _accepted(
        model,
        machine=f"{cpu_name()}, 2 threads",
        latency_ms={"fp32": 5.0, "bf16": 1.0, "int8": 9.0},
    )
    choice = choose(model, "torch", "auto")
    assert choice.precision == "fp32"  # bf16 measured fastest, but not native here
    assert "fastest measured" in choice.reason


def test_a_saved_int8_is_dropped_when_weights_change_or_files_are_damaged(model, caplog) -> None:
    record = _accepted(model)
    assert find_quantized(model) is not None
    changed = build_model("fcn", num_classes=3, backbone="resnet18").eval()
    changed.load_state_dict(model.state_dict())
    with torch.no_grad():
        next(changed.parameters()).add_(1e-3)
    assert find_quantized(changed) is None  # new weights: another digest
    ranges = record.with_suffix(".safetensors")
    ranges.write_bytes(ranges.read_bytes()[:-3])
    assert find_quantized(model) is None
    assert "does not match" in caplog.text


def test_int8_without_a_saved_quantisation_says_how_to_make_one(model) -> None:
    choice = choose(model, "torch", "int8")
    with pytest.raises(RuntimeUnavailableError, match="atrous quantize"):
        build_runner(model, choice)


def test_onnxruntime_runs_fp32_only(model) -> None:
    with pytest.raises(RuntimeUnavailableError, match="fp32 only"):
        build_runner(model, choose(model, "onnxruntime", "bf16"))


def test_a_runtime_that_is_not_installed_names_its_extra(model, monkeypatch) -> None:
    from atrous.infer.packages import MissingPackageError

    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingPackageError, match=r"atrous\[openvino\]"):
        build_runner(model, choose(model, "openvino", "fp32"))


def test_unknown_names_are_refused(model) -> None:
    with pytest.raises(ValueError, match="unknown runtime"):
        choose(model, "tensorrt", "fp32")
    with pytest.raises(ValueError, match="unknown precision"):
        choose(model, "torch", "fp16")


@pytest.mark.parametrize(
    "runtime, precision, threshold",
    [("torch", "fp32", 0.999), ("torch", "bf16", 0.99), ("onnxruntime", "fp32", 0.999),
     pytest.param("openvino", "fp32", 0.999, marks=pytest.mark.openvino)],
)  # fmt: skip
def test_each_path_agrees_with_eager_fp32_on_camvid(camvid_root, runtime, precision, threshold):
    """Eager runners (no compile) of the shipped model on frames of a held-out drive."""
    from atrous.data import build_dataset
    from atrous.infer.runtime import RuntimeChoice
    from atrous.models import load_pretrained

    if runtime == "openvino":
        pytest.importorskip("openvino")
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
    model = load_pretrained("camvid").eval()
    runner = build_runner(model, RuntimeChoice(runtime, precision, False, "test"))
    held = build_dataset("camvid", camvid_root, split="drive:0006R0")
    with torch.no_grad():
        for index in (10, 90):
            x = held[index][0][None]
            agree = (class_labels(runner(x)) == class_labels(model(x))).float().mean()
            assert float(agree) > threshold, (runtime, precision, float(agree))
