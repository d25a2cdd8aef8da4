"""Conversion to and from ComfyUI's core Gaussian-splat type, when the installed ComfyUI has one.

Newer ComfyUI releases define ``SPLAT`` in ``comfy_api/latest/_util/geometry_types.py`` (socket type
``SPLAT``, used by ``comfy_extras/nodes_gaussian_splat.py``). Its layout, as read from ComfyUI's
source, is a padded batch::

    positions  (B, N, 3)  world-space centres
    scales     (B, N, 3)  linear standard deviations
    rotations  (B, N, 4)  unit quaternions wxyz
    opacities  (B, N, 1)  in [0, 1]
    sh         (B, N, K, 3) SH coefficients, DC first
    counts     (B,) real lengths when items differ in N (rows zero-padded), else None

which is our storage convention item by item, so the conversion only pads, slices and reshapes.
ComfyUI 0.3.75 (the version this pack is tested against) has no such type; detection is lazy and
``to_comfy_splat`` takes the class explicitly for tests and for other packs' look-alike types.
"""

from __future__ import annotations

import importlib
from typing import Any, Sequence

import torch

from ..errors import InputError
from .types import Gaussians

#: Where ComfyUI defines its splat class, newest first.
_COMFY_SPLAT_LOCATIONS = (("comfy_api.latest._util.geometry_types", "SPLAT"), ("comfy_api.latest._util", "SPLAT"))
_FIELDS = ("positions", "scales", "rotations", "opacities", "sh")


def comfy_splat_type() -> type | None:
    """ComfyUI's core splat class, or None when the running ComfyUI (or no ComfyUI) lacks it."""
    for module, name in _COMFY_SPLAT_LOCATIONS:
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except Exception:  # noqa: BLE001 - any import failure means "not available here"
            cls = None
        if isinstance(cls, type):
            return cls
    return None


def is_comfy_splat(obj: Any) -> bool:
    """Whether ``obj`` carries ComfyUI's splat fields (duck-typed, so look-alike classes work too)."""
    return all(hasattr(obj, f) for f in _FIELDS)


def to_comfy_splat(gaussians: Gaussians | Sequence[Gaussians], splat_cls: type | None = None):
    """A ComfyUI ``SPLAT`` holding one batch item per Gaussian set (padded, with ``counts`` when uneven).

    Raises ``InputError`` when no class is given and the installed ComfyUI has none.
    """
    cls = splat_cls or comfy_splat_type()
    if cls is None:
        raise InputError("This ComfyUI has no core Gaussian-splat (SPLAT) type.",
                         "Update ComfyUI to a version with comfy_extras/nodes_gaussian_splat.py, or keep using LaVR's Gaussians.")
    items = [gaussians] if isinstance(gaussians, Gaussians) else list(gaussians)
    if not items:
        raise InputError("No Gaussian sets to convert.", "Give at least one.")
    deg = max(g.sh_degree for g in items)
    dev = items[0].device
    items = [g.with_sh_degree(deg).to(dev) for g in items]
    counts = [g.num for g in items]
    n = max(counts)

    def pad(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, t.new_zeros((n - t.shape[0],) + t.shape[1:])]) if t.shape[0] < n else t

    stack = lambda f: torch.stack([pad(f(g)) for g in items])  # noqa: E731
    uniform = len(set(counts)) == 1
    return cls(positions=stack(lambda g: g.means), scales=stack(lambda g: g.scales),
               rotations=stack(lambda g: g.rotations), opacities=stack(lambda g: g.opacities[:, None]),
               sh=stack(lambda g: g.sh),
               counts=None if uniform else torch.tensor(counts, dtype=torch.long, device=dev))


def from_comfy_splat(splat: Any) -> list[Gaussians]:
    """One ``Gaussians`` per batch item of a ComfyUI ``SPLAT`` (padding rows dropped via ``counts``)."""
    if not is_comfy_splat(splat):
        raise InputError(f"{type(splat).__name__} is not a ComfyUI splat (needs {', '.join(_FIELDS)}).",
                         "Connect a SPLAT output.")
    pos = splat.positions
    if not isinstance(pos, torch.Tensor) or pos.ndim != 3:
        raise InputError(f"SPLAT positions have shape {tuple(getattr(pos, 'shape', ()))}; expected (B, N, 3).",
                         "The splat is malformed upstream.")
    b, n = pos.shape[:2]
    counts = getattr(splat, "counts", None)
    if counts is None:
        counts = [n] * b
    else:
        counts = [int(c) for c in torch.as_tensor(counts).reshape(-1).tolist()]
        if len(counts) != b or any(c < 0 or c > n for c in counts):
            raise InputError(f"SPLAT counts {counts} do not fit a batch of {b} x {n}.", "The splat is malformed upstream.")
    out = []
    for i, c in enumerate(counts):
        op = splat.opacities[i, :c]
        out.append(Gaussians(splat.positions[i, :c], splat.scales[i, :c], splat.rotations[i, :c],
                             op.reshape(c), splat.sh[i, :c], {"source": "comfy_splat", "batch_index": i}))
    return out
