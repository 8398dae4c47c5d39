"""Segmentation heads: ASPP, DeepLab heads, FCN, context module, DUC."""
