"""An optional runtime that is not installed is named with the pip line that installs it."""

from __future__ import annotations

import sys

import pytest
import torch

from atrous.infer.packages import MissingPackageError, require_packages


def test_a_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(MissingPackageError, match=r"pip install 'atrous\[openvino\]'") as info:
        require_packages(("openvino",), extra="openvino", purpose="OpenVINO fp32")
    assert isinstance(info.value, ImportError)
    assert "OpenVINO fp32 needs openvino" in str(info.value)


def test_the_benchmark_still_exports_the_error() -> None:
    from atrous.infer.bench import MissingPackageError as FromBench

    assert FromBench is MissingPackageError


def test_cached_openvino_model_without_openvino_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from atrous.infer.openvino import cached_openvino_model

    monkeypatch.setitem(sys.modules, "openvino", None)
    model = torch.nn.Conv2d(3, 2, 1)
    with pytest.raises(MissingPackageError, match=r"pip install 'atrous\[openvino\]'"):
        cached_openvino_model(model, precision="fp32", example=torch.zeros(1, 3, 8, 8))


@pytest.mark.openvino  # imports the real openvino: its own process under make test
def test_quantising_without_nncf_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from atrous.infer.openvino import cached_openvino_model

    monkeypatch.setitem(sys.modules, "nncf", None)
    calibration = [torch.zeros(1, 3, 8, 8)]
    with pytest.raises(MissingPackageError, match="nncf"):
        cached_openvino_model(
            torch.nn.Conv2d(3, 2, 1),
            precision="int8",
            example=calibration[0],
            calibration=calibration,
        )
