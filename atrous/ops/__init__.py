"""The dilated (atrous) convolution: reference op, size arithmetic and layers."""

from atrous.ops.functional import dilated_conv, dilated_conv1d, dilated_conv2d, dilated_conv3d
from atrous.ops.layers import AtrousConv2d, SeparableAtrousConv2d, make_activation, make_norm
from atrous.ops.schedule import (
    CONTEXT_MODULE,
    HDC_RATES,
    MULTI_GRID,
    ConvGeometry,
    DilationSchedule,
    ScheduleLike,
    StageLayout,
    StagePlan,
    check_output_stride,
    parse_rates,
)
from atrous.ops.sizes import (
    conv_output_size,
    effective_kernel_size,
    same_padding,
)

__all__ = [
    "CONTEXT_MODULE",
    "HDC_RATES",
    "MULTI_GRID",
    "AtrousConv2d",
    "ConvGeometry",
    "DilationSchedule",
    "ScheduleLike",
    "SeparableAtrousConv2d",
    "StageLayout",
    "StagePlan",
    "check_output_stride",
    "conv_output_size",
    "dilated_conv",
    "dilated_conv1d",
    "dilated_conv2d",
    "dilated_conv3d",
    "effective_kernel_size",
    "make_activation",
    "make_norm",
    "parse_rates",
    "same_padding",
]
