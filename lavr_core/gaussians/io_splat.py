"""antimatter15 ``.splat`` files: 32 bytes per Gaussian, no header.

Record layout (little-endian)::

    float32 x, y, z          position
    float32 sx, sy, sz       linear scales
    uint8   r, g, b, a       colour (0.5 + SH_C0 * DC, clamped) and opacity, each * 255
    uint8   qw, qx, qy, qz   unit quaternion, each component stored as round(q * 128 + 128)

The format has no SH bands beyond the base colour and no count field (the count is the file size /
32). Records are written largest-and-most-opaque first (``volume * opacity`` descending), the order
the antimatter15 viewer's converter produces so a progressively loading viewer shows the big
structures first; readers re-sort by depth anyway.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..fileio import atomic_writer
from .io_common import GaussianArrays, build, file_error, read_bytes
from .types import SH_C0, Gaussians, rgb_to_sh_dc

SPLAT_DTYPE = np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
assert SPLAT_DTYPE.itemsize == 32


def splat_records(g: Gaussians, sort: bool = True) -> np.ndarray:
    """The ``.splat`` records of ``g`` (structured array of ``SPLAT_DTYPE``), sorted unless ``sort=False``."""
    a = GaussianArrays.of(g)
    n = len(a)
    # Fill a plain [N, 8] float32 table and write the byte fields through a uint8 view of it: row
    # copies of contiguous 32-byte records are much faster than structured-field assignment.
    table = np.empty((n, 8), dtype="<f4")
    table[:, 0:3] = a.means
    table[:, 3:6] = a.scales
    raw = table.view(np.uint8)
    rgba = np.concatenate([0.5 + SH_C0 * a.sh[:, 0], a.opacities[:, None]], 1)
    raw[:, 24:28] = np.clip(np.floor(rgba * 255.0 + 0.5), 0, 255).astype(np.uint8)
    raw[:, 28:32] = np.clip(np.floor(a.rotations * 128.0 + 128.5), 0, 255).astype(np.uint8)
    if sort:
        key = a.scales[:, 0] * a.scales[:, 1] * a.scales[:, 2] * a.opacities
        table = table[np.argsort(-key)]
    return table.view(SPLAT_DTYPE)[:, 0]


def write_splat(g: Gaussians, path: str | os.PathLike, sort: bool = True) -> Path:
    """Write ``g`` as an antimatter15 ``.splat`` (base colour only: SH bands above 0 are not stored)."""
    rec = splat_records(g, sort)
    with atomic_writer(path, "wb") as f:
        f.write(memoryview(rec).cast("B"))
    return Path(path)


def read_splat(path: str | os.PathLike) -> Gaussians:
    """Read an antimatter15 ``.splat`` into ``Gaussians`` (SH degree 0)."""
    p = Path(path)
    data = read_bytes(p, "splat")
    if len(data) % 32:
        raise file_error(p, f"{len(data)} bytes is not a whole number of 32-byte .splat records "
                            f"({len(data) // 32} records and {len(data) % 32} stray bytes).",
                         "The file is truncated or not a .splat; export it again.")
    rec = np.frombuffer(data, dtype=SPLAT_DTYPE)
    rgba = rec["rgba"].astype(np.float32) / 255.0
    rot = (rec["rot"].astype(np.float32) - 128.0) / 128.0
    sh = rgb_to_sh_dc(rgba[:, :3])[:, None, :]
    return build(p, rec["pos"], rec["scale"], rot, rgba[:, 3], sh, {"source": p.name, "format": "splat"})
