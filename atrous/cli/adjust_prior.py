"""``atrous adjust-prior --model DIR --data.root ROOT [--split train] --out DIR``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NAME = "adjust-prior"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="undo over-prediction of rare classes (post-hoc logit adjustment)",
        description="Models trained with class weights over-predict rare classes. This "
        "scores logits - alpha*log(w) for a grid of alpha on a split (one forward pass "
        "per image), prints mIoU per alpha, and with --out saves the model with the best "
        "alpha folded into its last bias (exact; predict/export/serve use it unchanged). "
        "Pick alpha on the training split, then report val with `atrous eval`.",
    )
    p.add_argument("--model", required=True, help="model folder or shipped model name")
    p.add_argument("--data.root", dest="data_root", required=True, help="dataset folder")
    p.add_argument(
        "--data.format",
        dest="data_format",
        choices=("folder", "camvid", "voc", "cityscapes"),
        help="dataset layout (default: guessed from the folder)",
    )
    p.add_argument("--split", default="train", help="split to choose alpha on (default: train)")
    p.add_argument(
        "--weights",
        help="class weights the direction comes from: median_frequency, "
        "sqrt_median_frequency or comma-separated values (default: the weights in the "
        "model's training config, else median_frequency), computed on the train split",
    )
    p.add_argument(
        "--alphas",
        type=float,
        nargs="+",
        help="alphas to try (default -1 to 1 in steps of 0.25; 0 = as trained)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--max-samples", type=int, help="use only the first N images")
    p.add_argument("--out", help="save the adjusted model here (a save_pretrained folder)")
    p.add_argument("--half", action="store_true", help="store fp16 weights (half the size)")
    p.add_argument("--json", dest="json_out", help="also write the search to this JSON file")
    p.set_defaults(func=run)


def _default_weights(metadata: dict) -> str | list[float]:
    config = metadata.get("config") or {}
    spec = (config.get("loss") or {}).get("class_weights")
    return spec if spec else "median_frequency"


def _weights_spec(weights: str | None, saved_metadata: dict) -> str | list[float]:
    """The class-weight spec of ``--weights``: a rule name or explicit values.

    Without ``--weights`` the model's own training weights give the direction, so the
    adjustment undoes exactly what training added.

    Raises:
        ValueError: ``weights`` is neither a known rule nor comma-separated numbers.
    """
    if weights is None:
        return _default_weights(saved_metadata)
    if weights in ("median_frequency", "sqrt_median_frequency"):
        return weights
    try:
        return [float(v) for v in weights.split(",")]
    except ValueError:
        raise ValueError(
            f"--weights {weights!r}: expected median_frequency, "
            "sqrt_median_frequency or comma-separated numbers"
        ) from None


def _print_search(
    args: argparse.Namespace,
    root: str,
    spec: str | list[float],
    search: Any,
    class_names: Sequence[str],
) -> None:
    """Print the alpha table and the best alpha (against alpha 0, as trained, if tried)."""
    label = spec if isinstance(spec, str) else "explicit"
    print(f"{args.model} on {root} [{args.split}]; direction: log of {label} weights")
    print(search.table(class_names))
    best = search.best
    print(f"best alpha {best:+.2f} (mIoU {100 * max(search.miou):.2f} vs "
          f"{100 * search.miou[search.alphas.index(0.0)]:.2f} as trained)"
          if 0.0 in search.alphas else f"best alpha {best:+.2f}")  # fmt: skip
    if args.split != "train":
        print(f"note: alpha was chosen on {args.split!r}; metrics on that split are now optimistic")


def run(args: argparse.Namespace) -> int:
    from atrous.data import DataError, build_dataset, detect_format
    from atrous.device import resolve_device
    from atrous.engine.prior import (
        DEFAULT_ALPHAS,
        class_weights_from_data,
        fold_class_bias,
        search_prior,
    )
    from atrous.models import load_pretrained, save_pretrained

    root = args.data_root
    data_format = args.data_format or detect_format(root)
    try:
        device = resolve_device(args.device)
        model = load_pretrained(args.model, map_location=device)
        # The training config and earlier adjustments, as save_pretrained stored them.
        saved_metadata = dict(getattr(model, "metadata", None) or {})
        dataset = build_dataset(data_format, root, split=args.split)
        spec = _weights_spec(args.weights, saved_metadata)
        weights = class_weights_from_data(spec, data_format, root, "train")
        if model.num_classes != dataset.num_classes:
            raise ValueError(
                f"model {args.model} has {model.num_classes} classes, dataset {root} has "
                f"{dataset.num_classes}; expected the same"
            )
        search = search_prior(
            model,
            dataset,
            weights,
            alphas=tuple(args.alphas) if args.alphas else DEFAULT_ALPHAS,
            device=device,
            ignore_index=dataset.ignore_index,
            max_samples=args.max_samples,
            progress=True,
        )
    except (DataError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_search(args, root, spec, search, dataset.class_names)
    best = search.best
    record = {
        "alpha": best,
        "class_weights": spec,
        "selected_on": {"data": str(root), "split": args.split},
        "shift": search.shift(best),
        **search.to_dict(),
    }
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    if args.out:
        try:
            fold_class_bias(model, search.shift(best))
        except ValueError as exc:
            print(f"error: {args.model}: {exc}", file=sys.stderr)
            return 2
        metadata = dict(saved_metadata)
        metadata["prior_adjustment"] = record
        to_save = model.cpu().half() if args.half else model.cpu()
        save_pretrained(to_save, args.out, metadata=metadata)
        print(f"saved the adjusted model to {args.out}")
    return 0
