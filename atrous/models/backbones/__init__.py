"""Backbones with output stride applied while building; each exposes ``feature_info``."""

from atrous.models.backbones.base import Backbone, ConvSpec, FeatureInfo

__all__ = ["Backbone", "ConvSpec", "FeatureInfo"]
