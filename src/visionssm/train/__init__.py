"""Training, evaluation, checkpointing: data, loop, DDP, run outputs (DESIGN.md, "Training outputs")."""

from .config import TrainConfig
from .errors import NonFiniteLossError, UserError
from .loop import train

__all__ = ["NonFiniteLossError", "TrainConfig", "UserError", "train"]
