from __future__ import annotations

import torch

from atrous.infer.quantize import quantize_int8

from .conftest import TinyASPPNet


def test_int8_model_tracks_fp32(tiny_model: TinyASPPNet) -> None:
    calibration = [torch.randn(2, 3, 48, 48) for _ in range(3)]
    int8 = quantize_int8(tiny_model, calibration)
    ops = {node.op_type for node in __import__("onnx").load(str(int8.path)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    x = torch.randn(2, 3, 40, 56)  # another size: the int8 graph keeps dynamic H/W
    with torch.no_grad():
        expected = tiny_model(x)
    got = int8(x)
    assert got.shape == expected.shape
    # int8 is an approximation: close in logits, mostly equal in labels, not identical.
    spread = float(expected.abs().max())
    assert 0 < float((got - expected).abs().max()) < 0.1 * spread
    assert (got.argmax(1) == expected.argmax(1)).float().mean() > 0.9
