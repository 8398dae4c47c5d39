"""Real-time segmentation networks built on dilated convolutions, trained from scratch."""

from atrous.models.realtime.erfnet import erfnet

__all__ = ["erfnet"]
