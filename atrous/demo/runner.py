"""Run the demo: generate the context dataset, train four models from disk, analyse them.

Every model gets the same training budget (epochs, batch size, optimiser, schedule,
seed) through ``atrous.engine.train``; the three plain stacks also have the same
parameter count, so they differ only in their dilation rates.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from atrous.demo.results import DemoResult, DemoSettings, ModelResult

logger = logging.getLogger(__name__)


class DemoInterrupted(RuntimeError):
    """Training was stopped (SIGTERM); the demo stops too instead of comparing a half-trained
    model with fully trained ones."""


@dataclass(frozen=True)
class DemoModel:
    """One contestant: a label for tables, a registry name and builder options.

    Attributes:
        key: short file-safe name (``hdc``, ``gridded``...).
        label: what the table and pictures call it.
        name: ``build_model`` name.
        options: builder keyword arguments (without ``num_classes``).
        role: one sentence on why it is in the demo.
        seed_offset: trains with ``settings.seed + seed_offset``: a second seed of a
            model, so the report knows how far two seeds of one model can differ.
    """

    key: str
    label: str
    name: str
    options: dict[str, Any]
    role: str
    seed_offset: int = 0


ASPP_RATES = (4, 8, 12)
"""ASPP rates of the demo's fourth model, on the stride-2 map of a 96-pixel image (8, 16
and 24 px in the image: up to the largest disc radius)."""


def demo_models(width: int = 32) -> tuple[DemoModel, ...]:
    """The models: no dilation, equal rates (gridding), HDC, and the undilated stack with
    an ASPP head, plus a second seed of the undilated stack with and without ASPP.

    The three stacks share their parameter count and differ only in rates. The ASPP pair
    shares its body (no dilation): the only difference is the head, so what ASPP's
    parallel dilated branches add is measured against the spread between that pair's seeds.
    """
    flat = {"rates": [1, 1, 1, 1], "width": width}
    aspp = {**flat, "aspp_rates": list(ASPP_RATES)}
    rates = ",".join(map(str, ASPP_RATES))
    return (
        DemoModel(
            "undilated", "no dilation (1,1,1,1)", "dilated_net", flat,
            "small receptive field: the baseline",
        ),
        DemoModel(
            "gridded", "gridded (4,4,4,4)", "dilated_net", {"rates": [4, 4, 4, 4], "width": width},
            "large receptive field with holes",
        ),
        DemoModel(
            "hdc", "HDC (1,2,5,9)", "dilated_net", {"rates": [1, 2, 5, 9], "width": width},
            "large receptive field without holes (Wang et al., 2018)",
        ),
        DemoModel(
            "aspp", f"no dilation + ASPP ({rates})", "dilated_net", aspp,
            "the undilated stack with an ASPP head (Chen et al., 2017)",
        ),
        DemoModel(
            "undilated_seed2", "no dilation (1,1,1,1), 2nd seed", "dilated_net", flat,
            "the baseline again with another seed: the spread of a seed", seed_offset=1,
        ),
        DemoModel(
            "aspp_seed2", f"no dilation + ASPP ({rates}), 2nd seed", "dilated_net", aspp,
            "the ASPP model again with another seed", seed_offset=1,
        ),
    )  # fmt: skip


def _engine_config(
    model: DemoModel, settings: DemoSettings, data_root: Path, epochs: int, device: str
) -> Any:
    from atrous.engine.config import config_from_dict

    size = settings.image_size
    return config_from_dict(
        {
            "model": {"name": model.name, "options": dict(model.options)},
            "data": {
                "format": "folder",
                "root": str(data_root),
                "crop_size": [size, size],
                # No rescaling: the disc sizes are what the task is about.
                "scale_range": [1.0, 1.0],
                "hflip": True,
                "batch_size": settings.batch_size,
                # A GPU outruns one loading process; on CPU the cores are better spent
                # on the model.
                "num_workers": 4 if device.startswith("cuda") else 0,
            },
            "optim": {"name": "adamw", "lr": settings.lr, "weight_decay": 1e-4},
            "schedule": {"epochs": epochs, "warmup_iters": 20},
            "train": {
                "seed": settings.seed + model.seed_offset,
                "device": device,
                "keep_checkpoints": 1,
            },
            "eval": {"every": 1, "boundary_tolerance": 2},
        }
    )


Clock = Callable[[], float]


def time_step(
    step: Callable[[], object],
    *,
    warmup: int,
    repeats: int,
    clock: Clock = time.perf_counter,
) -> float:
    """Fastest of ``repeats`` timed calls of ``step``, after ``warmup`` untimed calls.

    The clock is read only around the timed calls, so nothing the warm-up costs can
    reach the result. The minimum, not the mean or median: on a shared machine a step
    is only ever slowed down by other processes, and training runs many steps whose
    average is near the fast ones, so slow outliers made the estimate pessimistic (a
    demo under load chose the fewest epochs while twice as many would have fitted).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        started = clock()
        step()
        times.append(clock() - started)
    return min(times)


