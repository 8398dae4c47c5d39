"""Scan a whole dataset, collect every problem (not just the first) and a class histogram.

Used by ``atrous data check`` and by median-frequency class weighting, which needs the
same per-class pixel counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from atrous.data.datasets import SegmentationDataset
from atrous.data.io import DataError


@dataclass
class DatasetReport:
    """Outcome of ``check_dataset``.

    Attributes:
        num_samples: pairs scanned.
        problems: one message per bad file (file, value found, value expected).
        class_pixels: pixels per class over the readable samples.
        class_images: per class, total pixels of the images in which it appears
            (the denominator of SegNet's median frequency balancing).
        ignored_pixels: pixels with the ignore index.
    """

    class_names: list[str]
    num_samples: int = 0
    problems: list[str] = field(default_factory=list)
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    class_images: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ignored_pixels: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def histogram_table(self) -> str:
        """Class histogram as aligned text: pixels and share of the labelled pixels."""
        total = max(int(self.class_pixels.sum()), 1)
        width = max([len(n) for n in self.class_names] + [7])
        lines = [f"{'class':<{width}}  {'pixels':>12}  {'share':>7}"]
        for name, count in zip(self.class_names, self.class_pixels):
            lines.append(f"{name:<{width}}  {int(count):>12}  {100 * count / total:>6.2f}%")
        lines.append(f"{'ignored':<{width}}  {self.ignored_pixels:>12}")
        return "\n".join(lines)


def check_dataset(
    dataset: SegmentationDataset, *, indices: Iterable[int] | None = None
) -> DatasetReport:
    """Read every sample of ``dataset`` with full validation and gather all problems.

    Example:
        ```python
        import tempfile

        from atrous.data import build_dataset, check_dataset
        from atrous.data.synthetic import generate

        dataset = build_dataset("folder", generate(tempfile.mkdtemp(), train=4, val=0, size=64))
        report = check_dataset(dataset)
        assert not report.problems
        print(report.histogram_table())
        ```
    """
    num_classes = dataset.num_classes
    report = DatasetReport(
        class_names=list(dataset.class_names),
        class_pixels=np.zeros(num_classes, dtype=np.int64),
        class_images=np.zeros(num_classes, dtype=np.int64),
    )
    for index in indices if indices is not None else range(len(dataset)):
        report.num_samples += 1
        try:
            _, labels = dataset.load(index)
        except DataError as exc:
            report.problems.append(str(exc))
            continue
        counts = np.bincount(labels.ravel(), minlength=max(num_classes, dataset.ignore_index + 1))
        per_class = counts[:num_classes]
        report.class_pixels += per_class
        report.class_images[per_class > 0] += labels.size
        report.ignored_pixels += (
            int(counts[dataset.ignore_index]) if dataset.ignore_index < len(counts) else 0
        )
    return report


def median_frequency_weights(report: DatasetReport) -> np.ndarray:
    """SegNet's median frequency balancing: ``w_c = median(f) / f_c``.

    ``f_c`` is the pixels of class ``c`` divided by the total pixels of the images where
    ``c`` is present (Eigen & Fergus, 2015). Classes never seen get weight 0.
    """
    freq = np.zeros(len(report.class_pixels), dtype=np.float64)
    seen = report.class_images > 0
    freq[seen] = report.class_pixels[seen] / report.class_images[seen]
    weights = np.zeros_like(freq)
    if seen.any():
        weights[seen] = np.median(freq[seen]) / freq[seen]
    return weights
