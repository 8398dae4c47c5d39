from __future__ import annotations

import onnx
import pytest
import torch

from atrous.infer.quantize import onnx_node_names, quantize_int8

from .conftest import TinyASPPNet


def _op_types(path: object) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def test_int8_model_tracks_fp32(tiny_model: TinyASPPNet) -> None:
    calibration = [torch.randn(2, 3, 48, 48) for _ in range(3)]
    int8 = quantize_int8(tiny_model, calibration)
    ops = set(_op_types(int8.path))
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


def _inputs_of(path: object, op_type: str) -> list[list[str]]:
    """For each node of ``op_type``: the op types producing its inputs (initializers and
    graph inputs read as \"graph input\")."""
    graph = onnx.load(str(path)).graph
    producers = {out: node.op_type for node in graph.node for out in node.output}
    return [
        [producers.get(name, "graph input") for name in node.input]
        for node in graph.node
        if node.op_type == op_type
    ]


def test_keep_classifier_fp32_leaves_logits_and_upsampling_unquantised(
    tiny_model: TinyASPPNet,
) -> None:
    calibration = [torch.randn(1, 3, 48, 48) for _ in range(2)]
    kept = quantize_int8(tiny_model, calibration, keep_classifier_fp32=True)
    quantised = quantize_int8(tiny_model, calibration, keep_classifier_fp32=False)
    # The last Resize is the logits' upsampling: fed by a DequantizeLinear only when the
    # logits were rounded to int8.
    assert _inputs_of(quantised.path, "Resize")[-1][0] == "DequantizeLinear"
    assert _inputs_of(kept.path, "Resize")[-1][0] == "Conv"
    # ...and the classifier's weights stay fp32 (a plain initializer, no
    # DequantizeLinear), while the stem's are int8.
    assert _inputs_of(kept.path, "Conv")[-1][1] == "graph input"
    assert _inputs_of(quantised.path, "Conv")[-1][1] == "DequantizeLinear"
    assert _inputs_of(kept.path, "Conv")[0][1] == "DequantizeLinear"


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_calibration_methods_set_different_ranges(tiny_model: TinyASPPNet, method: str) -> None:
    torch.manual_seed(0)
    calibration = [torch.randn(1, 3, 48, 48) for _ in range(2)]
    int8 = quantize_int8(tiny_model, calibration, method=method)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        expected = tiny_model(x)
    assert (int8(x).argmax(1) == expected.argmax(1)).float().mean() > 0.9
    if method == "percentile":
        # Clipping at a low percentile narrows the ranges: the stem's activation scale
        # must be smaller than MinMax's on the same data.
        def first_scale(model: object) -> float:
            graph = onnx.load(str(model.path)).graph
            inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
            q = next(n for n in graph.node if n.op_type == "QuantizeLinear")
            return float(inits[q.input[1]])

        minmax = quantize_int8(tiny_model, calibration, method="minmax")
        clipped = quantize_int8(tiny_model, calibration, method="percentile", percentile=99.0)
        assert first_scale(clipped) < first_scale(minmax)


def test_exclude_keeps_named_nodes_fp32_and_rejects_unknown_names(
    tiny_model: TinyASPPNet,
) -> None:
    calibration = [torch.randn(1, 3, 32, 32)]
    probe = quantize_int8(tiny_model, calibration)
    convs = onnx_node_names(probe.path.parent / "fp32.pre.onnx", op_type="Conv")
    int8 = quantize_int8(tiny_model, calibration, exclude=[convs[0]])
    assert _inputs_of(int8.path, "Conv")[0][1] == "graph input"  # fp32 weights
    assert _inputs_of(int8.path, "Conv")[1][1] == "DequantizeLinear"
    with pytest.raises(ValueError, match="no node"):
        quantize_int8(tiny_model, calibration, exclude=["not-a-node"])
    with pytest.raises(ValueError, match="calibration method"):
        quantize_int8(tiny_model, calibration, method="mse")  # type: ignore[arg-type]
