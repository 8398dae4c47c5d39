"""atrous's own int8: PyTorch 2 export quantisation, compiled by Inductor to oneDNN's
int8 kernels (VNNI, and AMX where the CPU has it).

The route: fold BatchNorm, ``torch.export`` the model, annotate it with the x86 Inductor
quantizer (static activations with histogram ranges, per-channel symmetric weights),
calibrate on real images, convert, and ``torch.compile`` with frozen weights, which
fuses each dequantise -> convolution -> (add) -> activation -> quantise chain into one
``qconv`` call. The quantisation tools live in ``torchao`` (the ``int8`` extra).

Three things decide the speed, each found by profiling the compiled graph op by op
against OpenVINO's int8 on the shipped ``camvid`` model (BENCHMARKS.md, "int8"):

* **Every convolution in int8.** The quantizer finds convolutions by their module type
  and missed subclasses of ``nn.Conv2d`` (EfficientNet-Lite's TensorFlow-"same"
  convolutions), so the stride-2 depthwise layers ran in fp32 between a dequantise and
  a quantise. Their module type is relabelled as ``nn.Conv2d`` before annotation.
* **The stem outside the int8 graph.** The first layers read a 3-channel image; in
  Inductor's channels-last code a 3-channel map is processed with 16-lane vectors masked
  to 3 lanes (3.8 ms of 22 ms at 360x480). The modules a backbone names in
  ``stem_modules`` run in eager fp32, channels-last, and the int8 graph starts from
  their 32 or 64 channels.
* **The logits' upsampling outside it too.** The final bilinear resize to the input size
  (11 channels at 360x480) runs as ATen's channels-last kernel.

The activation ranges are the only thing calibration produces; ``ranges()`` returns them
(the observers' state, tensors only) so they can be saved as safetensors and a model is
rebuilt later without the calibration images (``atrous quantize`` does this).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from atrous.infer.fast import fold_batchnorm
from atrous.infer.logits import model_logits
from atrous.infer.packages import require_packages

LOGGER = logging.getLogger(__name__)

__all__ = ["Int8Model", "RangesMismatchError", "split_stem"]

# The observers' state in a prepared graph: their names hold this.
_OBSERVER = "activation_post_process"


class RangesMismatchError(ValueError):
    """Saved activation ranges do not fit the graph (another model, or a graph that
    differs at this input size); calibrate again."""


class _Body(nn.Module):
    """Backbone (without its stem) and head: low-resolution logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model = self.model
        if not hasattr(model, "backbone") or not hasattr(model, "classifier"):
            return model_logits(model(x))
        features = model.backbone(x)
        return model.classifier(*(features[name] for name in model.head_inputs))


def split_stem(model: nn.Module) -> tuple[nn.Module | None, nn.Module]:
    """``(stem, rest)``: the backbone's ``stem_modules`` as one module and a copy of the
    model without them, so that ``rest(stem(x))`` equals ``model(x)``; ``(None, model)``
    when the model has no such backbone."""
    backbone = getattr(model, "backbone", None)
    names = tuple(getattr(backbone, "stem_modules", ()))
    if not names:
        return None, model
    stem = nn.Sequential(*(copy.deepcopy(getattr(backbone, name)) for name in names))
    rest = copy.deepcopy(model)
    for name in names:
        setattr(rest.backbone, name, nn.Identity())
    return stem.eval(), rest.eval()


def _relabel_conv_subclasses(graph_module: torch.fx.GraphModule, root: nn.Module) -> int:
    """Make the quantizer's module patterns match this graph; returns how many nodes
    were relabelled.

    The quantizer groups nodes by the module they came from (``nn_module_stack``):

    * nodes of subclasses of ``nn.Conv2d`` are marked ``nn.Conv2d``, so its convolution
      patterns see them;
    * each call of a module called more than once (ResNet's blocks call one ``ReLU``
      twice) gets a group of its own, where one group would have two outputs, which the
      quantizer refuses.
    """
    count = 0
    calls: dict[str, list[torch.fx.Node]] = {}
    for node in graph_module.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if node.op != "call_function" or not stack:
            continue
        key = next(reversed(stack))
        path = stack[key][0]
        try:
            module = root.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(module, nn.Conv2d) and type(module) is not nn.Conv2d:
            stack[key] = (path, nn.Conv2d)
            count += 1
        if not any(module.children()):
            calls.setdefault(path, []).append(node)
    for path, nodes in calls.items():
        if len(nodes) > 1 and len({node.target for node in nodes}) == 1:
            for index, node in enumerate(nodes):  # one node per call of a leaf module
                stack = node.meta["nn_module_stack"]
                key = next(reversed(stack))
                stack[key] = (f"{path}@{index}", stack[key][1])
                count += 1
    return count


