"""``atrous predict --model NAME|DIR INPUT... --out DIR``: masks, overlays, area CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from atrous.cli.common import add_runtime_arguments, runtime_runner

NAME = "predict"


def _scales(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 0.75,1,1.25, got {text!r}"
        ) from error
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"scales must be positive, got {text!r}")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="segment image files, folders or globs",
        description="Predict a label mask for every input image and write it as a palette "
        "PNG (labels as pixel values, the model's colours as palette). A folder contributes "
        "its files in every raster format Pillow reads (PNG, JPEG, TIFF, WebP, BMP, GIF, "
        "TGA, PSD, DDS, JPEG 2000, ...); its other files are named in a warning. Files that "
        "cannot be read are reported by name and reason; the others are still predicted and "
        "the exit status is 1. Inputs that share a name (a.png, a.jpg) get distinct output "
        "names (a_png.png, a_jpg.png).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file, folder or glob")
    p.add_argument(
        "--model",
        help="saved model folder or shipped name (default with the torch backend: camvid, "
        "the shipped CamVid street model); gives class names and palette",
    )
    p.add_argument("--out", required=True, help="output folder for <name>.png masks")
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay colour weight")
    p.add_argument(
        "--csv",
        help="write per-class pixel areas of every image (and every frame of a clip) to this CSV",
    )
    video = p.add_argument_group(
        "video clips (.mp4, .mkv, .avi, .mov, .webm; needs pip install 'atrous[video]')"
    )
    video.add_argument(
        "--frames-out", action="store_true", help="also write each frame's mask as a PNG"
    )
    video.add_argument("--every", type=int, default=1, help="segment every N-th frame")
    video.add_argument("--start", type=float, default=0.0, help="first second to segment")
    video.add_argument("--end", type=float, default=None, help="stop at this second")
    p.add_argument("--batch-size", type=int, default=1, help="images (whole) or windows (slide)")
    p.add_argument("--mode", choices=("whole", "slide"), default="whole")
    p.add_argument("--window", type=int, default=512, help="sliding-window size in pixels")
    p.add_argument("--overlap", type=float, default=1 / 3, help="sliding-window overlap")
    p.add_argument("--tta-scales", type=_scales, default=(1.0,), help="e.g. 0.75,1,1.25")
    p.add_argument("--flip", action="store_true", help="average with the mirrored prediction")
    add_runtime_arguments(p)
    p.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="with --onnx: run that ONNX file in ONNX Runtime (else use --runtime)",
    )
    p.add_argument("--onnx", help="ONNX file for --backend onnxruntime")
    p.add_argument("--fast", action="store_true", help="alias of --precision fp32 (eager)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="with --fast: alias of --precision fp32 compiled (torch.compile with frozen "
        "weights; seconds per input size)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-pixels", type=int, default=None, help="refuse larger images")
    ray = p.add_argument_group("on a Ray cluster (needs the ray extra)")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="predict in Ray Data actors; ADDRESS of a running cluster (default: "
        "RAY_ADDRESS, else a local instance); a rerun skips masks already written",
    )
    ray.add_argument("--ray-actors", type=int, default=None, help="actors (default: CPUs)")
    ray.add_argument("--ray-cpus-per-actor", type=float, default=1.0, help="CPUs per actor")
    p.set_defaults(func=run)


class _UsageError(Exception):
    """A bad argument or model: printed as ``error: ...`` with exit status 2."""


def _load_runner(args: argparse.Namespace, images: int | None) -> tuple[object, object | None]:
    """The model the predictor runs and the model that supplies class names and palette.

    Raises:
        _UsageError: ``--model`` cannot be loaded, or the backend's model is missing or
            cannot be opened.
    """
    metadata_model = None
    if args.model:
        from atrous.infer.loading import load_model

        try:
            metadata_model = load_model(args.model)
        except (FileNotFoundError, ValueError) as error:
            raise _UsageError(str(error)) from error
    if args.backend == "onnxruntime":
        if not args.onnx:
            raise _UsageError("--backend onnxruntime needs --onnx FILE")
        from atrous.infer.export import OnnxRuntimeModel

        try:
            return OnnxRuntimeModel(args.onnx), metadata_model
        except Exception as error:  # onnxruntime raises its own exception types
            raise _UsageError(f"cannot open {args.onnx}: {error}") from error
    if metadata_model is None:
        from atrous.infer.loading import load_model

        metadata_model = load_model("camvid")
    if args.device != "cpu":  # the runtimes and precisions here are CPU paths
        return metadata_model, metadata_model
    if args.fast or args.compile:  # the flags from before --precision, kept as aliases
        from atrous.infer.fast import prepare_for_cpu

        backend = "compile" if args.compile else "eager"
        print(f"runtime: torch fp32 ({backend}): --fast", file=sys.stderr)
        return prepare_for_cpu(metadata_model, backend=backend), metadata_model
    try:
        runner, _ = runtime_runner(metadata_model, args, images=images)
    except ValueError as error:
        raise _UsageError(str(error)) from error
    return runner, metadata_model


def _predict_files(
    args: argparse.Namespace,
    predictor: Any,
    metadata_model: object | None,
    files: list[Path],
    stems: dict[Path, str],
    out: Path,
) -> tuple[set[Path], list[Any], list[dict]]:
    """Predict ``files`` batch by batch and write their masks (and overlays) into ``out``.

    Unreadable files are logged and skipped so the others are still predicted. Class
    names and palette come from ``metadata_model``, else from the first mask.

    Returns:
        The files written, the ``ImageError`` of every skipped one,
        and the per-class area rows (filled only with ``--csv``).
    """
    import logging

    from tqdm import tqdm

    from atrous.constants import voc_palette
    from atrous.infer import DEFAULT_MAX_PIXELS, ImageError, class_areas, colorize, load_image
    from atrous.infer import overlay as overlay_image
    from atrous.infer.io import save_png

    logger = logging.getLogger("atrous.predict")
    names = getattr(metadata_model, "class_names", None)
    palette = getattr(metadata_model, "palette", None)
    failures: list[ImageError] = []
    area_rows: list[dict] = []
    max_pixels = args.max_pixels or DEFAULT_MAX_PIXELS
    step = args.batch_size if args.mode == "whole" else 1
    written: set[Path] = set()
    with tqdm(total=len(files), unit="img", disable=None) as bar:
        for start in range(0, len(files), step):
            loaded: list[tuple[Path, object]] = []
            for path in files[start : start + step]:
                try:
                    loaded.append((path, load_image(path, max_pixels=max_pixels)))
                except ImageError as error:
                    failures.append(error)
                    logger.error("skipped %s", error)
                    bar.update(1)
            if not loaded:
                continue
            masks = predictor.predict_batch([image for _, image in loaded])
            for (path, image), mask in zip(loaded, masks):
                num_classes = int(mask.max()) + 1
                if names is None:
                    known = getattr(metadata_model, "num_classes", None) or 21
                    names = [f"class_{i}" for i in range(max(known, num_classes))]
                if palette is None:
                    palette = voc_palette(256)
                stem = stems[path]
                save_png(colorize(mask, palette), out / f"{stem}.png")
                if args.overlay:
                    overlay = overlay_image(image, mask, palette, args.alpha)
                    save_png(overlay, out / f"{stem}_overlay.png")
                if args.csv:
                    for row in class_areas(mask, names):
                        area_rows.append({"file": str(path), **row})
                written.add(path)
                bar.update(1)
    return written, failures, area_rows


def _write_areas(csv_path: str, area_rows: list[dict]) -> None:
    """The ``--csv`` file: one row per image and class, fractions to six decimals."""
    import csv

    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        fields = ["file", "index", "name", "pixels", "fraction"]
        if any("frame" in row for row in area_rows):
            fields[1:1] = ["frame", "time_s"]
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        for row in area_rows:
            writer.writerow({**row, "fraction": f"{row['fraction']:.6f}"})


def _summarise(
    files: list[Path], written: set[Path], stems: dict[Path, str], out: Path, failures: list
) -> int:
    """Print what was written (and under which renamed stems) and what failed; exit status."""
    print(f"predicted {len(written)} of {len(files)} files into {out}")
    renamed = [
        (path, stems[path]) for path in files if path in written and stems[path] != path.stem
    ]
    if renamed:
        print(f"{len(renamed)} of them share a name with another input; their masks are:")
        for path, stem in renamed:
            print(f"  {path} -> {stem}.png")
    if failures:
        print(f"{len(failures)} file(s) could not be read:", file=sys.stderr)
        for error in failures:
            print(f"  {error}", file=sys.stderr)
        return 1
    return 0


def _image_count(files: list[Path]) -> int | None:
    """Images to segment, or None when a clip is among them (frames: many)."""
    from atrous.infer.video import is_video

    return None if any(is_video(path) for path in files) else len(files)


def run(args: argparse.Namespace) -> int:
    if args.ray is not None:
        from atrous.scale.ray_predict import predict_cli

        return predict_cli(args)
    from atrous.infer import InputsError, Predictor, expand_inputs, output_stems

    try:
        files = expand_inputs(args.inputs, require_images=True)
    except InputsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        runner, metadata_model = _load_runner(args, _image_count(files))
    except _UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    predictor = Predictor(
        runner,
        device=args.device,
        mode=args.mode,
        window=args.window,
        overlap=args.overlap,
        scales=args.tta_scales,
        flip=args.flip,
        batch_size=args.batch_size,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from atrous.infer.video import is_video

    clips = [path for path in files if is_video(path)]
    images = [path for path in files if not is_video(path)]
    stems = dict(zip(images, output_stems(images, companions=("_overlay",))))
    written, failures, area_rows = _predict_files(
        args, predictor, metadata_model, images, stems, out
    )
    if clips:
        done, broken, rows = _predict_clips(args, predictor, metadata_model, clips, out)
        written |= done
        failures += broken
        area_rows += rows
        stems |= {clip: clip.stem for clip in clips}
    if args.csv:
        _write_areas(args.csv, area_rows)
    return _summarise(files, written, stems, out, failures)


def _predict_clips(
    args: argparse.Namespace,
    predictor: Any,
    metadata_model: object | None,
    clips: list[Path],
    out: Path,
) -> tuple[set[Path], list[Any], list[dict]]:
    """Segment each clip into mask (and overlay) videos; a broken clip is named and the
    others go on."""
    from tqdm import tqdm

    from atrous.constants import voc_palette
    from atrous.infer.video import FrameSelection, VideoError, frame_count, predict_video

    if args.every < 1:
        raise ValueError(f"--every must be >= 1, got {args.every}")
    names = getattr(metadata_model, "class_names", None)
    palette = getattr(metadata_model, "palette", None) or voc_palette(256)
    selection = FrameSelection(every=args.every, start=args.start, end=args.end)
    written: set[Path] = set()
    failures: list[Any] = []
    rows: list[dict] = []
    for clip in clips:
        total = frame_count(clip)
        with tqdm(
            total=total // args.every if total else None, unit="frame", desc=clip.name
        ) as bar:
            try:
                result = predict_video(
                    clip, predictor.predict_batch, out, palette=palette, class_names=names,
                    overlay=args.overlay, alpha=args.alpha, frames_out=args.frames_out,
                    selection=selection, batch_size=args.batch_size, progress=bar.update,
                )  # fmt: skip
            except VideoError as error:
                failures.append(error)
                continue
        written.add(clip)
        rows += [{"file": str(clip), **row} for row in result.area_rows]
        print(f"{clip}: {result.frames} frames -> {', '.join(map(str, result.outputs))}")
    return written, failures, rows
