"""ERFNet: factorised residual layers with a 2, 4, 8, 16 dilation schedule, for real time.

Efficient Residual Factorized ConvNet (Romera, Alvarez, Bergasa & Arroyo, 2018, IEEE
T-ITS, "ERFNet: Efficient Residual Factorized ConvNet for Real-time Semantic
Segmentation"). Every 3x3 convolution of a residual block is factorised into 3x1 then
1x3 ("non-bottleneck-1D"); the second pair is dilated. The encoder works at 1/8 of the
input with eight such blocks at rates 2, 4, 8, 16, 2, 4, 8, 16; each block's first pair
is undilated, so the stack leaves no holes. A small decoder of transposed convolutions
returns to full resolution.

Layer names follow the authors' code (``initial_block``, ``layers``, ``output_conv``
become ``stem``, ``stage1``/``stage2`` and the decoder's ``layers``/``output_conv``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from atrous.models.backbones.base import Backbone, FeatureInfo, main_path_convs
from atrous.models.config import model_config
from atrous.models.realtime.common import assemble, override_stages
from atrous.models.segmentor import Segmentor
from atrous.ops.schedule import DilationSchedule

SCHEDULE = DilationSchedule.explicit(
    {"stem": (1,), "stage1": (1, 1, 1, 1, 1, 1), "stage2": (1, 2, 4, 8, 16, 2, 4, 8, 16)}
)
"""ERFNet's encoder: per stage, the downsampler (rate 1) then one rate per block."""


class Downsampler(nn.Module):
    """3x3 stride-2 conv to ``outputs - inputs`` channels, concatenated with 2x2 max-pool.

    ``ceil_mode`` pooling keeps the two branches the same size on odd inputs.
    """

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(inputs, outputs - inputs, 3, stride=2, padding=1, bias=True)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.bn = nn.BatchNorm2d(outputs, eps=1e-3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class NonBottleneck1D(nn.Module):
    """Residual block of two factorised 3x3 convs; the second pair at ``rate``.

    3x1 -> ReLU -> 1x3 -> BN -> ReLU -> 3x1 (rate) -> ReLU -> 1x3 (rate) -> BN ->
    dropout -> ReLU(out + x).
    """

    def __init__(self, channels: int, *, rate: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv3x1_1 = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0))
        self.act1 = nn.ReLU(inplace=True)
        self.conv1x3_1 = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1))
        self.bn1 = nn.BatchNorm2d(channels, eps=1e-3)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3x1_2 = nn.Conv2d(
            channels, channels, (3, 1), padding=(rate, 0), dilation=(rate, 1)
        )
        self.act3 = nn.ReLU(inplace=True)
        self.conv1x3_2 = nn.Conv2d(
            channels, channels, (1, 3), padding=(0, rate), dilation=(1, rate)
        )
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-3)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        out = self.act2(self.bn1(self.conv1x3_1(self.act1(self.conv3x1_1(x)))))
        out = self.bn2(self.conv1x3_2(self.act3(self.conv3x1_2(out))))
        return self.act(self.dropout(out) + x)


