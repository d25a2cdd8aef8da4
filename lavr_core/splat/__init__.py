"""Alias package so users can run ``python -m lavr_core.splat convert IN OUT``; the code lives in
``lavr_core.gaussians``."""

from ..gaussians.cli import convert, main  # noqa: F401
