"""OpenVINO as a runtime: each set of weights is converted (or quantised) once, the IR is
read back on later calls, and a damaged or foreign cache is rebuilt with a warning.

Skipped as a whole where the ``atrous[openvino]`` extra is not installed.
"""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("openvino")

from atrous.infer import openvino as runtime
from atrous.infer.cache import verify_record
from atrous.infer.openvino import (
    OPENVINO_CACHE_KIND,
    MissingCalibrationError,
    cached_openvino_model,
)
from atrous.models import build_model

pytestmark = pytest.mark.openvino  # run in their own process by make test (pyproject.toml)

SIZE = (1, 3, 64, 64)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("fcn", num_classes=3, backbone="resnet18").eval()


@pytest.fixture(scope="module")
def example() -> torch.Tensor:
    return torch.randn(*SIZE, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, model, example) -> Path:
    """A model folder whose fp32 IR is cached (converted once for the whole module)."""
    model_dir = tmp_path_factory.mktemp("built")
    cached_openvino_model(model, precision="fp32", example=example, model_dir=model_dir)
    return model_dir


@pytest.fixture
def model_dir(tmp_path: Path, built: Path) -> Path:
    """A private copy of ``built``, free to damage."""
    return Path(shutil.copytree(built, tmp_path / "model"))


def _cache(model_dir: Path) -> Path:
    return model_dir / "cache" / OPENVINO_CACHE_KIND


def _entries(model_dir: Path, suffix: str = ".xml") -> list[Path]:
    return sorted(_cache(model_dir).glob(f"*{suffix}"))


def _no_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(runtime, "convert_to_openvino", refuse)
    monkeypatch.setattr(runtime, "quantize_nncf_int8", refuse)


def _assert_matches(model: torch.nn.Module, runner, x: torch.Tensor) -> None:
    with torch.no_grad():
        reference = model(x)
    relative = (runner(x) - reference).abs().max() / reference.abs().max()
    assert relative < 1e-4, relative


def test_the_first_call_converts_and_caches(built: Path) -> None:
    xml = _entries(built)
    assert len(xml) == 1 and xml[0].name.startswith("fp32-")
    files = [xml[0], xml[0].with_suffix(".bin")]
    assert verify_record(xml[0].with_suffix(".json"), xml[0].stem, files)
    assert not [p for p in _cache(built).iterdir() if p.name.startswith(".")]


