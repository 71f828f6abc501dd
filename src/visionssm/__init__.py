"""visionssm: vision state-space models on one selective-scan core."""

__version__ = "0.1.0"