def _step_seconds(
    models: Sequence[DemoModel], settings: DemoSettings, device: str, clock: Clock
) -> float:
    """Seconds one warm training step of every model takes together."""
    import torch
    import torch.nn.functional as F

    from atrous.data.synthetic import CLASS_NAMES
    from atrous.models import build_model

    size, total = settings.image_size, 0.0
    on_gpu = torch.device(device).type == "cuda"
    x = torch.randn(settings.batch_size, 3, size, size, device=device)
    y = torch.randint(0, len(CLASS_NAMES), (settings.batch_size, size, size), device=device)
    for spec in models:
        model = build_model(spec.name, num_classes=len(CLASS_NAMES), **spec.options)
        model = model.to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(
            model: torch.nn.Module = model, optimizer: torch.optim.Optimizer = optimizer
        ) -> None:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if on_gpu:
                torch.cuda.synchronize()

        total += time_step(
            step, warmup=settings.warmup_steps, repeats=settings.timed_steps, clock=clock
        )
    return total


def _batch_load_seconds(data_root: Path, settings: DemoSettings, clock: Clock) -> float:
    """Seconds to read and augment one training batch from disk (the loader's share)."""
    from atrous.data import build_dataset, train_transforms

    size = settings.image_size
    dataset = build_dataset(
        "folder",
        data_root,
        split="train",
        transform=train_transforms(crop_size=(size, size), scale_range=(1.0, 1.0)),
    )
    count = min(settings.batch_size, len(dataset))

    def read_batch() -> None:
        for index in range(count):
            dataset[index]

    # Warm: from the second epoch on the files come from the page cache.
    seconds = time_step(read_batch, warmup=1, repeats=settings.timed_steps, clock=clock)
    return seconds * settings.batch_size / max(count, 1)


def choose_epochs(
    models: Sequence[DemoModel],
    settings: DemoSettings,
    device: str,
    data_root: Path,
    *,
    clock: Clock = time.perf_counter,
) -> tuple[int, str]:
    """Epoch count that fits the time target, and a sentence saying how it was chosen.

    About 70% of ``minutes`` goes to training; the rest is evaluation, analysis and the
    report. Every model gets the same count, so the budget stays equal. Steps are timed
    warm (see ``time_step``); ``clock`` is there for tests, which must not depend on
    the speed of the machine they run on.
    """
    if settings.epochs is not None:
        return settings.epochs, f"{settings.epochs} epochs (set explicitly)"
    steps_per_epoch = settings.train_images // settings.batch_size
    per_step = _step_seconds(models, settings, device, clock)
    per_load = _batch_load_seconds(data_root, settings, clock) * len(models)
    # Per-epoch validation adds about 15% on top of the steps and the loading.
    per_epoch = 1.15 * (per_step + per_load) * steps_per_epoch
    fit = math.floor(0.7 * settings.minutes * 60 / max(per_epoch, 1e-9))
    epochs = max(settings.min_epochs, min(settings.max_epochs, fit))
    return epochs, (
        f"{epochs} epochs: one step of all {len(models)} models took {per_step:.2f} s here "
        f"(fastest of {settings.timed_steps} after {settings.warmup_steps} warm-up steps) "
        f"plus {per_load:.2f} s of data loading, so about {fit} epochs fit 70% of "
        f"{settings.minutes:g} minutes (bounds {settings.min_epochs}..{settings.max_epochs})"
    )


