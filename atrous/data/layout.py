"""Recognising which dataset layout a folder holds, for commands run without a config."""

from __future__ import annotations

from pathlib import Path

# Checked in this order; the first marker found decides.
_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("folder", ("classes.json",)),
    ("camvid", ("trainannot", "valannot")),
    ("cityscapes", ("gtFine",)),
    ("voc", ("SegmentationClass", "VOC2012")),
)


def detect_format(root: str | Path) -> str:
    """The dataset format of ``root`` (a name ``atrous.data.build_dataset`` takes).

    Recognised by the marker each layout is documented with: ``classes.json`` (folder),
    ``trainannot/`` or ``valannot/`` (CamVid, SegNet layout), ``gtFine/`` (Cityscapes),
    ``SegmentationClass/`` or ``VOC2012/`` (Pascal VOC). A folder with none of them is
    taken to be the ``folder`` format, whose loader then says what is missing.
    """
    root = Path(root)
    for name, markers in _MARKERS:
        if any((root / marker).exists() for marker in markers):
            return name
    return "folder"