def _prepare(body: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """The exported body with observers inserted by the x86 Inductor quantizer."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    with torch.no_grad():
        exported = torch.export.export(body, (example,)).module()
    _relabel_conv_subclasses(exported, body)
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    return prepare_pt2e(exported, quantizer)


def _observer_state(prepared: nn.Module) -> dict[str, torch.Tensor]:
    return {
        key: value.detach().clone()
        for key, value in prepared.state_dict().items()
        if _OBSERVER in key
    }


class Int8Model:
    """The model in int8, called like the model: ``NxCxHxW`` normalised input -> logits
    at the input size (float32, ``NxKxHxW``).

    Each input shape is exported, quantised with the calibrated ranges and compiled once
    (about 10 s for ``camvid``), then reused.

    Args:
        model: the fp32 segmentation model.
        calibration: normalised images (``1xCxHxW`` or batches) that set the activation
            ranges; draw them from the data the model will see, not from the images
            agreement is measured on.
        ranges: saved ranges (``ranges()`` of an earlier ``Int8Model`` of the same
            weights) instead of ``calibration``.

    Raises:
        MissingPackageError: torchao is not installed (the ``int8`` extra).
        ValueError: neither or both of ``calibration`` and ``ranges``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        calibration: Sequence[torch.Tensor] | None = None,
        ranges: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        require_packages(("torchao",), extra="int8", purpose="atrous int8 (PT2E)")
        if (calibration is None) == (ranges is None):
            raise ValueError("give either calibration images or saved ranges")
        if calibration is not None and len(calibration) == 0:
            raise ValueError("calibration needs at least one image")
        model = model.eval()
        example = calibration[0] if calibration is not None else None
        folded, _ = fold_batchnorm(model, example if example is not None else _probe())
        stem, rest = split_stem(folded)
        self.stem = None if stem is None else stem.to(memory_format=torch.channels_last)
        self.body = _Body(rest).eval()
        self.num_classes = getattr(model, "num_classes", None)
        self._compiled: dict[tuple[int, ...], nn.Module] = {}
        if calibration is not None:
            self._ranges = self._calibrate(calibration)
        else:
            self._ranges = dict(ranges or {})

    def ranges(self) -> dict[str, torch.Tensor]:
        """The calibrated activation (and weight) observer state, tensors only."""
        return dict(self._ranges)

    @torch.no_grad()
    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().contiguous(memory_format=torch.channels_last)
        return x if self.stem is None else self.stem(x)

    @torch.no_grad()
    def _calibrate(self, calibration: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = [self._stem(x) for x in calibration]
        prepared = _prepare(self.body, inputs[0])
        for x in inputs:
            prepared(x)
        return _observer_state(prepared)

    def _build(self, example: torch.Tensor) -> nn.Module:
        """Export, load the ranges, convert and compile for ``example``'s shape."""
        import torch._inductor.config as inductor_config
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        prepared = _prepare(self.body, example)
        expected = set(_observer_state(prepared))
        if expected != set(self._ranges):
            raise RangesMismatchError(
                f"the saved ranges hold {len(self._ranges)} observer tensors, the graph at "
                f"input shape {tuple(example.shape)} has {len(expected)}; "
                "calibrate again for this model"
            )
        prepared.load_state_dict(self._ranges, strict=False)
        compiled = torch.compile(convert_pt2e(prepared), dynamic=False)
        # Compiled on this first call: frozen weights (the int8 fusions need constants) and
        # a C++ wrapper instead of a Python one between the kernels (16.5 vs 18.0 ms for
        # camvid at 360x480, batch 1; the same at batch 4).
        with inductor_config.patch(freezing=True, cpp_wrapper=True):
            compiled(example)
        return compiled

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        features = self._stem(x)
        key = tuple(features.shape)
        if key not in self._compiled:
            self._compiled[key] = self._build(features)
        logits = self._compiled[key](features)
        logits = logits.contiguous(memory_format=torch.channels_last)
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits.float()  # channels-last: argmax over classes reads it fastest


def _probe() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