_ANALYSIS_FIELDS = ("hole_fraction", "is_grid", "rf_size", "erf_radius_50", "erf_radius_95")


def _analyse(model: Any, size: int, samples: int, out_dir: Path, label: str) -> dict[str, Any]:
    from atrous.analysis import coverage_map, effective_receptive_field, plot_coverage, plot_erf

    model = model.cpu().eval()
    # The image-pooling branch of ASPP reaches every pixel; dropping it shows the holes of
    # the dilated paths, which is what gridding is about.
    coverage = coverage_map(model, (size, size), global_pooling="drop")
    erf = effective_receptive_field(model, (size, size), samples=samples)
    coverage_png = plot_coverage(coverage, out_dir / "coverage.png", title=label)
    erf_png = plot_erf(erf, out_dir / "erf.png", title=label)
    return {
        "hole_fraction": float(coverage.hole_fraction),
        "is_grid": bool(coverage.is_grid),
        "rf_size": tuple(int(s) for s in coverage.box_shape),
        "erf_radius_50": erf.radius(0.5),
        "erf_radius_95": erf.radius(0.95),
        "coverage_png": coverage_png,
        "erf_png": erf_png,
        "coverage": coverage,
        "erf": erf,
    }


def _demo_device_and_models(settings: DemoSettings) -> tuple[Any, list[DemoModel]]:
    """The resolved device and the models of ``settings.models``, checked before any work.

    Raises:
        ValueError: the device is not cpu/cuda, or a model key is unknown.
    """
    from atrous.device import resolve_device

    resolved = resolve_device(settings.device)
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or auto, got {settings.device!r}")
    catalogue = {m.key: m for m in demo_models(settings.width)}
    unknown = [k for k in settings.models if k not in catalogue]
    if unknown:
        raise ValueError(f"unknown demo model(s) {unknown}; choose from {list(catalogue)}")
    return resolved, [catalogue[k] for k in settings.models]


def _generate_data(data_root: Path, settings: DemoSettings) -> None:
    """Write the synthetic context dataset the models train and validate on."""
    from atrous.data.synthetic import generate

    logger.info(
        "generating the context dataset (%d train + %d val images, %dpx) in %s",
        settings.train_images,
        settings.val_images,
        settings.image_size,
        data_root,
    )
    generate(
        data_root,
        seed=settings.seed,
        train=settings.train_images,
        val=settings.val_images,
        size=settings.image_size,
    )