class Upsampler(nn.Module):
    """Transposed 3x3 stride-2 conv (exactly doubles the size) + BN + ReLU."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(
            inputs, outputs, 3, stride=2, padding=1, output_padding=1, bias=True
        )
        self.bn = nn.BatchNorm2d(outputs, eps=1e-3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class ERFNetEncoder(Backbone):
    """Stages ``stem`` (1/2, 16 ch), ``stage1`` (1/4, 64 ch), ``stage2`` (1/8, 128 ch).

    Args:
        schedule: the encoder's rates, one per block of each stage (the downsampler
            first, at rate 1), so the HDC and no-dilation variants of the ablation are
            one value.
        width: channels of ``stage2`` (128 published; ``stage1`` is half, ``stem`` 1/8).
        dropout: dropout of ``stage1`` blocks (``stage2`` uses ten times it, as the
            paper's 0.03 / 0.3).
    """

    def __init__(
        self, *, schedule: DilationSchedule = SCHEDULE, width: int = 128, dropout: float = 0.03
    ) -> None:
        super().__init__()
        if width % 8 or width < 32:
            raise ValueError(
                f"width must be a multiple of 8 and at least 32 (the stem has width/8 > 3 "
                f"channels, 3 of them from max-pooling the RGB input), got {width}"
            )
        rates = schedule.stage_rates
        if set(rates) != {"stem", "stage1", "stage2"}:
            raise ValueError(
                f"an ERFNet schedule names the stages stem, stage1, stage2; got {sorted(rates)}"
            )
        widths = {"stem": width // 8, "stage1": width // 2, "stage2": width}
        drops = {"stem": 0.0, "stage1": dropout, "stage2": min(1.0, dropout * 10)}
        inputs, stride = 3, 1
        self.feature_info = []
        for name in ("stem", "stage1", "stage2"):
            stage_rates = rates[name]
            if stage_rates[0] != 1:
                raise ValueError(f"{name}: the first entry is the stride-2 downsampler (rate 1)")
            blocks: list[nn.Module] = [Downsampler(inputs, widths[name])]
            blocks += [
                NonBottleneck1D(widths[name], rate=rate, dropout=drops[name])
                for rate in stage_rates[1:]
            ]
            stage = nn.Sequential(*blocks)
            self.add_module(name, stage)
            inputs, stride = widths[name], stride * 2
            main_path = nn.Sequential(blocks[0].conv, *blocks[1:])
            self.feature_info.append(
                FeatureInfo(
                    name=name,
                    channels=inputs,
                    stride=stride,
                    dilation=tuple(stage_rates),
                    convs=main_path_convs(main_path),
                )
            )
        self.schedule = schedule
        self.aux_feature = "stage1"
        self.low_level_feature = "stage1"

    def stage_blocks(self, name: str) -> list[nn.Module]:
        self.info(name)
        return list(getattr(self, name))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        stem = self.stem(x)
        stage1 = self.stage1(stem)
        return {"stem": stem, "stage1": stage1, "stage2": self.stage2(stage1)}


class ERFNetDecoder(nn.Module):
    """1/8 -> 1/4 -> 1/2 -> full resolution: two upsamplers with two blocks each, then a
    transposed 2x2 conv to the classes."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        mid, low = in_channels // 2, in_channels // 8
        self.layers = nn.Sequential(
            Upsampler(in_channels, mid),
            NonBottleneck1D(mid),
            NonBottleneck1D(mid),
            Upsampler(mid, low),
            NonBottleneck1D(low),
            NonBottleneck1D(low),
        )
        self.output_conv = nn.ConvTranspose2d(low, num_classes, 2, stride=2, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.output_conv(self.layers(x))


def erfnet(
    *,
    num_classes: int,
    dilation_schedule: DilationSchedule | dict | str | None = None,
    width: int = 128,
    dropout: float = 0.03,
) -> Segmentor:
    """ERFNet (Romera et al., 2018, IEEE T-ITS 19(1)): 2.1M parameters at 1/8 resolution.

    Args:
        num_classes: output classes.
        dilation_schedule: the encoder's rates (default ``SCHEDULE``: 2, 4, 8, 16
            twice in ``stage2``). A mapping changes only the stages it names, with one
            rate per block, the stride-2 downsampler (rate 1) first:
            ``{"stage2": [1, 1, 2, 5, 9, 1, 2, 5, 9]}`` is the HDC variant.
        width: channels at 1/8 (128 published).
        dropout: ``stage1`` dropout (``stage2`` uses ten times it).
    """
    config = model_config(
        "erfnet",
        {
            "num_classes": num_classes,
            "dilation_schedule": dilation_schedule,
            "width": width,
            "dropout": dropout,
        },
    )
    schedule = override_stages(
        SCHEDULE,
        dilation_schedule,
        model="ERFNet",
        example='{"stage2": [1, 1, 2, 5, 9, 1, 2, 5, 9]} (the downsampler first, at rate 1)',
    )
    return assemble(
        ERFNetEncoder(schedule=schedule, width=width, dropout=dropout),
        config=config,
        schedule=schedule,
        num_classes=num_classes,
        head_input="stage2",
        classifier=ERFNetDecoder(width, num_classes),
    )
