"""User-facing errors. Every message says what is wrong and what to do about it."""

from __future__ import annotations


class LavrError(ValueError):
    """Base class of errors a user can act on. ``hint`` is the fix, appended to the message."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(f"{message} {hint}" if hint else message)


class TrajectoryError(LavrError):
    """A camera path is malformed: NaN, non-rigid rotation, bad focal, bad frame count, bad file."""


class InputError(LavrError):
    """An image, video or other node input does not fit what the node needs."""


class CheckpointError(LavrError):
    """A weights file is missing, truncated, of the wrong model, or does not match key for key."""
