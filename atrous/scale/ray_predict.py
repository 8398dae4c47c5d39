"""Batch prediction on Ray Data: ``atrous predict`` spread over a pool of actors.

Each actor loads the model once and runs the same ``atrous.infer.Predictor`` as the
local ``atrous predict``, so the masks are the same bytes. Every mask is written
atomically (a temporary file renamed into place) the moment its batch is predicted: an
actor that dies (node lost, killed for memory) loses only the batch in flight, which
Ray Data retries on a restarted actor, and running the same command again skips every
mask already on disk (its areas are read back from the PNG for the CSV). A rerun with
other options or another model into the same folder therefore keeps the old masks: use
a new folder for new settings. A write cut short leaves at most a hidden
``.<name>.png.*.tmp`` file, never a partial mask.

Actors receive file paths, not pixels: on a cluster the inputs and the output folder must
be on a filesystem every node sees (NFS, a mounted bucket). The model is named the same
way (a shipped name resolves on every node; a model folder must be shared too).

Python use::

    import ray
    from atrous.scale.ray_predict import PredictOptions, predict_with_ray

    ray.init()  # or ray.init(address="ray://head:10001")
    result = predict_with_ray(files, "masks/", PredictOptions(model="camvid"), actors=4)
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from atrous.infer.io import DEFAULT_MAX_PIXELS, ImageError, load_image, save_png

logger = logging.getLogger(__name__)

# Ray Data dispatches whole blocks; more blocks than this only adds scheduler overhead
# (a million paths still make blocks of a few hundred files, minutes of work each).
MAX_BLOCKS = 4096


@dataclass(frozen=True)
class PredictOptions:
    """How each image is predicted and what is written: the options of ``atrous predict``.

    Attributes:
        model: shipped model name, saved model folder or zoo name (as ``--model``); it
            must resolve on every node.
        mode: ``"whole"`` or ``"slide"``.
        window: sliding-window side in pixels.
        overlap: sliding-window overlap.
        scales: test-time scales.
        flip: average with the mirrored prediction.
        batch_size: images per forward (whole) or windows per forward (slide); in whole
            mode also the files handed to an actor at a time.
        fast: fold BatchNorm and use channels_last (``--fast``, CPU only).
        device: torch device inside the actors.
        max_pixels: refuse larger images (decompression-bomb guard).
        overlay: also write ``<name>_overlay.png``.
        alpha: overlay colour weight.
    """

    model: str
    mode: str = "whole"
    window: int = 512
    overlap: float = 1 / 3
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    batch_size: int = 1
    fast: bool = False
    device: str = "cpu"
    max_pixels: int = DEFAULT_MAX_PIXELS
    overlay: bool = False
    alpha: float = 0.5

    @property
    def files_per_batch(self) -> int:
        """Files loaded and predicted together, as in the local loop."""
        return self.batch_size if self.mode == "whole" else 1


@dataclass
class RayPredictResult:
    """What a run did.

    Attributes:
        predicted: files predicted by this run.
        skipped: files whose mask an earlier run had already written.
        failures: ``"path: reason"`` for every file that could not be read.
        areas: per written mask (by input path): pixel count per class.
        class_names: the names the counts are indexed by.
    """

    predicted: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    areas: dict[str, list[int]] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)


def mask_path(out: Path, stem: str) -> Path:
    """Where a mask goes: ``<out>/<stem>.png``, with the stems of ``atrous predict``
    (``atrous.infer.io.output_stems``: inputs sharing a name get distinct ones)."""
    return out / f"{stem}.png"


def overlay_path(out: Path, stem: str) -> Path:
    return out / f"{stem}_overlay.png"


def class_names_of(model: object) -> list[str]:
    """The model's class names, or ``class_<i>`` for each of its classes (as the local path)."""
    names = getattr(model, "class_names", None)
    if names:
        return list(names)
    known = getattr(model, "num_classes", None) or 21
    return [f"class_{i}" for i in range(known)]


