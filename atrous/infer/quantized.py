"""A model's int8 quantisation, kept with its accuracy record.

``atrous quantize`` calibrates a model, measures what int8 costs in accuracy and, when
the loss is within the guard, saves two files named by the weights' digest:

* ``torch-<digest>.safetensors``: the calibrated activation ranges of atrous's int8
  (``atrous.infer.int8.Int8Model``), tensors only, so the int8 model is rebuilt from
  the fp32 weights without the calibration images;
* ``torch-<digest>.json``: the record: calibration set, agreement with fp32 (pixel
  agreement, and mIoU on a labelled split), the latencies measured on this CPU, and the
  SHA-256 of the ranges file (a file that does not match is never used).

They are looked for in the model's folder (``int8/``, where a shipped model carries
them) and then in the cache folder for the model (``atrous.infer.cache.artifact_folder``,
where ``atrous quantize`` writes). ``--precision auto`` uses int8 only for a model that
has such a record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atrous.infer.cache import artifact_folder, read_record, verify_record, weights_digest

LOGGER = logging.getLogger(__name__)

__all__ = ["Quantized", "find_quantized", "guard", "median_ms", "save_quantized", "summarize"]

QUANTIZED_KIND = "int8"
# A quantisation that loses more than this is refused unless forced.
MAX_MIOU_DROP = 0.005  # 0.5 mIoU points
MIN_PIXEL_AGREEMENT = 0.995  # without labels: 0.5 % of pixels may change


@dataclass
class Quantized:
    """Saved int8 ranges of a model and their record (see the module docstring)."""

    ranges: dict[str, torch.Tensor]
    record: dict[str, Any]
    path: Path

    def summary(self) -> str:
        """One line: agreement and mIoU change, and where they were measured."""
        return summarize(self.record)


def summarize(record: dict[str, Any]) -> str:
    """``"int8 agreement 99.62 % on ...; mIoU 49.44 -> 49.30 (-0.14)"``."""
    accuracy = record.get("accuracy", {})
    parts = [
        f"int8 pixel agreement {100 * accuracy.get('pixel_agreement', float('nan')):.2f} % "
        f"on {accuracy.get('images', '?')} images of {accuracy.get('held_out', '?')}"
    ]
    if accuracy.get("miou_fp32") is not None:
        fp32, int8 = accuracy["miou_fp32"], accuracy["miou_int8"]
        parts.append(f"mIoU {100 * fp32:.2f} -> {100 * int8:.2f} ({100 * (int8 - fp32):+.2f})")
    return "; ".join(parts)


def guard(accuracy: dict[str, Any]) -> str | None:
    """Why a quantisation must be refused (too much accuracy lost), or None."""
    if accuracy.get("miou_fp32") is not None:
        drop = accuracy["miou_fp32"] - accuracy["miou_int8"]
        if drop > MAX_MIOU_DROP:
            return f"int8 loses {100 * drop:.2f} mIoU points (allowed {100 * MAX_MIOU_DROP:.1f})"
        return None
    agreement = accuracy["pixel_agreement"]
    if agreement < MIN_PIXEL_AGREEMENT:
        return (
            f"int8 agrees with fp32 on {100 * agreement:.2f} % of pixels "
            f"(required {100 * MIN_PIXEL_AGREEMENT:.1f} %)"
        )
    return None


def _places(model: nn.Module) -> list[Path]:
    """Where a model's int8 files may be: its own folder's ``int8/``, then the cache."""
    from atrous.models.pretrained import artifact_home

    places = []
    source = getattr(model, "source_dir", None)
    if source is not None:
        places.append(Path(source) / QUANTIZED_KIND)
    places.append(artifact_folder(artifact_home(model), QUANTIZED_KIND))
    return places


def file_stem(model: nn.Module) -> str:
    return f"torch-{weights_digest(model)}"


def find_quantized(model: nn.Module) -> Quantized | None:
    """The saved int8 ranges of ``model``'s weights with their record, or None when there
    are none (or none that verify: a damaged file is reported and ignored)."""
    from safetensors.torch import load_file

    stem = file_stem(model)
    for folder in _places(model):
        record_path = folder / f"{stem}.json"
        ranges_path = folder / f"{stem}.safetensors"
        if not record_path.exists():
            continue
        if not verify_record(record_path, stem, [ranges_path]):
            LOGGER.warning("ignored %s: it does not match its ranges file", record_path)
            continue
        record = read_record(record_path) or {}
        return Quantized(load_file(str(ranges_path)), record.get("details", {}), record_path)
    return None


def save_quantized(
    model: nn.Module, ranges: dict[str, torch.Tensor], details: dict[str, Any], folder: Path | None
) -> Path:
    """Write the ranges and the record for ``model``'s weights; returns the record path.

    Args:
        folder: where to write; default the model's cache folder.
    """
    from safetensors.torch import save_file

    from atrous.files import atomic_write
    from atrous.infer.cache import write_record
    from atrous.models.pretrained import artifact_home

    if folder is None:
        folder = artifact_folder(artifact_home(model), QUANTIZED_KIND)
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    stem = file_stem(model)
    ranges_path = target / f"{stem}.safetensors"
    tensors = {key: value.contiguous() for key, value in ranges.items()}
    atomic_write(ranges_path, lambda temporary: save_file(tensors, str(temporary)), fsync=False)
    record_path = target / f"{stem}.json"
    write_record(record_path, stem, [ranges_path], details)
    return record_path


def median_ms(runner: Callable[[torch.Tensor], object], x: torch.Tensor, runs: int = 10) -> float:
    """Median latency of ``runner(x)`` in milliseconds after two warm-up calls (which
    compile where the runner compiles)."""
    import statistics
    import time

    times = []
    with torch.inference_mode():
        runner(x)
        runner(x)
        for _ in range(runs):
            start = time.perf_counter()
            runner(x)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)
