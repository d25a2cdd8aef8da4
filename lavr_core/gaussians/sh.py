"""Real spherical harmonics in the 3D Gaussian Splatting convention (degrees 0..4).

Basis order and signs are those of the 3DGS reference code (and gsplat, and the ``.ply``/``.spz``
files they write): index ``l*l + (m + l)`` for ``m = -l..l``, with the Condon-Shortley phase, so
band 1 is ``(-C1 y, C1 z, -C1 x)``. The colour of a Gaussian seen along unit direction ``d`` (from
the camera centre to the Gaussian) is ``sum_k sh[k] * Y_k(d) + 0.5``, clamped at 0 from below.
"""

from __future__ import annotations

import functools

import torch

from .types import SH_C0

_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
       -0.4570457994644658, 1.445305721320277, -0.5900435899266435)
_C4 = (2.5033429417967046, -1.7701307697799304, 0.9461746957575601, -0.6690465435572892, 0.10578554691520431,
       -0.6690465435572892, 0.47308734787878004, -1.7701307697799304, 0.6258357354491761)


def sh_basis(degree: int, dirs: torch.Tensor) -> torch.Tensor:
    """The ``(degree+1)^2`` real SH basis functions at unit directions ``dirs [..., 3]`` -> ``[..., K]``."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [_C2[0] * xy, _C2[1] * yz, _C2[2] * (2 * zz - xx - yy), _C2[3] * xz, _C2[4] * (xx - yy)]
    if degree >= 3:
        out += [_C3[0] * y * (3 * xx - yy), _C3[1] * xy * z, _C3[2] * y * (4 * zz - xx - yy),
                _C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _C3[4] * x * (4 * zz - xx - yy),
                _C3[5] * z * (xx - yy), _C3[6] * x * (xx - 3 * yy)]
    if degree >= 4:
        out += [_C4[0] * xy * (xx - yy), _C4[1] * yz * (3 * xx - yy), _C4[2] * xy * (7 * zz - 1),
                _C4[3] * yz * (7 * zz - 3), _C4[4] * (zz * (35 * zz - 30) + 3), _C4[5] * xz * (7 * zz - 3),
                _C4[6] * (xx - yy) * (7 * zz - 1), _C4[7] * xz * (xx - 3 * yy),
                _C4[8] * (xx * (xx - 3 * yy) - yy * (3 * xx - yy))]
    if degree > 4:
        raise ValueError(f"SH degree {degree} > 4")
    return torch.stack(out, -1)


def eval_sh(sh: torch.Tensor, dirs: torch.Tensor, degree: int | None = None) -> torch.Tensor:
    """Colour ``[..., 3]`` (before the +0.5 offset) of SH ``[..., K, 3]`` along unit ``dirs [..., 3]``."""
    deg = degree if degree is not None else int(round(sh.shape[-2] ** 0.5)) - 1
    k = (deg + 1) ** 2
    return (sh_basis(deg, dirs)[..., None] * sh[..., :k, :]).sum(-2)


@functools.lru_cache(maxsize=None)
def axis_flip_signs(sx: int, sy: int, sz: int, degree: int) -> tuple[float, ...]:
    """Per-coefficient signs that re-express SH under the axis flip ``diag(sx, sy, sz)``.

    Every real SH basis function has a definite parity in each coordinate, so
    ``Y_k(F d) = s_k Y_k(d)`` and the coefficients of the same colour field in the flipped frame are
    ``s_k c_k``. Measured on one generic direction instead of tabulated, so it follows the basis above.
    """
    d = torch.tensor([0.3, -0.5, 0.8124038404635961], dtype=torch.float64)
    d = d / d.norm()
    f = torch.tensor([sx, sy, sz], dtype=torch.float64)
    ratio = sh_basis(degree, d * f) / sh_basis(degree, d)
    return tuple(float(torch.sign(r)) for r in ratio)
