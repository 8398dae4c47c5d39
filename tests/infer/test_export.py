from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from atrous.infer.export import (
    ExportMismatchError,
    check_export,
    export_onnx,
    export_torchscript,
    load_exported,
)

from .conftest import TinyASPPNet


def test_onnx_export_dynamic_sizes(tmp_path: Path, tiny_model: TinyASPPNet) -> None:
    path = export_onnx(tiny_model, tmp_path / "m.onnx", example=torch.randn(1, 3, 48, 64))
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version >= 17
    # The ASPP image-pooling branch is in the graph, not folded into a constant.
    ops = {node.op_type for node in graph.graph.node}
    assert ops & {"GlobalAveragePool", "ReduceMean"} and "Resize" in ops
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
    # Check at the example size and another one; also run an odd size by hand.
    assert check_export(tiny_model, path, example=torch.randn(1, 3, 48, 64)) <= 1e-4
    x = torch.randn(3, 3, 45, 97)
    got = load_exported(path)(x)
    torch.testing.assert_close(got, tiny_model(x).detach(), atol=1e-4, rtol=0)


def test_torchscript_export(tmp_path: Path, tiny_model: TinyASPPNet) -> None:
    path = export_torchscript(tiny_model, tmp_path / "m.pt", example=torch.randn(1, 3, 48, 64))
    assert check_export(tiny_model, path, example=torch.randn(1, 3, 48, 64)) <= 1e-4


def test_check_export_catches_a_different_model(tmp_path: Path, tiny_model: TinyASPPNet) -> None:
    path = export_torchscript(tiny_model, tmp_path / "m.pt", example=torch.randn(1, 3, 32, 32))
    other = TinyASPPNet().eval()
    with pytest.raises(ExportMismatchError, match="differs from PyTorch"):
        check_export(other, path, example=torch.randn(1, 3, 32, 32))


def test_opset_below_17_rejected(tmp_path: Path, tiny_model: TinyASPPNet) -> None:
    with pytest.raises(ValueError, match="opset"):
        export_onnx(tiny_model, tmp_path / "m.onnx", opset=13)
