"""The one training engine shared by every task: loop, checkpoints, resume, EMA, DDP."""
from .config import TrainConfig
from .engine import Callback, StepInfo, TrainResult, fit

__all__ = ["Callback", "StepInfo", "TrainConfig", "TrainResult", "fit"]
