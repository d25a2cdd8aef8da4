"""Read and write Gaussian splat files by extension: ``.ply``, ``.splat``, ``.spz``."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from .io_ply import read_ply, write_ply
from .io_splat import read_splat, write_splat
from .io_spz import read_spz, write_spz
from .types import Gaussians

#: Extension -> (reader, writer, highest SH degree the format stores, what it quantises).
FORMATS = {
    "ply": (read_ply, write_ply, 3, "nothing (float32 throughout)"),
    "splat": (read_splat, write_splat, 0, "colour and opacity to 8 bits, rotation to 8 bits per component"),
    "spz": (read_spz, write_spz, 4, "position to 24-bit fixed point, scale/opacity/colour to 8 bits, "
                                    "rotation to 8 (v2) or 10 (v3) bits, SH to 4-5 bits"),
}


def format_of(path: str | os.PathLike) -> str:
    """``"ply"``, ``"splat"`` or ``"spz"`` from a file name; ``InputError`` for anything else."""
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in FORMATS:
        raise InputError(f"{Path(path).name}: unknown splat format {('.' + ext) if ext else '(no extension)'}.",
                         "Use a .ply, .splat or .spz file name.")
    return ext


def read_gaussians(path: str | os.PathLike, **options) -> Gaussians:
    """Read any supported splat file (options go to the format's reader, e.g. ``convert_axes`` for .spz)."""
    return FORMATS[format_of(path)][0](path, **options)


def write_gaussians(g: Gaussians, path: str | os.PathLike, **options) -> Path:
    """Write ``g`` in the format named by the extension of ``path``, atomically.

    Options go to the writer: ``version``/``convert_axes`` for .spz, ``sort`` for .splat. A set with
    more SH bands than the format stores is an ``InputError`` for .ply (degree 4; 3DGS viewers stop
    at 3) and is cut to the base colour for .splat, whose format has no SH at all -- see ``format_notes``.
    """
    fmt = format_of(path)
    if fmt == "ply" and g.sh_degree > FORMATS["ply"][2]:
        raise InputError(f"SH degree {g.sh_degree} does not fit a 3DGS .ply (viewers read degree 0..3).",
                         "Save as .spz, or reduce it with gaussians.with_sh_degree(3).")
    return FORMATS[fmt][1](g, path, **options)


def format_notes(g: Gaussians, path: str | os.PathLike) -> list[str]:
    """Human-readable notes on what writing ``g`` to ``path`` loses (for CLIs and node status text)."""
    fmt = format_of(path)
    _, _, max_deg, quant = FORMATS[fmt]
    notes = []
    if g.sh_degree > max_deg:
        notes.append(f"SH degree {g.sh_degree} -> {max_deg}: .{fmt} stores "
                     + ("the base colour only" if max_deg == 0 else f"bands up to {max_deg}"))
    notes.append(f".{fmt} quantises {quant}")
    return notes
