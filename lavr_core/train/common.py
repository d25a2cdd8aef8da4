"""Pieces every training command shares: device choice, the JSON-lines log, ``HxW`` arguments and
the resumable optimizer state saved beside the weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..fileio import atomic_write_text, atomic_writer


def pick_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else the CPU; anything else as torch names it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def write_log(path: Path, rows: list[dict]) -> None:
    """The training log: one JSON object a line, rewritten atomically (a crash never leaves half a line)."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def parse_size(text: str) -> tuple[int, int]:
    """``argparse`` type for ``HxW`` (e.g. ``480x832``) -> ``(height, width)``."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW (e.g. 480x832)") from None
    return h, w


def save_state(path: Path, step: int, opt: torch.optim.Optimizer, gen: torch.Generator) -> None:
    """Optimizer and data-generator state at ``step``, atomically (weights are saved separately)."""
    state = {"step": step, "optimizer": opt.state_dict(), "generator": gen.get_state(), "format_version": 1}
    with atomic_writer(path, "wb") as f:
        torch.save(state, f)


def read_state(path: Path) -> dict:
    """What ``save_state`` wrote (read with ``weights_only=True``), or a ``CheckpointError`` saying what to do."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        int(state["step"]), state["optimizer"], state["generator"]
    except (KeyError, ValueError, RuntimeError, TypeError, EOFError) as e:
        raise CheckpointError(f"{path} is not a usable training state ({e}).",
                              "Delete it to restart the optimizer from the saved weights, or train afresh.") from e
    return state


def read_log(path: Path) -> list[dict]:
    """The rows ``write_log`` wrote (none when the file does not exist), so a resumed run appends."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_options(path: Path, options) -> None:
    """A run's options (a dataclass) as JSON beside its outputs, for provenance."""
    from dataclasses import asdict

    atomic_write_text(path, json.dumps(asdict(options), indent=1, default=str))