def test_a_second_call_reads_the_cache(
    model, example, model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    _no_conversion(monkeypatch)
    with caplog.at_level(logging.INFO, logger="atrous.infer.openvino"):
        runner = cached_openvino_model(
            model, precision="fp32", example=example, model_dir=model_dir, threads=1
        )
    assert "read from" in caplog.text
    _assert_matches(model, runner, example)
    _assert_matches(model, runner, torch.randn(2, 3, 40, 56))  # other batch and size


def test_a_deep_copy_reads_the_same_cache(
    model, example, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_conversion(monkeypatch)
    cached_openvino_model(
        copy.deepcopy(model), precision="fp32", example=example, model_dir=model_dir
    )


def test_one_changed_weight_is_a_new_key(model, example, model_dir: Path) -> None:
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.classifier[-1].bias[0] += 0.5
    before = _entries(model_dir)
    runner = cached_openvino_model(changed, precision="fp32", example=example, model_dir=model_dir)
    after = _entries(model_dir)
    assert len(after) == 2 and set(before) < set(after)
    _assert_matches(changed, runner, example)


def _truncate_bin(model_dir: Path) -> Path:
    path = _entries(model_dir, ".bin")[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _edit_xml(model_dir: Path) -> Path:
    path = _entries(model_dir)[0]
    path.write_text(path.read_text().replace('version="11"', 'version="11" ', 1))
    return path


def _break_json(model_dir: Path) -> Path:
    path = _entries(model_dir, ".json")[0]
    path.write_text(path.read_text()[:40])
    return path


def _edit_hash(model_dir: Path) -> Path:
    path = _entries(model_dir, ".json")[0]
    path.write_text(path.read_text().replace('.bin": "', '.bin": "f', 1))
    return path


DAMAGE = {
    "truncated .bin": _truncate_bin,
    "edited .xml": _edit_xml,
    "bad JSON": _break_json,
    "hash mismatch": _edit_hash,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_cache_is_rebuilt_with_a_warning(
    model, example, model_dir: Path, caplog, damage: str
) -> None:
    culprit = DAMAGE[damage](model_dir)
    with caplog.at_level(logging.INFO, logger="atrous.infer.openvino"):
        runner = cached_openvino_model(
            model, precision="fp32", example=example, model_dir=model_dir
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and culprit.name in warnings[0], warnings
    assert "converted in" in caplog.text
    _assert_matches(model, runner, example)
    xml = _entries(model_dir)[0]
    assert verify_record(xml.with_suffix(".json"), xml.stem, [xml, xml.with_suffix(".bin")])


def test_an_unwritable_model_folder_falls_back_to_the_user_cache(
    model, example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATROUS_CACHE_DIR", str(tmp_path / "user"))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "cache").write_text("")  # a file where the cache folder would go
    runner = cached_openvino_model(model, precision="fp32", example=example, model_dir=model_dir)
    _assert_matches(model, runner, example)
    assert len(list((tmp_path / "user" / OPENVINO_CACHE_KIND).glob("fp32-*.xml"))) == 1
    _no_conversion(monkeypatch)
    cached_openvino_model(model, precision="fp32", example=example, model_dir=model_dir)


def test_int8_without_calibration_or_cache_says_how_to_make_one(
    model, example, tmp_path: Path
) -> None:
    with pytest.raises(MissingCalibrationError) as info:
        cached_openvino_model(model, precision="int8", example=example, model_dir=tmp_path)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert f"atrous quantize --model {tmp_path} --runtime openvino --calib DIR" in message


def test_int8_is_quantised_once_and_then_read_without_calibration(
    model, example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    generator = torch.Generator().manual_seed(2)
    calibration = [torch.randn(*SIZE, generator=generator) for _ in range(2)]
    first = cached_openvino_model(
        model, precision="int8", example=example, model_dir=tmp_path, calibration=calibration
    )
    with torch.no_grad():
        agreement = (first(example).argmax(1) == model(example).argmax(1)).float().mean()
    assert agreement > 0.8, agreement
    assert [p.name[:5] for p in _entries(tmp_path)] == ["int8-"]
    _no_conversion(monkeypatch)
    with caplog.at_level(logging.INFO, logger="atrous.infer.openvino"):
        again = cached_openvino_model(model, precision="int8", example=example, model_dir=tmp_path)
        same = cached_openvino_model(
            model, precision="int8", example=example, model_dir=tmp_path, calibration=calibration
        )
    assert caplog.text.count("read from") == 2
    torch.testing.assert_close(again(example), first(example))
    torch.testing.assert_close(same(example), first(example))
    other = [torch.randn(*SIZE, generator=generator)]
    with pytest.raises(AssertionError, match="converted again"):  # other images: quantise
        cached_openvino_model(
            model, precision="int8", example=example, model_dir=tmp_path, calibration=other
        )


def test_options_are_checked_before_any_conversion(model, example) -> None:
    with pytest.raises(ValueError, match="precision"):
        cached_openvino_model(model, precision="fp16", example=example)
    with pytest.raises(ValueError, match="inference_precision"):
        cached_openvino_model(model, precision="fp32", example=example, inference_precision="x")
    with pytest.raises(ValueError, match="NxCxHxW"):
        cached_openvino_model(model, precision="fp32", example=example[0])
    with pytest.raises(ValueError, match="calibration is empty"):
        cached_openvino_model(model, precision="int8", example=example, calibration=[])
