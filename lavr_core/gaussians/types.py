"""The 3D Gaussian value type (static) and its 4D form (one set per timestep).

Storage conventions (the same as gsplat's renderer and ComfyUI's core ``SPLAT`` type; the files on
disk use other ones and the readers/writers convert at their boundary):

* ``means``      ``[N, 3]`` world positions, in the world frame of the cameras they come with
                 (OpenCV camera-to-world convention, see ``lavr_core.conventions``), scene units.
* ``scales``     ``[N, 3]`` **linear** standard deviations along the Gaussian's local axes, > 0.
                 (``.ply`` and ``.spz`` store ``log(scale)``; ``.splat`` stores linear.)
* ``rotations``  ``[N, 4]`` unit quaternions **wxyz**, normalised here with ``w >= 0``. The local
                 axes are the columns of ``quat_to_matrix(q)``: covariance ``R diag(s^2) R^T``.
* ``opacities``  ``[N]`` in [0, 1] (already through the sigmoid; files store the logit).
* ``sh``         ``[N, K, 3]`` real spherical-harmonics colour coefficients, ``K = (degree+1)^2``
                 with degree 0..4, DC first, coefficient-major then RGB (3DGS convention). The
                 view-independent colour is ``0.5 + SH_C0 * sh[:, 0]``; renderers add 0.5 to the SH sum.

Tensors are not detached or copied: a ``Gaussians`` built from parameters that require grad stays
differentiable, so training can render it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from ..camera.transforms import quat_normalize
from ..conventions import GAUSSIANS_TYPE  # noqa: F401 (re-exported)
from ..errors import InputError

#: Band-0 real spherical-harmonic constant, ``1 / (2 sqrt(pi))``: DC coefficient -> colour offset.
SH_C0 = 0.28209479177387814
#: Highest SH degree any format we read or write can hold (``.spz`` goes to 4, 3DGS ``.ply`` to 3).
MAX_SH_DEGREE = 4


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    """SH DC coefficients ``[..., 3]`` whose view-independent colour is ``rgb``."""
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(dc: torch.Tensor) -> torch.Tensor:
    """Colour ``[..., 3]`` (unclamped) of SH DC coefficients."""
    return 0.5 + SH_C0 * dc


def sh_degree_for(k: int) -> int:
    """The SH degree with ``(degree+1)^2 == k`` coefficients; ``InputError`` when ``k`` is not one."""
    d = math.isqrt(max(k, 0)) - 1
    if k < 1 or (d + 1) ** 2 != k or d > MAX_SH_DEGREE:
        raise InputError(f"{k} spherical-harmonics coefficients per Gaussian is not (degree+1)^2 for a degree 0..{MAX_SH_DEGREE}.",
                         "Give sh as [N, K, 3] with K in 1, 4, 9, 16 or 25.")
    return d


def _as_float(name: str, x: Any, device: torch.device | None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x, dtype=torch.float32, device=device)
        except (TypeError, ValueError, RuntimeError) as e:
            raise InputError(f"Gaussian {name} are not numeric ({e}).", "Pass tensors or arrays of floats.") from e
    if not x.is_floating_point():
        x = x.float()
    return x


@dataclass(frozen=True)
class Gaussians:
    """A set of 3D Gaussians in world space (storage conventions in the module docstring).

    Construction validates and raises ``InputError`` for: an empty set, mismatched counts or shapes,
    non-finite values, non-positive scales, opacities outside [0, 1], zero quaternions, or an SH
    coefficient count that is not ``(degree+1)^2``. Quaternions are normalised (``w >= 0``).
    """

    means: torch.Tensor
    scales: torch.Tensor
    rotations: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        dev = self.means.device if isinstance(self.means, torch.Tensor) else None
        means = _as_float("means", self.means, dev)
        dev = means.device
        scales = _as_float("scales", self.scales, dev)
        rots = _as_float("rotations", self.rotations, dev)
        opac = _as_float("opacities", self.opacities, dev)
        sh = _as_float("sh", self.sh, dev)
        if means.ndim != 2 or means.shape[1] != 3:
            raise InputError(f"Gaussian means have shape {tuple(means.shape)}; expected [N, 3].",
                             "Give one xyz position per Gaussian.")
        n = means.shape[0]
        if n == 0:
            raise InputError("The Gaussian set is empty (0 Gaussians).",
                             "Check the upstream node: a confidence or opacity threshold may have removed every Gaussian.")
        if opac.ndim == 2 and opac.shape[1] == 1:
            opac = opac[:, 0]  # [N, 1] is how ComfyUI and many exporters carry it
        if sh.ndim == 2 and sh.shape[1] == 3:
            sh = sh[:, None, :]  # plain DC colours [N, 3]
        for name, t, shape in (("scales", scales, (n, 3)), ("rotations", rots, (n, 4)), ("opacities", opac, (n,))):
            if tuple(t.shape) != shape:
                raise InputError(f"Gaussian {name} have shape {tuple(t.shape)} for {n} Gaussians; expected {list(shape)}.",
                                 "All Gaussian attributes must have the same count N.")
        if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3:
            raise InputError(f"Gaussian SH colours have shape {tuple(sh.shape)} for {n} Gaussians; expected [{n}, K, 3].",
                             "Give sh as [N, K, 3] (K = (degree+1)^2, DC first).")
        sh_degree_for(sh.shape[1])
        for name, t in (("means", means), ("scales", scales), ("rotations", rots), ("opacities", opac), ("sh", sh)):
            if t.device != dev:
                raise InputError(f"Gaussian {name} are on {t.device} but means are on {dev}.", "Move all attributes to one device.")
            if not bool(torch.isfinite(t.detach()).all()):
                bad = ~torch.isfinite(t.detach())
                raise InputError(f"{int(bad.reshape(n, -1).any(-1).sum())} of {n} Gaussians have NaN or infinite {name}.",
                                 "The upstream model diverged or the file is corrupt; re-run it or drop those Gaussians.")
        smin = scales.detach().min()
        if smin <= 0:
            raise InputError(f"Gaussian scales must be positive linear standard deviations; the smallest is {float(smin):.3g}.",
                             "If you have log-scales (as .ply files store them), pass scales.exp().")
        omin, omax = opac.detach().aminmax()
        if omin < 0 or omax > 1:
            raise InputError(f"Gaussian opacities must lie in [0, 1]; they span [{float(omin):.3g}, {float(omax):.3g}].",
                             "If you have logits (as .ply files store them), pass opacities.sigmoid().")
        qn = rots.detach().norm(dim=-1)
        if (qn < 1e-12).any():
            raise InputError(f"{int((qn < 1e-12).sum())} Gaussian rotations are zero quaternions.",
                             "Give unit quaternions wxyz; the identity is (1, 0, 0, 0).")
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "rotations", quat_normalize(rots))
        object.__setattr__(self, "opacities", opac)
        object.__setattr__(self, "sh", sh)

    # ------------------------------------------------------------------ properties

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def num(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return math.isqrt(self.sh.shape[1]) - 1

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def rgb(self) -> torch.Tensor:
        """View-independent colour ``[N, 3]`` from the DC term, clamped to [0, 1]."""
        return sh_dc_to_rgb(self.sh[:, 0]).clamp(0, 1)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_rgb(cls, means, scales, rotations, opacities, rgb, sh_degree: int = 0, meta=None) -> "Gaussians":
        """Gaussians with view-independent colour ``rgb [N, 3]`` in [0, 1] (higher SH bands zero)."""
        rgb = _as_float("colours", rgb, means.device if isinstance(means, torch.Tensor) else None)
        k = (sh_degree + 1) ** 2
        sh = torch.zeros(rgb.shape[0], k, 3, dtype=rgb.dtype, device=rgb.device)
        sh = torch.cat([rgb_to_sh_dc(rgb)[:, None], sh[:, 1:]], 1)
        return cls(means, scales, rotations, opacities, sh, dict(meta or {}))

    # ------------------------------------------------------------------ operations

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Gaussians":
        """The same Gaussians on ``device`` (and floating ``dtype``, if given)."""
        f = lambda t: t.to(device=device, dtype=dtype)  # noqa: E731
        return Gaussians(f(self.means), f(self.scales), f(self.rotations), f(self.opacities), f(self.sh), dict(self.meta))

    def detach(self) -> "Gaussians":
        return Gaussians(self.means.detach(), self.scales.detach(), self.rotations.detach(),
                         self.opacities.detach(), self.sh.detach(), dict(self.meta))

    def subset(self, index: torch.Tensor | slice | Sequence[int]) -> "Gaussians":
        """The Gaussians selected by a boolean mask ``[N]``, an index tensor/list, or a slice."""
        if isinstance(index, torch.Tensor) and index.dtype == torch.bool:
            if index.shape != (self.num,):
                raise InputError(f"A subset mask has shape {tuple(index.shape)}; expected [{self.num}].",
                                 "Give one boolean per Gaussian.")
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long, device=self.device)
            if index.numel() and (index.min() < -self.num or index.max() >= self.num):
                raise InputError(f"A subset index is outside 0..{self.num - 1}.", "Index existing Gaussians only.")
        index = index.to(self.device) if isinstance(index, torch.Tensor) else index
        return Gaussians(self.means[index], self.scales[index], self.rotations[index], self.opacities[index],
                         self.sh[index], dict(self.meta))

    def with_sh_degree(self, degree: int) -> "Gaussians":
        """The same Gaussians with SH cut to, or zero-padded up to, ``degree`` (zero bands are exact)."""
        k = (degree + 1) ** 2
        sh_degree_for(k)
        sh = self.sh[:, :k]
        if sh.shape[1] < k:
            sh = torch.cat([sh, sh.new_zeros(self.num, k - sh.shape[1], 3)], 1)
        return replace(self, sh=sh, meta=dict(self.meta))

    @staticmethod
    def cat(items: Sequence["Gaussians"]) -> "Gaussians":
        """One set holding all of ``items`` (in order). SH are zero-padded to the highest degree."""
        items = list(items)
        if not items:
            raise InputError("Cannot concatenate zero Gaussian sets.", "Give at least one set.")
        deg = max(g.sh_degree for g in items)
        dev = items[0].device
        items = [g.with_sh_degree(deg).to(dev) for g in items]
        return Gaussians(torch.cat([g.means for g in items]), torch.cat([g.scales for g in items]),
                         torch.cat([g.rotations for g in items]), torch.cat([g.opacities for g in items]),
                         torch.cat([g.sh for g in items]), dict(items[0].meta))

    def __repr__(self) -> str:
        return f"Gaussians(n={self.num}, sh_degree={self.sh_degree}, device={self.device})"


@dataclass(frozen=True)
class GaussianSequence:
    """4D Gaussians: one set per timestep, plus an optional static set shared by every timestep.

    Attributes:
        frames: per-timestep ``Gaussians`` (the dynamic part), ``T >= 1`` of them.
        times: ``[T]`` float64 seconds, strictly increasing (frame ``i`` of a 30 fps video is ``i/30``).
        static: Gaussians present at every timestep (background), or None.
        meta: provenance, JSON-serialisable.
    """

    frames: tuple[Gaussians, ...]
    times: torch.Tensor
    static: Gaussians | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        frames = tuple(self.frames)
        if not frames:
            raise InputError("A Gaussian sequence needs at least one timestep.", "Give one Gaussians set per timestep.")
        if not all(isinstance(f, Gaussians) for f in frames):
            raise InputError("Every timestep of a Gaussian sequence must be a Gaussians set.", "Build each with Gaussians(...).")
        times = torch.as_tensor(self.times, dtype=torch.float64).detach().cpu().reshape(-1)
        if times.shape[0] != len(frames):
            raise InputError(f"{times.shape[0]} times for {len(frames)} timesteps.", "Give one time (seconds) per timestep.")
        if not torch.isfinite(times).all() or (times[1:] <= times[:-1]).any():
            raise InputError("Sequence times must be finite and strictly increasing.",
                             "Use frame_index / fps seconds, in order.")
        if self.static is not None and not isinstance(self.static, Gaussians):
            raise InputError("The static part of a Gaussian sequence must be a Gaussians set or None.", "")
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "times", times)

    def __len__(self) -> int:
        return len(self.frames)

    def at(self, i: int) -> Gaussians:
        """Everything visible at timestep ``i``: the static set followed by that timestep's set."""
        if not -len(self) <= i < len(self):
            raise InputError(f"Timestep {i} is outside 0..{len(self) - 1}.", "Pick an existing timestep.")
        if self.static is None:
            return self.frames[i]
        return Gaussians.cat([self.static, self.frames[i]])

    @classmethod
    def from_fps(cls, frames: Sequence[Gaussians], fps: float, static: Gaussians | None = None,
                 meta: dict | None = None) -> "GaussianSequence":
        if not fps > 0:
            raise InputError(f"fps must be positive, got {fps}.", "Give the frame rate of the source video.")
        return cls(tuple(frames), torch.arange(len(frames), dtype=torch.float64) / fps, static, dict(meta or {}))

    def to(self, device) -> "GaussianSequence":
        return GaussianSequence(tuple(f.to(device) for f in self.frames), self.times,
                                None if self.static is None else self.static.to(device), dict(self.meta))
