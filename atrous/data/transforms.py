"""Joint image + mask transforms driven by an explicit random generator.

Each transform takes ``(image, mask, generator)`` where ``image`` is a float ``(3, H, W)``
tensor in [0, 1] and ``mask`` an int64 ``(H, W)`` tensor, and returns the pair. Masks are
always resampled with nearest neighbour (interpolating class indices invents classes)
and padded with the ignore index (padding is not a class).

Why not torchvision.transforms.v2: it draws from the global RNG, so augmentation would
depend on which worker got which sample. Here the dataset seeds one generator per
sample from ``(seed, epoch, index)``, which makes a resumed run replay exactly the same
crops and flips as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from atrous.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD

Pair = tuple[Tensor, Tensor]


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


class Compose:
    """Apply transforms in order, passing the same generator along."""

    def __init__(self, transforms: Sequence[object]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, mask: Tensor, generator: torch.Generator) -> Pair:
        for transform in self.transforms:
            image, mask = transform(image, mask, generator)  # type: ignore[operator]
        return image, mask

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class RandomScale:
    """Resize both by one factor drawn from ``[low, high]`` (bilinear image, nearest mask)."""

    def __init__(self, *, low: float = 0.5, high: float = 2.0) -> None:
        self.low, self.high = low, high

    def __call__(self, image: Tensor, mask: Tensor, generator: torch.Generator) -> Pair:
        factor = _uniform(generator, self.low, self.high)
        height, width = mask.shape
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
        return image, mask

    def __repr__(self) -> str:
        return f"RandomScale(low={self.low}, high={self.high})"


class RandomCrop:
    """Crop ``(height, width)``; smaller inputs are padded (image 0, mask ignore index)."""

    def __init__(self, size: Sequence[int], *, ignore_index: int = IGNORE_INDEX) -> None:
        self.height, self.width = int(size[0]), int(size[1])
        self.ignore_index = ignore_index

    def __call__(self, image: Tensor, mask: Tensor, generator: torch.Generator) -> Pair:
        height, width = mask.shape
        pad_h, pad_w = max(0, self.height - height), max(0, self.width - width)
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
            mask = F.pad(mask, (0, pad_w, 0, pad_h), value=self.ignore_index)
            height, width = mask.shape
        top = int(torch.randint(0, height - self.height + 1, (), generator=generator))
        left = int(torch.randint(0, width - self.width + 1, (), generator=generator))
        image = image[:, top : top + self.height, left : left + self.width]
        mask = mask[top : top + self.height, left : left + self.width]
        return image, mask

    def __repr__(self) -> str:
        return f"RandomCrop(size=({self.height}, {self.width}))"


class RandomHorizontalFlip:
    """Mirror both left-right with probability ``p``."""

    def __init__(self, *, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Tensor, mask: Tensor, generator: torch.Generator) -> Pair:
        if float(torch.rand((), generator=generator)) < self.p:
            return image.flip(-1), mask.flip(-1)
        return image, mask

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class ColorJitter:
    """Random brightness, contrast and saturation by factors in ``[1 - s, 1 + s]``; mask kept."""

    def __init__(self, *, strength: float = 0.2) -> None:
        self.strength = strength

    def __call__(self, image: Tensor, mask: Tensor, generator: torch.Generator) -> Pair:
        s = self.strength
        brightness, contrast, saturation = (_uniform(generator, 1 - s, 1 + s) for _ in range(3))
        image = image * brightness
        mean = image.mean()
        image = (image - mean) * contrast + mean
        grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
        image = (image - grey) * saturation + grey
        return image.clamp(0.0, 1.0), mask

    def __repr__(self) -> str:
        return f"ColorJitter(strength={self.strength})"


class Normalize:
    """Subtract the mean and divide by the std per channel (ImageNet's by default)."""

    def __init__(
        self, *, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __call__(self, image: Tensor, mask: Tensor, generator: torch.Generator) -> Pair:
        return (image - self.mean) / self.std, mask

    def __repr__(self) -> str:
        return "Normalize()"


def train_transforms(
    *,
    crop_size: Sequence[int],
    scale_range: Sequence[float] = (0.5, 2.0),
    hflip: bool = True,
    color_jitter: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
) -> Compose:
    """The usual segmentation training pipeline: scale, crop (padded), flip, jitter, normalise.

    Example:
        ```python
        import tempfile

        from atrous.data import build_dataset, train_transforms
        from atrous.data.synthetic import generate

        crops = train_transforms(crop_size=(48, 48), scale_range=(0.75, 1.25))
        dataset = build_dataset("folder", generate(tempfile.mkdtemp(), train=2, val=0, size=64),
                                transform=crops)
        image, mask = dataset[0]  # the same random scale, crop and flip for image and mask
        assert image.shape[1:] == mask.shape == (48, 48)
        ```
    """
    steps: list[object] = []
    if tuple(scale_range) != (1.0, 1.0):
        steps.append(RandomScale(low=scale_range[0], high=scale_range[1]))
    steps.append(RandomCrop(crop_size, ignore_index=ignore_index))
    if hflip:
        steps.append(RandomHorizontalFlip())
    if color_jitter > 0:
        steps.append(ColorJitter(strength=color_jitter))
    steps.append(Normalize())
    return Compose(steps)


def eval_transforms() -> Compose:
    """Evaluation keeps the full image: only normalisation."""
    return Compose([Normalize()])


def denormalize(image: Tensor) -> Tensor:
    """Undo ``Normalize`` (for visualisation): back to [0, 1] RGB."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(-1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(-1, 3, 1, 1)
    out = image * std.squeeze(0) + mean.squeeze(0) if image.dim() == 3 else image * std + mean
    return out.clamp(0, 1)