def _train_and_analyse(
    spec: DemoModel,
    settings: DemoSettings,
    *,
    out_dir: Path,
    data_root: Path,
    epochs: int,
    device: str,
    val_set: Any,
    class_names: list[str],
    progress: bool,
) -> tuple[ModelResult, Any, dict[str, Any]]:
    """Train one model with the shared budget, evaluate it on ``val_set`` and analyse it.

    Returns:
        Its table row, the trained model, and the ``_analyse`` result (figures, maps).

    Raises:
        DemoInterrupted: training stopped before the budget was spent.
    """
    from atrous.engine import evaluate, train

    model_dir = out_dir / "models" / spec.key
    config = _engine_config(spec, settings, data_root, epochs, device)
    tick = time.perf_counter()
    result = train(config, model_dir, progress=progress)
    seconds = time.perf_counter() - tick
    if result.status != "completed":
        raise DemoInterrupted(
            f"training of {spec.label} was interrupted ({result.status}); its checkpoint "
            f"is in {model_dir}. The demo stopped: models trained for less than the "
            "shared budget would not be comparable."
        )
    model = result.model
    assert model is not None
    final = evaluate(
        model,
        val_set,
        num_classes=len(class_names),
        class_names=class_names,
        boundary_tolerance=config.eval.boundary_tolerance,
    )
    analysis = _analyse(model, settings.image_size, settings.erf_samples, model_dir, spec.label)
    row = ModelResult(
        key=spec.key,
        label=spec.label,
        name=spec.name,
        options=dict(spec.options),
        parameters=sum(p.numel() for p in model.parameters()),
        miou=float(final["miou"]),
        boundary_f1=float(final["boundary_f1"]),
        pixel_acc=float(final["pixel_acc"]),
        per_class_iou={r["name"]: float(r["iou"]) for r in final.per_class},
        train_seconds=seconds,
        history=list(result.history),
        coverage_png=str(Path(analysis["coverage_png"]).relative_to(out_dir)),
        erf_png=str(Path(analysis["erf_png"]).relative_to(out_dir)),
        **{k: analysis[k] for k in _ANALYSIS_FIELDS},
    )
    logger.info(
        "%s: val mIoU %.3f, boundary F1 %.3f, holes %.1f%%, ERF r50 %.1f px (%.0f s)",
        spec.label,
        row.miou,
        row.boundary_f1,
        100 * row.hole_fraction,
        row.erf_radius_50,
        seconds,
    )
    return row, model, analysis


def run_demo(
    out_dir: str | Path,
    settings: DemoSettings | None = None,
    *,
    progress: bool = True,
    report: bool = True,
) -> DemoResult:
    """Generate data, train, evaluate and analyse every model, then write the report.

    Args:
        out_dir: run folder: ``data/``, ``models/<key>/`` (engine run folders),
            ``results.json``, the figures and ``report.html``/``report.md``.
        settings: sizes and budget.
        progress: progress bars while training.
        report: write the report and figures (tests may skip the figures).
    """
    settings = settings if settings is not None else DemoSettings()
    import torch

    from atrous.data import build_dataset, eval_transforms

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved, models = _demo_device_and_models(settings)
    device = str(resolved)

    data_root = out_dir / "data"
    _generate_data(data_root, settings)
    val_set = build_dataset("folder", data_root, split="val", transform=eval_transforms())
    class_names = list(val_set.class_names)

    epochs, budget_note = choose_epochs(models, settings, device, data_root)
    logger.info("training budget: %s", budget_note)

    rows: list[ModelResult] = []
    trained: dict[str, Any] = {}
    for index, spec in enumerate(models, 1):
        logger.info("[%d/%d] training %s", index, len(models), spec.label)
        row, model, analysis = _train_and_analyse(
            spec,
            settings,
            out_dir=out_dir,
            data_root=data_root,
            epochs=epochs,
            device=device,
            val_set=val_set,
            class_names=class_names,
            progress=progress,
        )
        rows.append(row)
        trained[spec.key] = (model, analysis["coverage"], analysis["erf"])
        del model
        if resolved.type == "cuda":
            torch.cuda.empty_cache()

    demo = DemoResult(
        out_dir=out_dir,
        settings=settings,
        epochs=epochs,
        rows=rows,
        class_names=class_names,
        seconds=0.0,
    )
    if report:
        from atrous.demo.report import write_figures, write_report

        demo.figures = write_figures(demo, trained, val_set)
        demo.seconds = time.perf_counter() - started
        demo.report_md, demo.report_html = write_report(demo, budget_note)
    demo.seconds = time.perf_counter() - started
    (out_dir / "results.json").write_text(json.dumps(results_dict(demo), indent=2) + "\n")
    return demo


def results_dict(demo: DemoResult) -> dict[str, Any]:
    """JSON-ready summary of a demo run."""
    return {
        "settings": asdict(demo.settings),
        "epochs": demo.epochs,
        "seconds": demo.seconds,
        "class_names": demo.class_names,
        "models": [
            {k: v for k, v in asdict(row).items() if k != "history"} | {"history": row.history}
            for row in demo.rows
        ],
    }
