"""OpenVINO fp32 and NNCF post-training int8 for the same weights as the PyTorch model.

OpenVINO is what many Intel-CPU deployments run, so ``atrous bench`` times it beside
atrous's own fast path and ONNX Runtime: a speed claim only means something against the
runtime a user would otherwise pick. OpenVINO and NNCF are the optional extra
``atrous[openvino]``; nothing else in atrous imports this module.

Two choices that decide what is measured:

* **fp32 means fp32.** On CPUs with AMX or AVX512-BF16 OpenVINO's CPU plugin runs in
  bf16 by default (``INFERENCE_PRECISION_HINT``); ``OpenVinoModel`` asks for f32
  unless told otherwise, so "OpenVINO fp32" is compared with fp32 and its argmax
  agreement is that of fp32.
* **One compiled model per input shape.** The converted graph keeps batch, height and
  width dynamic; each new input shape is compiled once with that shape fixed, as a
  deployment at one camera resolution would, so timing never includes shape inference
  and the first call at a shape (the benchmarks' warm-up) pays for the compile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from atrous.infer.logits import LogitsOnly

__all__ = ["OpenVinoModel", "convert_to_openvino", "quantize_nncf_int8"]


def convert_to_openvino(model: nn.Module, example: torch.Tensor) -> Any:
    """The model as an ``openvino.Model`` (OpenVINO's PyTorch frontend, traced on
    ``example``), input dimensions left dynamic.

    The PyTorch frontend is OpenVINO's recommended path for a PyTorch model and needs no
    ONNX file; the weights are the model's own.
    """
    import openvino as ov

    wrapped = LogitsOnly(model).eval()
    with torch.no_grad():
        converted = ov.convert_model(wrapped, example_input=example)
    # Batch, height and width free: convert_model may fix them from the example.
    converted.reshape([-1, example.shape[1], -1, -1])
    return converted


def _last_convolution_name(ov_model: Any) -> str:
    """Friendly name of the graph's last convolution (the classifier of a segmenter)."""
    names = [
        op.get_friendly_name()
        for op in ov_model.get_ordered_ops()
        if op.get_type_name() == "Convolution"
    ]
    if not names:
        raise ValueError("the OpenVINO model has no Convolution node")
    return names[-1]


def quantize_nncf_int8(
    model: nn.Module,
    calibration: Sequence[torch.Tensor],
    *,
    keep_classifier_fp32: bool = False,
) -> Any:
    """NNCF post-training int8 quantisation of the converted model (an ``openvino.Model``).

    NNCF's defaults (symmetric "performance" preset, fast bias correction) are kept: this
    is the int8 a user gets from the documented recipe, compared with atrous's int8
    (``atrous.infer.quantize.quantize_int8``) on the same calibration images.

    Args:
        model: the fp32 PyTorch model.
        calibration: normalised ``NxCxHxW`` batches that set the activation ranges (the
            first is also the conversion example). Measure agreement on other images.
        keep_classifier_fp32: leave the last convolution in fp32, as atrous's int8 does
            by default (NNCF's default quantises it).
    """
    import nncf

    if not calibration:
        raise ValueError("quantize_nncf_int8 needs at least one calibration batch")
    converted = convert_to_openvino(model, calibration[0])
    ignored = (
        nncf.IgnoredScope(names=[_last_convolution_name(converted)])
        if keep_classifier_fp32
        else None
    )
    dataset = nncf.Dataset([x.detach().cpu().float().numpy() for x in calibration])
    options: dict[str, Any] = {"subset_size": len(calibration)}
    if ignored is not None:
        options["ignored_scope"] = ignored
    return nncf.quantize(converted, dataset, **options)


class OpenVinoModel:
    """An ``openvino.Model`` run on the CPU behind the ``model(x) -> logits`` call that
    ``atrous.infer.Predictor`` and ``atrous bench`` expect.

    Args:
        ov_model: a converted (and possibly NNCF-quantised) model.
        threads: OpenVINO's inference threads (its default: every core it sees).
        precision: ``INFERENCE_PRECISION_HINT`` for the layers that are not int8:
            ``"f32"`` (default) or ``"bf16"``.
    """

    def __init__(
        self, ov_model: Any, *, threads: int | None = None, precision: str = "f32"
    ) -> None:
        import openvino as ov

        if precision not in ("f32", "bf16"):
            raise ValueError(f"precision must be 'f32' or 'bf16', got {precision!r}")
        self.core = ov.Core()
        self.model = ov_model
        self.config: dict[str, str] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
        }
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            self.config["INFERENCE_NUM_THREADS"] = str(threads)
        self._compiled: dict[tuple[int, ...], Any] = {}

    def compiled(self, shape: Sequence[int]) -> Any:
        """The model compiled for one input shape (compiled on first use)."""
        key = tuple(int(d) for d in shape)
        if key not in self._compiled:
            fixed = self.model.clone()
            fixed.reshape(list(key))
            self._compiled[key] = self.core.compile_model(fixed, "CPU", self.config)
        return self._compiled[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().cpu().float().contiguous().numpy()
        result = self.compiled(array.shape)(array)
        return torch.from_numpy(result[0].copy())
