"""The logits tensor of a model's output, whatever shape the output comes in.

The lowest module of ``atrous.infer``: the predictor, the fast CPU path, export and
the benchmarks all need it, and it needs none of them, so the imports inside the
package point one way (``predictor -> fast -> logits``, ``export -> logits``).
"""

from __future__ import annotations

import torch
from torch import nn


def model_logits(output: object) -> torch.Tensor:
    """The logits tensor of a model's output: a tensor, torchvision's ``{"out": ...}`` dict,
    or the first element of a tuple/list (auxiliary outputs are ignored at inference)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and "out" in output:
        return output["out"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


class LogitsOnly(nn.Module):
    """Wraps a model so that ``forward`` returns the logits tensor only (exporters and
    tracers need a plain tensor, torchvision models return ``{"out": ...}``)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return model_logits(self.model(x))
