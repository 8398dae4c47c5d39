"""Backbones with output stride applied while building; each exposes ``feature_info``."""

from atrous.models.backbones.base import OUTPUT_STRIDES, Backbone, FeatureInfo

__all__ = ["OUTPUT_STRIDES", "Backbone", "FeatureInfo"]
