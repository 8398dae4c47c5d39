"""Segmentation heads: ASPP, DeepLab heads, FCN, context module, DUC, LR-ASPP."""

from atrous.models.heads.aspp import ASPP, ImagePooling, default_rates
from atrous.models.heads.context import ContextModule
from atrous.models.heads.deeplab import DeepLabHead, DeepLabV3PlusHead
from atrous.models.heads.duc import DUCHead
from atrous.models.heads.fcn import FCNHead
from atrous.models.heads.lraspp import LRASPPHead

__all__ = [
    "ASPP",
    "ContextModule",
    "DUCHead",
    "DeepLabHead",
    "DeepLabV3PlusHead",
    "FCNHead",
    "ImagePooling",
    "LRASPPHead",
    "default_rates",
]
