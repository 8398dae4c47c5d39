"""Constants shared across the package: input normalisation, ignore index, palettes."""

from __future__ import annotations

# Every atrous model takes RGB input scaled to [0, 1] then normalised with ImageNet's
# statistics, as torchvision's pretrained backbones expect.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# Label value excluded from the loss and the metrics (Pascal VOC's convention).
IGNORE_INDEX = 255


def voc_palette(num_classes: int = 256) -> list[tuple[int, int, int]]:
    """Pascal VOC's colour map: class i gets the colour built from the bits of i.

    The same bit-interleaving scheme the VOC development kit uses, so masks saved with it
    look like every other VOC-style mask.
    """
    palette = []
    for index in range(num_classes):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append((r, g, b))
    return palette
