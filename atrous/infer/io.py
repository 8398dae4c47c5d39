"""Expanding the inputs a user names into image files, and naming the files written for them.

Prediction runs over folders of files that come from anywhere: some are truncated, some
are not images, some are decompression bombs. Reading is ``atrous.data.io.read_image``
(re-exported here as ``load_image``), the package's one image reader; each failure
is an ``ImageError`` that names the file and the reason, so the caller can report
it and go on with the other files.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image

from atrous.data.io import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, ImageError, read_image
from atrous.files import atomic_write

#: Clips ``atrous predict`` segments frame by frame (``atrous.infer.video``).
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"})

LOGGER = logging.getLogger(__name__)

# The name prediction and the web service have always called the reader.
load_image = read_image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "ImageError",
    "expand_inputs",
    "load_image",
    "output_stems",
]

_SHOWN = 10  # file names quoted in one log line


class InputsError(FileNotFoundError):
    """The inputs of a prediction name nothing to predict: a path that is neither a file,
    a folder nor a matching glob, or no image at all. One type (and wording) for
    ``atrous predict`` and its Ray form."""


def expand_inputs(inputs: Iterable[str | Path], *, require_images: bool = False) -> list[Path]:
    """Turn files, folders and glob patterns into a sorted, de-duplicated list of files.

    A folder contributes the files directly inside it whose suffix is one of
    ``IMAGE_SUFFIXES`` (every raster format Pillow decodes); the other files of the
    folder are counted and named in one warning, never skipped without a word. A file
    with an image suffix that is not such an image is still returned, and fails later
    with a reason. A named file or a glob match is always returned, whatever its suffix,
    so that the user hears why it could not be read.

    Raises:
        InputsError: an input that is neither a file, a folder nor a matching glob, or,
            with ``require_images``, inputs that hold no image file at all.
    """
    found: dict[Path, None] = {}
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            skipped: list[str] = []
            for child in sorted(path.iterdir()):
                if not child.is_file():
                    continue
                if child.suffix.lower() in IMAGE_SUFFIXES or child.suffix.lower() in VIDEO_SUFFIXES:
                    found[child] = None
                else:
                    skipped.append(child.name)
            if skipped:
                shown = ", ".join(skipped[:_SHOWN]) + (" ..." if len(skipped) > _SHOWN else "")
                LOGGER.warning(
                    "%s: skipped %d file(s) whose suffix is not an image format Pillow "
                    "reads: %s (name a file to have it tried anyway)",
                    path,
                    len(skipped),
                    shown,
                )
        elif path.is_file():
            found[path] = None
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                raise InputsError(f"glob {text!r} matched no files")
            for match in files:
                found[match] = None
        else:
            raise InputsError(f"input {text!r} is not a file, a folder or a glob")
    if require_images and not found:
        raise InputsError("no image files found in the inputs")
    return list(found)


def output_stems(paths: Sequence[Path], *, companions: Sequence[str] = ("_overlay",)) -> list[str]:
    """One output stem per input, no two of whose files can overwrite each other.

    Outputs are written flat into one folder as ``<stem>.png`` (and ``<stem><companion>.png``
    for each companion, e.g. the overlay), so ``gray.png`` and ``gray.jpg``, or ``a/x.png``
    and ``b/x.png``, would write one mask over the other. An input keeps its own stem when
    that is free; inputs sharing a stem get their suffix appended (``gray_png``,
    ``gray_jpg``), and a number if that is still taken. Names are compared ignoring case,
    as on the file systems of macOS and Windows.

    Returns:
        The stems, in the order of ``paths``.
    """
    suffixes = ("", *companions)
    counts: dict[str, int] = {}
    for path in paths:
        counts[path.stem.lower()] = counts.get(path.stem.lower(), 0) + 1
    taken: set[str] = set()
    stems = []
    for path in paths:
        base = path.stem
        if counts[base.lower()] > 1 and path.suffix:
            base = f"{base}_{path.suffix[1:]}"
        stem, number = base, 1
        while any(f"{stem}{extra}".lower() in taken for extra in suffixes):
            number += 1
            stem = f"{base}_{number}"
        taken.update(f"{stem}{extra}".lower() for extra in suffixes)
        stems.append(stem)
    return stems


def save_png(image: Image.Image, path: Path) -> None:
    """Write ``image`` as a PNG atomically (see ``atrous.files.atomic_write``).

    A reader (or a rerun's skip check) sees either no file or a complete one, never half
    a PNG, whether the writer is killed or the disk fills. No fsync: that would guard
    against a machine crash, at a cost per image that a million images make visible.
    """
    atomic_write(path, lambda temporary: image.save(temporary, format="PNG"), fsync=False)
