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

    The defaults (percentile calibration, classifier kept in fp32) won on the trained
    ``camvid`` model: 99.49% argmax agreement with fp32 on 16 held-out CamVid val images
    against 99.25% for plain MinMax (benchmarks/results/infer.md, "int8 follow-up").

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
        op_types: the ONNX operator types to quantise (ORT's default list when None).
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    calibrate_method = _calibration_method(method, percentile, calibration)
    folder = Path(tempfile.mkdtemp(prefix="atrous-int8-"))
    prepared = _prepared_graph(model, calibration[0], folder)
    target = Path(out) if out is not None else folder / "int8.onnx"
    extra: dict[str, object] = {"ActivationSymmetric": activation_symmetric}
    if method == "percentile":
        extra["CalibPercentile"] = percentile
    quantize_static(
        str(prepared),
        str(target),
        _calibration_reader(calibration),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        calibrate_method=calibrate_method,
        nodes_to_exclude=_excluded_nodes(prepared, exclude, keep_classifier_fp32),
        op_types_to_quantize=list(op_types) if op_types is not None else None,
        extra_options=extra,
    )
    return OnnxRuntimeModel(target)


def _calibration_method(
    method: str, percentile: float, calibration: Sequence[torch.Tensor]
) -> object:
    """ORT's calibration method for ``method``, after checking the options (before the
    export, which takes seconds)."""
    from onnxruntime.quantization import CalibrationMethod

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
    return methods[method]


def _prepared_graph(model: nn.Module, example: torch.Tensor, folder: Path) -> Path:
    """The fp32 ONNX export with ORT's pre-processing (shape inference, folding) applied."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path = export_onnx(model, folder / "fp32.onnx", example=example)
    prepared = folder / "fp32.pre.onnx"
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    return prepared


def _excluded_nodes(
    prepared: Path, exclude: Sequence[str], keep_classifier_fp32: bool
) -> list[str]:
    """Nodes left in fp32: those named, plus the classifier and everything after it."""
    excluded = list(exclude)
    nodes = onnx_node_names(prepared)
    unknown = [name for name in excluded if name not in nodes]
    if unknown:
        raise ValueError(f"exclude names no node of the exported graph: {unknown[:5]}")
    if keep_classifier_fp32:  # the last conv and the logits' upsampling after it
        convs = onnx_node_names(prepared, op_type="Conv")
        excluded += nodes[nodes.index(convs[-1]) :]
    return excluded


def _calibration_reader(calibration: Sequence[torch.Tensor]) -> object:
    """ORT's calibration reader over the batches, one ``{"input": array}`` each (defined
    here so that importing this module does not import onnxruntime)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"input": x.numpy()} for x in calibration])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    return Reader()


def onnx_node_names(path: str | Path, *, op_type: str | None = None) -> list[str]:
    """Node names of an ONNX file in graph order, optionally of one operator type (for
    ``"Conv"``: first = stem conv, last = classifier): the handles that
    ``quantize_int8(exclude=...)`` takes."""
    import onnx

    graph = onnx.load(str(path)).graph
    return [node.name for node in graph.node if op_type is None or node.op_type == op_type]
