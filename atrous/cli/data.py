"""``atrous data check --data.root ROOT --format camvid``: scan a dataset, report every problem.

``--split`` takes CamVid's split expressions too (``--split drive:0006R0``); for CamVid
the drives table (frames per drive and split) is printed first, since it is what a
held-out-drive split is written from.
"""

from __future__ import annotations

import argparse
import sys

NAME = "data"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        NAME,
        help="check datasets",
        description="Dataset tools. `check` reads every image and mask with full validation, "
        "lists every problem (file, value found, value expected) and the class histogram.",
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate every file of a dataset")
    check.add_argument(
        "--data.root", dest="data_root", metavar="PATH", help="dataset folder (as in train/eval)"
    )
    check.add_argument("root", nargs="?", help="dataset folder (older spelling of --data.root)")
    check.add_argument(
        "--format", default="folder", choices=("folder", "camvid", "voc", "cityscapes")
    )
    check.add_argument(
        "--split",
        action="append",
        help="split(s) to scan (default: train and val that exist); CamVid also takes "
        "expressions such as drive:0006R0 or train+val-drive:0006R0",
    )
    check.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from atrous.data import DataError, build_dataset, camvid_drives, check_dataset, drives_table

    if (args.data_root is None) == (args.root is None):
        print("error: give the dataset folder once, as --data.root PATH", file=sys.stderr)
        return 2
    args.root = args.data_root or args.root
    splits = args.split or ["train", "val"]
    problems = 0
    scanned = 0
    if args.format == "camvid":
        try:
            print(drives_table(camvid_drives(args.root)))
        except DataError as exc:  # names not DRIVE_FRAME, or no folder: the scan says more
            print(f"(no drives table: {exc})")
    for split in splits:
        try:
            dataset = build_dataset(args.format, args.root, split=split)
        except DataError as exc:
            if args.split:  # asked for explicitly: a missing split is a problem
                print(f"[{split}] {exc}")
                problems += 1
            continue
        report = check_dataset(dataset)
        scanned += 1
        print(f"== {split}: {report.num_samples} samples, {len(report.problems)} problems")
        for message in report.problems:
            print(f"  {message}")
        print(report.histogram_table())
        problems += len(report.problems)
    if scanned == 0:
        print(f"no split of {splits} found under {args.root} as format {args.format!r}")
        return 1
    print("OK" if problems == 0 else f"{problems} problem(s) found")
    return 0 if problems == 0 else 1
