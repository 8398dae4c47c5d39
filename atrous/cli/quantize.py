"""``atrous quantize --model NAME|DIR --calib DIR``: int8 with an accuracy guard.

Calibrates atrous's int8 (``atrous.infer.int8``) on real images, measures what it costs
against fp32 on other images (pixel agreement, and mIoU on a labelled split), times
fp32, bf16 and int8 on this CPU, and saves the ranges with that record, so that
``--precision int8`` and ``auto`` can use it. A quantisation that loses more than 0.5
mIoU points (or changes more than 0.5 % of the pixels, without labels) is refused with
the figures and nothing is saved, unless ``--force``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any

NAME = "quantize"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="int8 for a model, calibrated on real images, with its accuracy measured",
        description="Calibrate atrous's int8 on real images, measure its agreement with "
        "fp32 (and mIoU on a labelled split) on other images, time fp32/bf16/int8 on this "
        "CPU, and save the result so --precision int8/auto use it. Refuses a quantisation "
        "that loses more than 0.5 mIoU (0.5 %% of pixels without labels) unless --force.",
    )
    p.add_argument("--model", required=True, help="shipped model name or saved model folder")
    calib = p.add_argument_group("calibration images (one of)")
    calib.add_argument("--calib", help="folder of images like those the model will see")
    calib.add_argument(
        "--calib-split", default="train", help="with --data.root: the split to draw from"
    )
    calib.add_argument("--calib-count", type=int, default=16, help="calibration images")
    p.add_argument("--data.root", dest="data_root", help="dataset folder (calibration, eval)")
    p.add_argument(
        "--data.format",
        dest="data_format",
        choices=("folder", "camvid", "voc", "cityscapes"),
        help="dataset layout (default: guessed from the folder)",
    )
    p.add_argument(
        "--eval-split",
        help="labelled split to measure on (mIoU of fp32 and int8), e.g. drive:0006R0",
    )
    p.add_argument("--held", help="folder of unlabelled images to measure agreement on")
    p.add_argument("--held-count", type=int, default=16, help="images taken from --held")
    p.add_argument(
        "--size", help="HxW the folder images are resized to (default: the first one's size)"
    )
    p.add_argument(
        "--runtime",
        choices=("torch", "openvino", "both"),
        default="torch",
        help="whose int8: atrous's own (torch), OpenVINO's NNCF int8, or both",
    )
    p.add_argument("--no-timing", action="store_true", help="skip the fp32/bf16/int8 timing")
    p.add_argument("--force", action="store_true", help="save even when the guard refuses")
    p.add_argument("--out", help="folder for the files (default: the model's cache folder)")
    p.set_defaults(func=run)


class _UsageError(Exception):
    """A bad argument: printed as ``error: ...`` with exit status 2."""


def _dataset(args: argparse.Namespace, split: str) -> Any:
    from atrous.data import build_dataset, detect_format

    data_format = args.data_format or detect_format(args.data_root)
    return build_dataset(data_format, args.data_root, split=split)


def _spread(count: int, total: int) -> list[int]:
    """``count`` indices spread over ``range(total)`` (different parts of a video)."""
    step = max(1, total // max(1, count))
    return list(range(0, total, step))[:count]


def _calibration(args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    """The calibration inputs and what the record says about them."""
    from atrous.infer.bench import image_inputs, parse_size

    if args.calib:
        size = parse_size(args.size) if args.size else _first_size(Path(args.calib))
        inputs = image_inputs(args.calib, args.calib_count, size)
        return inputs, {"source": str(args.calib), "images": len(inputs), "size": list(size)}
    if not args.data_root:
        raise _UsageError("give calibration images: --calib DIR, or --data.root ROOT")
    dataset = _dataset(args, args.calib_split)
    inputs = [dataset[i][0][None] for i in _spread(args.calib_count, len(dataset))]
    source = f"{args.data_root} [{args.calib_split}]"
    return inputs, {"source": source, "images": len(inputs), "size": list(inputs[0].shape[-2:])}


def _first_size(folder: Path) -> tuple[int, int]:
    from atrous.infer.io import IMAGE_SUFFIXES, load_image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise _UsageError(f"no image files in {folder}")
    height, width = load_image(files[0]).shape[:2]
    return height, width


def _held_out(args: argparse.Namespace, size: list[int]) -> tuple[list[Any], str, Any]:
    """``(image, mask or None)`` pairs to measure on, their name, and the dataset (or None)."""
    from atrous.infer.bench import image_inputs

    if args.eval_split:
        if not args.data_root:
            raise _UsageError("--eval-split needs --data.root")
        if args.eval_split == args.calib_split and not args.calib:
            raise _UsageError(
                "--eval-split must differ from --calib-split: measure on other images"
            )
        dataset = _dataset(args, args.eval_split)
        return [dataset[i] for i in range(len(dataset))], args.eval_split, dataset
    if args.held:
        if args.calib and Path(args.held).resolve() == Path(args.calib).resolve():
            raise _UsageError("--held must differ from --calib: measure on other images")
        images = image_inputs(args.held, args.held_count, tuple(size))
        return [(x, None) for x in images], str(args.held), None
    raise _UsageError("give images to measure on: --eval-split SPLIT (labelled) or --held DIR")


def _timings(model: Any, int8: Any, x: Any) -> dict[str, float]:
    """Median batch-1 latency (ms) of fp32 and bf16 compiled and of int8, on this CPU."""
    import torch

    from atrous.infer.fast import prepare_for_cpu
    from atrous.infer.quantized import median_ms
    from atrous.infer.runtime import native_bf16

    latency = {"fp32": median_ms(prepare_for_cpu(model, backend="compile"), x)}
    if native_bf16():
        bf16 = prepare_for_cpu(model, backend="compile", dtype=torch.bfloat16)
        latency["bf16"] = median_ms(bf16, x)
    latency["int8"] = median_ms(int8, x)
    return {key: round(value, 2) for key, value in latency.items()}


def _measure(model: Any, candidate: Any, samples: list[Any], name: str, dataset: Any) -> dict:
    from tqdm import tqdm

    from atrous.engine.evaluate import agreement
    from atrous.infer.logits import model_logits

    with tqdm(total=len(samples), unit="img", desc=f"agreement on {name}", leave=False) as bar:
        result = agreement(
            lambda x: model_logits(model(x)),
            candidate,
            samples,
            num_classes=model.num_classes,
            ignore_index=getattr(dataset, "ignore_index", 255),
            progress=bar.update,
        )
    return {"held_out": name, **result}


def _report(label: str, accuracy: dict[str, Any]) -> str | None:
    """Print the figures; the guard's refusal, if any."""
    from atrous.infer.quantized import guard, summarize

    print(f"{label}: {summarize({'accuracy': accuracy})}")
    return guard(accuracy)


