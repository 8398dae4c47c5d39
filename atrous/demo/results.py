"""What a demo run is given (``DemoSettings``) and what it produces.

The runner fills these and the report reads them; both import this module, which
imports neither, so the two form no circle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and budget of one demo run.

    Attributes:
        seed: seeds the dataset and every model's training.
        train_images, val_images, image_size: the generated dataset.
        epochs: training epochs of every model; ``None`` = derive from ``minutes``.
        minutes: wall-clock target of the whole demo, used when ``epochs`` is None.
        max_epochs, min_epochs: bounds of the derived epoch count; below 6 epochs
            (150 steps) the stacks are not reliably apart, so a loaded machine runs longer
            rather than showing nothing.
        warmup_steps, timed_steps: how the epoch count is derived: each model runs
            ``warmup_steps`` untimed training steps (the first ones pay for memory
            allocation, oneDNN kernel selection and the CPU clocking up: 2.48 s for
            one step of all four models cold against 1.1 s warm on a 2-core machine),
            then the fastest of ``timed_steps`` steps is taken.
        batch_size, lr: the shared optimiser settings (AdamW, poly decay).
        width: channels of the stacks and of the ASPP head.
        models: keys of ``demo_models`` to run (default all six: three stacks, the
            ASPP model, and a second seed of the undilated and ASPP models).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        erf_samples: random inputs averaged for each ERF.
        sample_count: validation images shown in the prediction figure.
    """

    seed: int = 0
    train_images: int = 400
    val_images: int = 100
    image_size: int = 96
    epochs: int | None = None
    minutes: float = 10.0
    max_epochs: int = 16
    min_epochs: int = 6
    warmup_steps: int = 3
    timed_steps: int = 5
    batch_size: int = 16
    lr: float = 3e-3
    width: int = 32
    models: tuple[str, ...] = (
        "undilated",
        "gridded",
        "hdc",
        "aspp",
        "undilated_seed2",
        "aspp_seed2",
    )
    device: str = "cpu"
    erf_samples: int = 8
    sample_count: int = 4


@dataclass
class ModelResult:
    """Everything the report shows about one model."""

    key: str
    label: str
    name: str
    options: dict[str, Any]
    parameters: int
    miou: float
    boundary_f1: float
    pixel_acc: float
    per_class_iou: dict[str, float]
    hole_fraction: float
    is_grid: bool
    rf_size: tuple[int, ...]
    erf_radius_50: float
    erf_radius_95: float
    train_seconds: float
    fragmentation: float = math.nan
    history: list[dict[str, Any]] = field(default_factory=list)
    coverage_png: str = ""
    erf_png: str = ""


@dataclass
class DemoResult:
    """What ``run_demo`` wrote; ``rows`` in the order the models ran."""

    out_dir: Path
    settings: DemoSettings
    epochs: int
    rows: list[ModelResult]
    class_names: list[str]
    seconds: float
    report_html: Path | None = None
    report_md: Path | None = None
    figures: dict[str, str] = field(default_factory=dict)

    def row(self, key: str) -> ModelResult:
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(f"no model {key!r} in this demo; ran {[r.key for r in self.rows]}")
