"""Helpers shared by the splat file readers and writers: numpy views of a Gaussian set, file errors."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .types import Gaussians


@dataclass(frozen=True)
class GaussianArrays:
    """A Gaussian set as float32 numpy arrays (storage conventions of ``Gaussians``)."""

    means: np.ndarray      # [N, 3]
    scales: np.ndarray     # [N, 3] linear
    rotations: np.ndarray  # [N, 4] unit wxyz, w >= 0
    opacities: np.ndarray  # [N] in [0, 1]
    sh: np.ndarray         # [N, K, 3]

    @classmethod
    def of(cls, g: Gaussians) -> "GaussianArrays":
        f = lambda t: np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())  # noqa: E731
        return cls(f(g.means), f(g.scales), f(g.rotations), f(g.opacities), f(g.sh))

    def __len__(self) -> int:
        return self.means.shape[0]


def file_error(path: str | os.PathLike, what: str, hint: str) -> InputError:
    return InputError(f"{Path(path).name}: {what}", hint)


@contextlib.contextmanager
def naming_file(path: str | os.PathLike):
    """Re-raise validation errors of the values decoded from ``path`` with the file's name in front."""
    try:
        yield
    except InputError as e:
        raise InputError(f"{Path(path).name}: {e.message}",
                         e.hint or "The file holds invalid Gaussians; re-export it.") from e


def build(path, means, scales, rotations, opacities, sh, meta) -> Gaussians:
    """``Gaussians`` from decoded numpy arrays; invalid values become an ``InputError`` naming ``path``."""
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    with naming_file(path):
        return Gaussians(t(means), t(scales), t(rotations), t(opacities), t(sh), meta)


def read_bytes(path: str | os.PathLike, what: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file {str(p)!r} does not exist.", "Check the path.")
    data = p.read_bytes()
    if not data:
        raise file_error(p, "the file is empty (0 bytes).", "The export was interrupted; export it again.")
    return data


def logit(p: np.ndarray) -> np.ndarray:
    """Inverse sigmoid, with opacities clamped so that 0 and 1 stay finite (+-13.8 for float32)."""
    p = np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (0.5 * (1 + np.tanh(0.5 * x))).astype(np.float32)  # tanh form: no overflow for large |x|
