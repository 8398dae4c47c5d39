"""Int8 static quantisation through ONNX Runtime (QDQ format, per-channel weights).

Static quantisation calibrates activation ranges on sample images once, so at run time
every convolution is an int8 x int8 -> int32 GEMM (VNNI/AMX on recent x86) with no
per-call range computation. Argmax agreement with fp32 must be checked on real images:
``atrous bench --int8`` reports it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from atrous.infer.export import OnnxRuntimeModel, export_onnx


def quantize_int8(
    model: nn.Module,
    calibration: Sequence[torch.Tensor],
    *,
    out: str | Path | None = None,
    per_channel: bool = True,
    keep_classifier_fp32: bool = False,
) -> OnnxRuntimeModel:
    """Export ``model`` to ONNX, quantise it statically to int8 and open it in ORT.

    Args:
        model: the fp32 model.
        calibration: normalised input batches (``NxCxHxW``) that set the activation ranges;
            the first one is also the export example.
        out: where to keep the int8 ONNX file (a temporary folder by default).
        per_channel: one weight scale per output channel (better accuracy, same speed).
        keep_classifier_fp32: leave the last convolution (the 1x1 classifier producing the
            logits, a tiny share of the FLOPs) in fp32, where int8 rounding flips argmaxes.
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
    excluded: list[str] = []
    if keep_classifier_fp32:
        import onnx

        convs = [
            node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv"
        ]
        excluded = convs[-1:]
    quantize_static(
        str(prepared),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=excluded,
    )
    return OnnxRuntimeModel(target)
