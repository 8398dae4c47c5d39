"""Turning a device name from a command line or a config into a ``torch.device``.

Every entry point (training, evaluation, the prior adjustment, the demo) accepts
``"auto"``; resolving it in one place means one rule and one error message. This module
imports only torch, so every layer of the package (ops and analysis included) may use it.
"""

from __future__ import annotations

import torch

AUTO = "auto"


def resolve_device(name: str | torch.device = AUTO) -> torch.device:
    """The device to run on: ``"auto"`` is CUDA when torch sees a GPU, else the CPU.

    An explicit request is checked now, not at the first tensor moved an hour later:
    asking for CUDA on a machine without it, or for a GPU index that does not exist, is
    an error that says what this machine has.

    Args:
        name: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or anything else
            ``torch.device`` parses (``"mps"``...), or a ``torch.device``.

    Raises:
        ValueError: an unparseable name, or a CUDA device this machine does not have.
    """
    if isinstance(name, str) and name.strip().lower() == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ValueError(
            f"device {name!r} is not a device; expected auto, cpu, cuda or cuda:N ({error})"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} asked for CUDA but torch sees no CUDA device here; "
                "use cpu or auto"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"device {name!r} does not exist: torch sees {count} CUDA device(s), "
                f"cuda:0..cuda:{count - 1}"
            )
    return device
