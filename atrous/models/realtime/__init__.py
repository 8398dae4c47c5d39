"""Real-time segmentation networks built on dilated convolutions, trained from scratch."""

from atrous.models.realtime.cgnet import cgnet
from atrous.models.realtime.dabnet import dabnet
from atrous.models.realtime.erfnet import erfnet

__all__ = ["cgnet", "dabnet", "erfnet"]
