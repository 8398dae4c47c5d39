"""Check every sample before the first training step: a bad file is found in seconds,
not hours into a run.

``check_samples`` reads each image and mask of a split with the dataset's own
reader (decode, size match, label values), all of them, and returns every problem at
once. Samples that passed are remembered by path, size and modification time (with the
dataset's class count and ignore index) in a small JSON cache, so a second start on the
same files is quick; a changed file is checked again. ``data.bad_samples`` decides what
a problem does: ``stop`` (the default) refuses to train and lists them; ``skip`` trains
without them and lists them in ``<run>/skipped_samples.txt``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atrous.data import SegmentationDataset
from atrous.data.io import DataError
from atrous.files import user_cache_dir

logger = logging.getLogger(__name__)

CACHE_FILE = "checked_samples.json"


def cache_path() -> Path:
    """``$ATROUS_CACHE_DIR/checked_samples.json`` (default ``~/.cache/atrous``)."""
    return user_cache_dir() / CACHE_FILE


@dataclass(frozen=True)
class SampleProblem:
    """One sample that cannot be trained on: its index in the split and why."""

    index: int
    message: str


def _stamp(path: Path) -> str:
    info = path.stat()
    return f"{path.resolve()}:{info.st_size}:{info.st_mtime_ns}"


def sample_key(dataset: SegmentationDataset, index: int) -> str | None:
    """What a check of sample ``index`` depends on, or None if a file is missing."""
    image, mask = dataset.samples[index]
    try:
        files = f"{_stamp(image)}|{_stamp(mask)}"
    except OSError:
        return None
    return f"{files}|classes={dataset.num_classes}|ignore={dataset.ignore_index}"


def _read_cache(path: Path) -> set[str]:
    """Keys of samples that passed; a missing or damaged cache is an empty one."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return {str(key) for key in document.get("passed", [])}
    except (OSError, ValueError, AttributeError):
        return set()


def _write_cache(path: Path, passed: set[str]) -> None:
    """Atomically (a torn cache is only a slower next start, but keep it whole)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".checked-")
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({"passed": sorted(passed)}, handle)
        os.replace(temporary, path)
    except OSError as error:  # a read-only home only costs the next start its speed
        logger.info("sample check cache not written (%s): %s", path, error)


def check_samples(
    dataset: SegmentationDataset,
    *,
    cache: Path | None = None,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> list[SampleProblem]:
    """Every problem of ``dataset``'s samples; the ones already known good are skipped."""
    cache = cache if cache is not None else cache_path()
    passed = _read_cache(cache)
    problems: list[SampleProblem] = []
    newly_passed: set[str] = set()
    indices: Iterable[int] = range(len(dataset))
    for index in progress(indices) if progress is not None else indices:
        key = sample_key(dataset, index)
        if key is not None and key in passed:
            continue
        try:
            dataset.load(index)
        except DataError as error:
            problems.append(SampleProblem(index, str(error)))
            continue
        if key is not None:
            newly_passed.add(key)
    if newly_passed:
        _write_cache(cache, passed | newly_passed)
    return problems


def describe(problems: list[SampleProblem], split: str, root: str) -> str:
    """All problems of one split, one line each."""
    lines = [f"{len(problems)} bad sample(s) in {root} [{split}]:"]
    lines += [f"  {problem.message}" for problem in problems]
    return "\n".join(lines)


def without(dataset: SegmentationDataset, problems: list[SampleProblem]) -> SegmentationDataset:
    """``dataset`` with the problem samples removed (in place; returned for chaining)."""
    bad = {problem.index for problem in problems}
    dataset.samples = [sample for i, sample in enumerate(dataset.samples) if i not in bad]
    return dataset


def check_splits(
    splits: dict[str, tuple[SegmentationDataset, str]],
    *,
    policy: str,
    out_dir: Path | None,
    root: str,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> dict[str, Any]:
    """Check each split (``name -> (dataset, split expression)``); stop or skip.

    Raises:
        DataError: with ``policy="stop"``, every problem of every split, listed.
    """
    if progress is None:
        from tqdm.auto import tqdm

        def progress(indices: Iterable[int]) -> Iterable[int]:
            return tqdm(indices, desc="checking samples", unit="sample", leave=False, disable=None)

    found = {
        name: check_samples(dataset, progress=progress) for name, (dataset, _) in splits.items()
    }
    if not any(found.values()):
        return {}
    report = "\n".join(
        describe(problems, splits[name][1], root) for name, problems in found.items() if problems
    )
    if policy != "skip":
        raise DataError(
            f"{report}\nnothing was trained. Fix or remove these files, or set "
            "data.bad_samples=skip to train without them"
        )
    for name, problems in found.items():
        without(splits[name][0], problems)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "skipped_samples.txt").write_text(report + "\n", encoding="utf-8")
    logger.warning("data.bad_samples=skip: training without these\n%s", report)
    return {name: len(problems) for name, problems in found.items()}
