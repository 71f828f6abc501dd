"""visionssm: vision state-space models on one selective-scan core."""

__version__ = "0.1.0"

from . import models  # noqa: E402,F401  (registers the model families with timm)