def _record(
    args: argparse.Namespace, calibration: dict, accuracy: dict, refusal: str | None
) -> dict:
    import platform

    import torch

    import atrous
    from atrous.infer.runtime import cpu_name

    return {
        "route": "torch-pt2e-x86-inductor",
        "created": datetime.date.today().isoformat(),
        "atrous": atrous.__version__,
        "torch": torch.__version__,
        "machine": f"{cpu_name()}, {torch.get_num_threads()} threads, {platform.system()}",
        "calibration": calibration,
        "accuracy": accuracy,
        "guard": refusal or "passed",
        "forced": bool(refusal and args.force),
    }


def run(args: argparse.Namespace) -> int:
    from atrous.infer.int8 import Int8Model
    from atrous.infer.loading import load_model
    from atrous.infer.packages import MissingPackageError
    from atrous.infer.quantized import save_quantized

    try:
        model = load_model(args.model).eval()
        inputs, calibration = _calibration(args)
        samples, name, dataset = _held_out(args, calibration["size"])
        int8 = Int8Model(model, calibration=inputs)
    except (_UsageError, FileNotFoundError, ValueError, MissingPackageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"calibrated on {calibration['images']} images of {calibration['source']}")
    accuracy = _measure(model, int8, samples, name, dataset)
    refusal = _report("atrous int8", accuracy)
    details = _record(args, calibration, accuracy, refusal)
    if args.runtime in ("openvino", "both"):
        details["openvino_int8"] = _openvino(args, model, inputs, samples, name, dataset)
    if refusal and not args.force:
        print(f"refused: {refusal}; nothing saved (--force saves it anyway)", file=sys.stderr)
        return 1
    if not args.no_timing:
        details["latency_ms"] = _timings(model, int8, inputs[0])
        details["latency_input"] = list(inputs[0].shape)
        print(
            "latency (ms, batch 1): "
            + ", ".join(f"{k} {v}" for k, v in details["latency_ms"].items())
        )
    path = save_quantized(model, int8.ranges(), details, Path(args.out) if args.out else None)
    print(f"saved {path} (and its ranges); --precision int8 and auto now use it")
    return 0


def _openvino(
    args: argparse.Namespace, model: Any, inputs: list, samples: list, name: str, dataset: Any
) -> dict[str, Any] | None:
    """OpenVINO's NNCF int8 on the same calibration, cached for ``--runtime openvino``;
    its accuracy, or None when the guard refuses it (then it is not offered by auto)."""
    from atrous.infer.openvino import cached_openvino_model
    from atrous.models.pretrained import artifact_home

    runner = cached_openvino_model(
        model, precision="int8", example=inputs[0], model_dir=artifact_home(model),
        calibration=inputs,
    )  # fmt: skip
    accuracy = _measure(model, runner, samples, name, dataset)
    refusal = _report("OpenVINO NNCF int8", accuracy)
    return None if refusal and not args.force else accuracy
