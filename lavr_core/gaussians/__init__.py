"""3D / 4D Gaussian splats: the value type, file IO (.ply, .splat, .spz, sequences) and rendering.

Storage conventions are documented in ``types``; every file format converts at its reader/writer.
"""

from .comfy import comfy_splat_type, from_comfy_splat, to_comfy_splat
from .io import format_notes, format_of, read_gaussians, write_gaussians
from .io_ply import read_ply, write_ply
from .io_sequence import read_sequence, write_sequence
from .io_splat import read_splat, write_splat
from .io_spz import read_spz, write_spz
from .render import render, resolve_backend
from .types import GAUSSIANS_TYPE, SH_C0, GaussianSequence, Gaussians, rgb_to_sh_dc, sh_dc_to_rgb

__all__ = [
    "Gaussians", "GaussianSequence", "GAUSSIANS_TYPE", "SH_C0", "rgb_to_sh_dc", "sh_dc_to_rgb",
    "read_gaussians", "write_gaussians", "format_of", "format_notes",
    "read_ply", "write_ply", "read_splat", "write_splat", "read_spz", "write_spz",
    "read_sequence", "write_sequence", "render", "resolve_backend",
    "comfy_splat_type", "to_comfy_splat", "from_comfy_splat",
]
