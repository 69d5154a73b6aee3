"""Training: model building, the task (batch -> loss), optimizer, schedules, metrics, the loop."""

from .trainer import TrainingDiverged, TrainResult, train

__all__ = ["TrainingDiverged", "TrainResult", "train"]