class MaskWriter:
    """The actor's work: predict a batch of files and write their masks (Ray Data UDF).

    Constructed once per actor, so the model is loaded once per actor. Usable without
    Ray too (tests call it on a batch directly).

    Args:
        options: how to predict and what to write.
        out: output folder (created if missing).
        threads: torch intra-op threads for this actor process; the actor is the
            process, so this is where its CPU share is applied.
    """

    def __init__(self, options: PredictOptions, out: str, threads: int | None = None) -> None:
        import torch

        from atrous.constants import voc_palette
        from atrous.infer import Predictor
        from atrous.infer.loading import load_model

        if threads is not None:
            torch.set_num_threads(max(1, int(threads)))
        model = load_model(options.model)
        self.options = options
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.class_names = class_names_of(model)
        self.palette = getattr(model, "palette", None) or voc_palette(256)
        self.predictor = Predictor(
            model,
            device=options.device,
            mode=options.mode,  # type: ignore[arg-type]
            window=options.window,
            overlap=options.overlap,
            scales=options.scales,
            flip=options.flip,
            batch_size=options.batch_size,
            fast=options.fast,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Columns in: ``path``, ``stem`` (output name). Columns out: ``path``, ``status``
        (predicted / skipped / failed), ``detail`` (the error), ``pixels`` (JSON list of
        per-class counts)."""
        rows: list[tuple[str, str, str, str]] = []
        pending: list[tuple[str, str, np.ndarray]] = []
        for path, stem in zip((str(p) for p in batch["path"]), (str(s) for s in batch["stem"])):
            done = self._already_written(stem)
            if done is not None:
                rows.append((path, "skipped", "", json.dumps(done)))
                continue
            try:
                image = load_image(path, max_pixels=self.options.max_pixels)
            except ImageError as error:  # names the file and the reason
                rows.append((path, "failed", str(error), ""))
            else:
                pending.append((path, stem, image))
        step = self.options.files_per_batch
        for start in range(0, len(pending), step):
            chunk = pending[start : start + step]
            masks = self.predictor.predict_batch([image for _, _, image in chunk])
            for (path, stem, image), mask in zip(chunk, masks):
                rows.append((path, "predicted", "", json.dumps(self._write(stem, image, mask))))
        columns = list(zip(*rows)) if rows else [(), (), (), ()]
        return {
            name: np.array(values, dtype=object)
            for name, values in zip(("path", "status", "detail", "pixels"), columns)
        }

    def _write(self, stem: str, image: np.ndarray, mask: np.ndarray) -> list[int]:
        from atrous.infer import class_areas, colorize, overlay

        if self.options.overlay:  # overlay first: a mask on disk means this file is done
            blended = overlay(image, mask, self.palette, self.options.alpha)
            save_png(blended, overlay_path(self.out, stem))
        save_png(colorize(mask, self.palette), mask_path(self.out, stem))
        return [row["pixels"] for row in class_areas(mask, self.class_names)]

    def _already_written(self, stem: str) -> list[int] | None:
        """Per-class counts read back from an existing mask, or None to predict the file."""
        from atrous.infer import class_areas

        target = mask_path(self.out, stem)
        if not target.is_file():
            return None
        if self.options.overlay and not overlay_path(self.out, stem).is_file():
            return None
        try:
            with Image.open(target) as written:
                if written.mode != "P":
                    return None
                labels = np.asarray(written)
            return [row["pixels"] for row in class_areas(labels, self.class_names)]
        except (OSError, ValueError) as error:  # not ours or damaged: predict it again
            logger.warning("predicting %s again: cannot read it back (%s)", target, error)
            return None


def _actor_pool_size(actors: int | None, cpus_per_actor: float) -> int:
    """The actor count: ``actors``, or as many as the cluster's CPUs hold.

    More actors than the cluster has CPUs for is allowed (they wait, or the autoscaler
    adds nodes) but logged, since on a fixed cluster it only adds queueing.

    Raises:
        ValueError: ``actors`` < 1.
    """
    import ray

    if actors is None:
        cpus = ray.cluster_resources().get("CPU", 1.0)
        actors = max(1, int(cpus // max(cpus_per_actor, 1e-9)))
    if actors < 1:
        raise ValueError(f"actors must be >= 1, got {actors}")
    available = ray.cluster_resources().get("CPU", 0.0)
    if actors * cpus_per_actor > available:
        logger.warning(
            "%d actors x %g CPUs exceed the cluster's %g CPUs: actors wait for CPUs "
            "(or for the autoscaler)",
            actors,
            cpus_per_actor,
            available,
        )
    return actors


def _collect(
    predicted: Any, paths: Sequence[str], result: RayPredictResult, *, progress: bool
) -> None:
    """Stream the actors' rows into ``result``: areas, counts, and failures in file order.

    Rows arrive in whatever order the actors finish; failures are reordered to follow
    ``paths`` so the report reads like the local path's.
    """
    from tqdm import tqdm

    failures: dict[str, str] = {}
    with tqdm(total=len(paths), unit="img", disable=not progress or None) as bar:
        for batch in predicted.iter_batches(batch_format="numpy", batch_size=None):
            for path, status, detail, pixels in zip(
                batch["path"], batch["status"], batch["detail"], batch["pixels"]
            ):
                if status == "failed":
                    failures[str(path)] = str(detail)
                    logger.error("skipped %s", detail)
                else:
                    result.areas[str(path)] = json.loads(str(pixels))
                    if status == "skipped":
                        result.skipped += 1
                    else:
                        result.predicted += 1
                bar.update(1)
    result.failures = [failures[p] for p in paths if p in failures]


def predict_with_ray(
    files: Sequence[str | Path],
    out: str | Path,
    options: PredictOptions,
    *,
    actors: int | None = None,
    cpus_per_actor: float = 1.0,
    csv_path: str | Path | None = None,
    progress: bool = True,
) -> RayPredictResult:
    """Predict ``files`` on the current Ray cluster and write masks (and the area CSV).

    Ray is initialised with its defaults if the caller has not (a local instance, or
    the cluster in ``RAY_ADDRESS``).

    Args:
        files: image paths (see ``atrous.infer.expand_inputs`` for folders and globs).
        out: output folder for ``<stem>.png`` masks; existing masks are kept and skipped.
        options: prediction options, as ``atrous predict`` takes them.
        actors: size of the actor pool (default: the cluster's CPUs / ``cpus_per_actor``).
        cpus_per_actor: CPUs reserved per actor; also its torch thread count.
        csv_path: write per-class pixel areas of every readable file here, in the order
            of ``files``, in the same format as ``atrous predict --csv``.
        progress: show a progress bar.

    Raises:
        FileNotFoundError, ValueError: the model cannot be loaded (checked on the
            driver before any actor starts).
    """
    import ray

    from atrous.infer.loading import load_model

    # Validate at the door: a bad --model fails here, not in every actor.
    class_names = class_names_of(load_model(options.model))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        ray.init()
    actors = _actor_pool_size(actors, cpus_per_actor)
    from atrous.infer.io import output_stems

    paths = [str(p) for p in files]
    stems = output_stems([Path(p) for p in paths], companions=("_overlay",))
    result = RayPredictResult(class_names=class_names)
    if not paths:
        return result
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # one bar, ours, as in the local path
    per_batch = options.files_per_batch
    blocks = max(1, min(MAX_BLOCKS, math.ceil(len(paths) / per_batch)))
    dataset = ray.data.from_items(
        [{"path": p, "stem": s} for p, s in zip(paths, stems)], override_num_blocks=blocks
    )
    predicted = dataset.map_batches(
        MaskWriter,
        fn_constructor_kwargs={
            "options": options,
            "out": str(out),
            "threads": max(1, round(cpus_per_actor)),
        },
        batch_size=per_batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
    )
    _collect(predicted, paths, result, progress=progress)
    if csv_path is not None:
        write_area_csv(csv_path, paths, result)
    return result


def write_area_csv(path: str | Path, files: Sequence[str], result: RayPredictResult) -> None:
    """The ``--csv`` table of ``atrous predict``: one row per class per file, files in input
    order; written to a temporary file first so a crash leaves no half table."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    try:
        with os.fdopen(descriptor, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(
                handle, fieldnames=["file", "index", "name", "pixels", "fraction"]
            )
            writer.writeheader()
            for file in files:
                counts = result.areas.get(file)
                if counts is None:
                    continue
                total = max(sum(counts), 1)
                for index, (name, pixels) in enumerate(zip(result.class_names, counts)):
                    fraction = np.int64(pixels) / total
                    writer.writerow(
                        {
                            "file": file,
                            "index": index,
                            "name": name,
                            "pixels": pixels,
                            "fraction": f"{fraction:.6f}",
                        }
                    )
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def options_from_args(args: argparse.Namespace) -> PredictOptions:
    """The ``PredictOptions`` of an ``atrous predict`` command line."""
    return PredictOptions(
        model=args.model,
        mode=args.mode,
        window=args.window,
        overlap=args.overlap,
        scales=tuple(args.tta_scales),
        flip=args.flip,
        batch_size=args.batch_size,
        fast=args.fast,
        device=args.device,
        max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
        overlay=args.overlay,
        alpha=args.alpha,
    )


def predict_cli(args: argparse.Namespace) -> int:
    """``atrous predict --ray [ADDRESS]``: the local command's inputs, outputs and exit
    status (0, 1 when some files could not be read, 2 for bad arguments), on Ray."""
    from atrous.infer import InputsError, expand_inputs

    if getattr(args, "backend", "torch") != "torch" or getattr(args, "compile", False):
        print("error: --ray runs the torch backend (with or without --fast)", file=sys.stderr)
        return 2
    if not args.model:
        print("error: --model is required with --ray", file=sys.stderr)
        return 2
    if args.ray_actors is not None and args.ray_actors < 1:
        print(f"error: --ray-actors must be >= 1, got {args.ray_actors}", file=sys.stderr)
        return 2
    try:
        files = expand_inputs(args.inputs, require_images=True)
    except InputsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        import ray
    except ImportError:
        from atrous.scale import RAY_MISSING

        print(f"error: --ray {RAY_MISSING}", file=sys.stderr)
        return 2
    options = options_from_args(args)
    if not ray.is_initialized():
        ray.init(address=args.ray or None)
    try:
        result = predict_with_ray(
            files,
            args.out,
            options,
            actors=args.ray_actors,
            cpus_per_actor=args.ray_cpus_per_actor,
            csv_path=args.csv,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    skipped = f" ({result.skipped} already there)" if result.skipped else ""
    print(
        f"predicted {result.predicted + result.skipped} of {len(files)} files into "
        f"{args.out}{skipped}"
    )
    if result.failures:
        print(f"{len(result.failures)} file(s) could not be read:", file=sys.stderr)
        for message in result.failures:
            print(f"  {message}", file=sys.stderr)
        return 1
    return 0


__all__ = [
    "MaskWriter",
    "PredictOptions",
    "RayPredictResult",
    "predict_with_ray",
    "write_area_csv",
]
