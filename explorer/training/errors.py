"""The one error type of training: a sentence a person can act on, plus what was saved before it happened."""
from __future__ import annotations

__all__ = ["TrainingError", "DatasetError"]


class TrainingError(ValueError):
    """A run that cannot start or had to stop; ``str(error)`` is one sentence saying what to change.

    ``last_state`` is the model's state dict after the last step whose loss was finite (a NaN / inf loss), or
    None when nothing was trained; ``epoch`` and ``batch`` say where it stopped (1-based, None before the start).
    """

    def __init__(self, message: str, *, last_state: dict | None = None, epoch: int | None = None,
                 batch: int | None = None):
        super().__init__(message)
        self.last_state = last_state
        self.epoch = epoch
        self.batch = batch


class DatasetError(TrainingError):
    """A data set that cannot be used (a refused zip, a download that is not there); one sentence."""
