"""Export to ONNX and TorchScript, and the check that the exported model still agrees.

ONNX uses the TorchScript-based exporter (``dynamo=False``) by default. Measured here
(torch 2.14, a DeepLab-shaped model): both exporters produce a graph with dynamic batch,
height and width whose ORT output matches PyTorch to ~1e-6, but the dynamo exporter takes
~10x longer (15 s vs 1.2 s on the toy model), builds opset 18 and then fails to
down-convert to 17 (it warns and keeps 18), while the TorchScript exporter emits exactly
the requested opset and turns ``F.interpolate(size=x.shape[-2:])`` and the ASPP pooling
branch into Shape/Slice/Resize and GlobalAveragePool nodes that ORT runs at any size.
``dynamo=True`` remains available.

Every export is checked at two input sizes: the example size and a second, different one,
so a size frozen into the graph (a traced Python ``if`` on shapes, a constant resize
target) shows up as a mismatch instead of a silently wrong model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from atrous.infer.logits import LogitsOnly, model_logits

LOGGER = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-4


class ExportMismatchError(RuntimeError):
    """The exported model's output differs from PyTorch's by more than the tolerance."""


def _example(example: torch.Tensor | None, size: Sequence[int] = (1, 3, 256, 320)) -> torch.Tensor:
    if example is not None:
        return example
    generator = torch.Generator().manual_seed(0)
    return torch.randn(*size, generator=generator)


def _second_example(example: torch.Tensor) -> torch.Tensor:
    """A different batch and spatial size: catches shapes frozen into the exported graph."""
    batch, channels, height, width = example.shape
    generator = torch.Generator().manual_seed(1)
    return torch.randn(
        batch + 1,
        channels,
        height + 32 + 8,
        width - 32 + 8 if width > 64 else width + 24,
        generator=generator,
    )


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    opset: int = 17,
    example: torch.Tensor | None = None,
    dynamo: bool = False,
) -> Path:
    """Write an ONNX graph with dynamic batch, height and width (input ``input``, output
    ``logits``). Opset must be >= 17 (its Resize and LayerNormalization semantics)."""
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = LogitsOnly(model).eval()
    x = _example(example)
    if dynamo:
        dim = torch.export.Dim
        shapes = {"x": {0: dim("batch", min=1, max=256), 2: dim("height"), 3: dim("width")}}
        dynamic: dict[str, Any] = {"dynamic_shapes": shapes}
    else:
        axes = {0: "batch", 2: "height", 3: "width"}
        dynamic = {"dynamic_axes": {"input": axes, "logits": axes}}
    with torch.no_grad():
        torch.onnx.export(
            wrapped,
            (x,),
            str(path),
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamo=dynamo,
            **dynamic,
        )
    return path


def export_torchscript(
    model: nn.Module,
    path: str | Path,
    *,
    example: torch.Tensor | None = None,
    method: Literal["trace", "script"] = "trace",
) -> Path:
    """Write a TorchScript archive. Tracing works for any model whose control flow does
    not depend on the input's values (all the zoo's); ``script`` keeps Python control
    flow but needs scriptable code."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = LogitsOnly(model).eval()
    with torch.no_grad():
        if method == "trace":
            scripted = torch.jit.trace(wrapped, _example(example), check_trace=False)
        elif method == "script":
            scripted = torch.jit.script(wrapped)
        else:
            raise ValueError(f"method must be 'trace' or 'script', got {method!r}")
    scripted.save(str(path))
    return path


class OnnxRuntimeModel:
    """An ONNX file run by ONNX Runtime behind the ``model(x) -> logits`` call that
    ``atrous.infer.Predictor`` expects."""

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX file at {self.path}")
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().cpu().float().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


def load_exported(path: str | Path) -> OnnxRuntimeModel | torch.jit.ScriptModule:
    """Open an exported model by its suffix: ``.onnx`` (ONNX Runtime) or TorchScript."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {path}")
    if path.suffix.lower() == ".onnx":
        return OnnxRuntimeModel(path)
    return torch.jit.load(str(path), map_location="cpu").eval()


def check_export(
    model: nn.Module,
    path: str | Path,
    *,
    example: torch.Tensor | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> float:
    """Largest absolute logit difference between the exported model and PyTorch, over the
    example and a second input of another size.

    Raises:
        ExportMismatchError: when that difference exceeds ``tolerance``.
    """
    exported = load_exported(path)
    reference = LogitsOnly(model).eval()
    first = _example(example)
    worst = 0.0
    for x in (first, _second_example(first)):
        with torch.no_grad():
            expected = reference(x)
            got = model_logits(exported(x))
        if got.shape != expected.shape:
            raise ExportMismatchError(
                f"{path}: output shape {tuple(got.shape)} for input {tuple(x.shape)}, "
                f"PyTorch gives {tuple(expected.shape)}"
            )
        difference = float(np.abs(got.numpy() - expected.numpy()).max())
        LOGGER.debug("%s: input %s max abs diff %.3g", path, tuple(x.shape), difference)
        worst = max(worst, difference)
    if worst > tolerance:
        raise ExportMismatchError(
            f"{path}: exported output differs from PyTorch by {worst:.3g} > tolerance "
            f"{tolerance:.1g}"
        )
    return worst
