"""Int8 static quantisation through ONNX Runtime (QDQ format, per-channel weights).

Static quantisation calibrates activation ranges on sample images once, so at run time
every convolution is an int8 x int8 -> int32 GEMM (VNNI/AMX on recent x86) with no
per-call range computation. Argmax agreement with fp32 must be checked on held-out
images (never the calibration ones): ``atrous bench --variants int8`` and
``benchmarks/int8_agreement.py`` report it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from atrous.infer.export import OnnxRuntimeModel, export_onnx

CalibrationName = Literal["minmax", "percentile", "entropy"]
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "percentile", "entropy")


def quantize_int8(
    model: nn.Module,
    calibration: Sequence[torch.Tensor],
    *,
    out: str | Path | None = None,
    per_channel: bool = True,
    keep_classifier_fp32: bool = True,
    method: CalibrationName = "percentile",
    percentile: float = 99.999,
    activation_symmetric: bool = False,
    exclude: Sequence[str] = (),
    op_types: Sequence[str] | None = None,
) -> OnnxRuntimeModel:
    """Export ``model`` to ONNX, quantise it statically to int8 and open it in ORT.

    Args:
        model: the fp32 model.
        calibration: normalised input batches (``NxCxHxW``) that set the activation ranges;
            the first one is also the export example. Draw them from the distribution the
            model will see, and measure agreement on other images.
        out: where to keep the int8 ONNX file (a temporary folder by default).
        per_channel: one weight scale per output channel (better accuracy, same speed).
        keep_classifier_fp32: leave the last convolution (the 1x1 classifier producing the
            logits, a tiny share of the FLOPs) and everything after it (the bilinear
            upsampling of the logits) in fp32, so the logits are never rounded to 256
            levels before the argmax.
        method: how activation ranges are chosen from the calibration activations:
            ``"minmax"`` (the observed extremes), ``"percentile"`` (clip the histogram
            at ``percentile``, so one outlier does not widen every step) or
            ``"entropy"`` (the clipping that keeps the KL divergence smallest).
        percentile: the histogram percentile kept by ``method="percentile"``.
        activation_symmetric: quantise activations symmetrically around zero instead of
            with a zero point (post-ReLU tensors then lose half of the uint8 range).
        exclude: ONNX node names left in fp32 (see ``onnx_node_names``).

    The defaults (percentile calibration, classifier kept in fp32) won on the trained
    ``camvid`` model: 99.49% argmax agreement with fp32 on 16 held-out CamVid val images
    against 99.25% for plain MinMax (benchmarks/results/infer.md, "int8 follow-up").
        op_types: the ONNX operator types to quantise (ORT's default list when None).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("quantize_int8 needs at least one calibration batch")
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise ValueError(
            f"unknown calibration method {method!r}; expected one of {', '.join(methods)}"
        )
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (50, 100], got {percentile}")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": x.numpy()} for x in calibration])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    folder = Path(tempfile.mkdtemp(prefix="atrous-int8-"))
    fp32_path = export_onnx(model, folder / "fp32.onnx", example=calibration[0])
    prepared = folder / "fp32.pre.onnx"
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    target = Path(out) if out is not None else folder / "int8.onnx"
    excluded = list(exclude)
    nodes = onnx_node_names(prepared)
    unknown = [name for name in excluded if name not in nodes]
    if unknown:
        raise ValueError(f"exclude names no node of the exported graph: {unknown[:5]}")
    convs = onnx_node_names(prepared, op_type="Conv")
    if keep_classifier_fp32:  # the last conv and the logits' upsampling after it
        excluded += nodes[nodes.index(convs[-1]) :]
    extra: dict[str, object] = {"ActivationSymmetric": activation_symmetric}
    if method == "percentile":
        extra["CalibPercentile"] = percentile
    quantize_static(
        str(prepared),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        calibrate_method=methods[method],
        nodes_to_exclude=excluded,
        op_types_to_quantize=list(op_types) if op_types is not None else None,
        extra_options=extra,
    )
    return OnnxRuntimeModel(target)


def onnx_node_names(path: str | Path, *, op_type: str | None = None) -> list[str]:
    """Node names of an ONNX file in graph order, optionally of one operator type (for
    ``"Conv"``: first = stem conv, last = classifier): the handles that
    ``quantize_int8(exclude=...)`` takes."""
    import onnx

    graph = onnx.load(str(path)).graph
    return [node.name for node in graph.node if op_type is None or node.op_type == op_type]
