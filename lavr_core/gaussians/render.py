"""Render Gaussians to images: gsplat's CUDA rasterizer when it is there, a pure-torch one otherwise.

Both follow the 3D Gaussian Splatting image formation:

1. **Projection (EWA).** World covariance ``Sigma = R S S^T R^T``; in camera space
   ``Sigma_c = W Sigma W^T`` (``W`` = world-to-camera rotation); on the image
   ``Sigma_2d = J Sigma_c J^T + 0.3 I`` where ``J`` is the Jacobian of the pinhole projection at the
   mean. The ``0.3 I`` low-pass term keeps every splat at least about a pixel wide. ``J`` is evaluated
   at the mean pulled back into a frustum 1.3x the field of view (measured from the principal point),
   because the linearisation is meaningless far outside the image.
2. **Extent.** A Gaussian matters where ``alpha >= 1/255``; with opacity <= 1 that is inside
   ``sqrt(2 ln 255) = 3.33`` standard deviations, so each splat covers the axis-aligned box of
   half-size ``ceil(3.33 sqrt(Sigma_2d[ii]))`` pixels around its projected mean (its ``radii``).
   Gaussians nearer than ``near``, farther than ``far`` or with the box off-screen are skipped.
3. **Compositing.** Per pixel (centre at ``+0.5``), Gaussians front to back by camera-space depth:
   ``alpha_i = min(0.99, o_i exp(-0.5 d^T Sigma_2d^-1 d))``, skipped when below 1/255;
   ``C = sum_i c_i alpha_i T_i`` with ``T_i = prod_{j<i} (1 - alpha_j)``; a pixel stops once the next
   ``T`` would fall to 1e-4 or below. Colours are the SH evaluated along camera-centre -> mean, +0.5,
   clamped at 0. Output alpha is ``sum_i alpha_i T_i``; depth is the alpha-normalised expected depth.

The torch renderer works tile by tile (16 x 16 pixels) on padded batches of at most ``max_elements``
(Gaussian x pixel) pairs, so memory stays bounded for any scene size, and it is differentiable with
respect to every Gaussian attribute (plain autograd), so training can use it on any device.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from ..camera.transforms import invert_pose, quat_to_matrix
from ..errors import InputError
from .sh import eval_sh
from .types import Gaussians

log = logging.getLogger(__name__)

EPS2D = 0.3                  # low-pass dilation of 2D covariances (pixels^2)
RADIUS_SIGMAS = 3.33         # >= sqrt(2 ln 255): beyond it alpha < 1/255 for any opacity <= 1
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4
FRUSTUM_MARGIN = 0.3         # Jacobian clamp: 30 % of the half field of view beyond each image edge
BACKENDS = ("auto", "torch", "gsplat")


# ------------------------------------------------------------------------------------- projection

def covariance_3d(scales: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """World covariances ``[N, 3, 3]`` from linear ``scales [N, 3]`` and quaternions ``[N, 4]`` (wxyz)."""
    M = quat_to_matrix(rotations) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


@dataclass
class Projection:
    """Per-view image-space Gaussians. Shapes ``[V, N, ...]``.

    means2d ``[V, N, 2]`` pixels; covars2d ``[V, N, 2, 2]`` including the 0.3 dilation; conics
    ``[V, N, 3]`` = ``(a, b, c)`` of ``inverse(covars2d) = [[a, b], [b, c]]``; depths ``[V, N]``
    camera-space z; radii ``[V, N, 2]`` int32 half-sizes in pixels, 0 for culled Gaussians.
    """

    means2d: torch.Tensor
    covars2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    radii: torch.Tensor
    means_cam: torch.Tensor


def project(means: torch.Tensor, covars: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor, width: int, height: int,
            near: float = 0.01, far: float = 1e10, eps2d: float = EPS2D) -> Projection:
    """EWA-project world Gaussians ``means [N, 3]``, ``covars [N, 3, 3]`` into ``V`` pinhole views.

    ``w2c [V, 4, 4]`` world-to-camera (OpenCV axes), ``K [V, 3, 3]`` in pixels.
    """
    R, t = w2c[:, None, :3, :3], w2c[:, None, :3, 3]
    mc = (R @ means[None, :, :, None])[..., 0] + t                      # [V, N, 3]
    cc = R @ covars[None] @ R.transpose(-1, -2)                          # [V, N, 3, 3]
    x, y, z = mc.unbind(-1)
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
    mx, my = FRUSTUM_MARGIN * 0.5 * width / fx, FRUSTUM_MARGIN * 0.5 * height / fy
    u = torch.minimum(torch.maximum(x / z, -(cx / fx + mx)), (width - cx) / fx + mx)
    v = torch.minimum(torch.maximum(y / z, -(cy / fy + my)), (height - cy) / fy + my)
    zero = torch.zeros_like(z)
    J = torch.stack([fx / z, zero, -fx * u / z, zero, fy / z, -fy * v / z], -1).reshape(*z.shape, 2, 3)
    cov2d = J @ cc @ J.transpose(-1, -2) + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    a, b, c = cov2d[..., 0, 0], 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]), cov2d[..., 1, 1]
    det = (a * c - b * b).clamp_min(1e-10)
    conics = torch.stack([c / det, -b / det, a / det], -1)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], -1)
    with torch.no_grad():
        radii = torch.ceil(RADIUS_SIGMAS * torch.stack([a, c], -1).clamp_min(0).sqrt())
        ok = (a * c - b * b > 0) & (z > near) & (z < far)
        m2 = means2d.detach()
        ok &= (m2[..., 0] + radii[..., 0] > 0) & (m2[..., 0] - radii[..., 0] < width)
        ok &= (m2[..., 1] + radii[..., 1] > 0) & (m2[..., 1] - radii[..., 1] < height)
        radii = torch.where(ok[..., None], radii, torch.zeros_like(radii)).to(torch.int32)
    return Projection(means2d, cov2d, conics, z, radii, mc)


# ------------------------------------------------------------------------------------- torch rasterizer

def _pixel_offsets(tile: int, device, dtype) -> torch.Tensor:
    r = torch.arange(tile, device=device, dtype=dtype) + 0.5
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)  # [P, 2] pixel centres within a tile


def _composite_segment(means2d, conics, opac, feats, g, valid, pix, T, done):
    """Front-to-back compositing of the Gaussians ``g [B, L]`` (depth order) over tile pixels ``pix [B, P, 2]``.

    ``T``/``done`` ``[B, P]`` carry the transmittance and the stopped flag from earlier segments.
    Returns the weighted features ``[B, P, C]`` added by this segment and the updated ``T``, ``done``.
    """
    d = pix[:, None, :, :] - means2d[g][:, :, None, :]                        # [B, L, P, 2]
    cn = conics[g][:, :, None, :]
    sigma = 0.5 * (cn[..., 0] * d[..., 0] ** 2 + cn[..., 2] * d[..., 1] ** 2) + cn[..., 1] * d[..., 0] * d[..., 1]
    alpha = (opac[g][:, :, None] * torch.exp(-sigma)).clamp(max=ALPHA_MAX)
    keep = valid[:, :, None] & (alpha >= ALPHA_MIN) & (sigma >= 0)
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    t_incl = T[:, None, :] * torch.cumprod(1 - alpha, dim=1)                  # T after each Gaussian
    t_excl = torch.cat([T[:, None, :], t_incl[:, :-1]], 1)                   # T before it
    # A pixel stops at the first Gaussian that would take T to <= 1e-4 (that one is not drawn);
    # t_incl only falls along L, so "stopped" is monotone and one mask covers all later ones.
    stopped = (t_incl <= T_MIN) | done[:, None, :]
    w = alpha * t_excl * ~stopped
    add = torch.bmm(w.transpose(1, 2), feats[g])                              # [B, P, C]
    any_stop = stopped.any(1)
    first = stopped.to(torch.uint8).argmax(1, keepdim=True)
    T = torch.where(any_stop, torch.gather(t_excl, 1, first)[:, 0], t_incl[:, -1])
    return add, T, done | any_stop


def _rasterize_view(means2d, conics, opac, colors, depths, radii, width, height, tile, max_elements):
    """Composite one view. Inputs ``[N, ...]`` for that view; returns (rgb [H,W,3], alpha [H,W,1], depth_acc [H,W,1])."""
    device, dtype = means2d.device, means2d.dtype
    tx, ty = math.ceil(width / tile), math.ceil(height / tile)
    P = tile * tile
    feats = torch.cat([colors, depths[:, None]], -1)  # composite colour and depth together
    C = feats.shape[-1]
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (means2d, conics, opac, feats))
    with torch.no_grad():
        vis = (radii > 0).all(-1).nonzero()[:, 0]
        vis = vis[torch.argsort(depths.detach()[vis], stable=True)]          # front to back
        m = means2d.detach()[vis]
        r = radii[vis].to(dtype)
        x0 = ((m[:, 0] - r[:, 0]) / tile).floor().clamp(0, tx - 1).long()
        x1 = ((m[:, 0] + r[:, 0]) / tile).floor().clamp(0, tx - 1).long()
        y0 = ((m[:, 1] - r[:, 1]) / tile).floor().clamp(0, ty - 1).long()
        y1 = ((m[:, 1] + r[:, 1]) / tile).floor().clamp(0, ty - 1).long()
        nx, ny = x1 - x0 + 1, y1 - y0 + 1
        per = nx * ny
        gid = torch.repeat_interleave(vis, per)                             # Gaussian of each (tile, Gaussian) pair
        first = torch.repeat_interleave(torch.cumsum(per, 0) - per, per)
        k = torch.arange(gid.shape[0], device=device) - first              # pair's rank within its Gaussian's box
        rep = lambda t: torch.repeat_interleave(t, per)                     # noqa: E731
        tid = (rep(y0) + k // rep(nx)) * tx + rep(x0) + k % rep(nx)
        tid, order = torch.sort(tid, stable=True)                          # stable: depth order kept per tile
        gid = gid[order]
        counts = torch.bincount(tid, minlength=tx * ty)
        offsets = torch.cumsum(counts, 0) - counts
        active = counts.nonzero()[:, 0]
        active = active[torch.argsort(counts[active], descending=True, stable=True)]
        counts_l = counts[active].tolist()
        offs = _pixel_offsets(tile, device, dtype)
    tile_ids, tile_vals = [], []
    i = 0
    while i < len(active):
        m_max = counts_l[i]
        seg = max(1, min(m_max, max_elements // P))
        b = max(1, max_elements // (seg * P))
        tl = active[i:i + b]
        i += b
        with torch.no_grad():
            origin = torch.stack([(tl % tx), (tl // tx)], -1).to(dtype) * tile
            pix = origin[:, None, :] + offs[None]                             # [B, P, 2]
            cnt, off = counts[tl], offsets[tl]
        T = torch.ones(tl.shape[0], P, dtype=dtype, device=device)
        done = torch.zeros(tl.shape[0], P, dtype=torch.bool, device=device)
        acc = torch.zeros(tl.shape[0], P, C, dtype=dtype, device=device)
        for s in range(0, m_max, seg):
            with torch.no_grad():
                j = torch.arange(s, min(s + seg, m_max), device=device)
                valid = j[None, :] < cnt[:, None]                              # [B, L]
                g = gid[(off[:, None] + j[None, :]).clamp(max=gid.shape[0] - 1)]
            args = (means2d, conics, opac, feats, g, valid, pix, T, done)
            if grad:  # recompute the [B, L, P] intermediates in backward instead of keeping them all
                add, T, done = checkpoint(_composite_segment, *args, use_reentrant=False)
            else:
                add, T, done = _composite_segment(*args)
            acc = acc + add
        tile_ids.append(tl)
        tile_vals.append(torch.cat([acc, (1 - T)[..., None]], -1))
    out = torch.zeros(tx * ty, P, C + 1, dtype=dtype, device=device)
    if tile_ids:
        out = out.index_copy(0, torch.cat(tile_ids), torch.cat(tile_vals))
    img = out.reshape(ty, tx, tile, tile, C + 1).permute(0, 2, 1, 3, 4).reshape(ty * tile, tx * tile, C + 1)
    img = img[:height, :width]
    return img[..., :3], img[..., C:C + 1], img[..., 3:4]


def _render_torch(g: Gaussians, w2c, K, width, height, near, far, sh_degree, tile, max_elements):
    cov = covariance_3d(g.scales, g.rotations)
    proj = project(g.means, cov, w2c, K, width, height, near, far)
    centres = invert_pose(w2c)[:, :3, 3]
    rgbs, alphas, depths = [], [], []
    for v in range(w2c.shape[0]):
        dirs = torch.nn.functional.normalize(g.means - centres[v], dim=-1)
        colors = (eval_sh(g.sh, dirs, sh_degree) + 0.5).clamp_min(0)
        rgb, a, dacc = _rasterize_view(proj.means2d[v], proj.conics[v], g.opacities, colors, proj.depths[v],
                                       proj.radii[v], width, height, tile, max_elements)
        rgbs.append(rgb)
        alphas.append(a)
        depths.append(dacc)
    return torch.stack(rgbs), torch.stack(alphas), torch.stack(depths)


# ------------------------------------------------------------------------------------- gsplat backend

_GSPLAT_BROKEN: list[str] = []  # set once gsplat failed at run time; "auto" then stays on torch


@functools.lru_cache(maxsize=1)
def _gsplat_importable() -> bool:
    try:
        import gsplat  # noqa: F401
    except Exception as e:  # noqa: BLE001 - a broken optional install must not break rendering
        log.info("gsplat not usable (%s); using the torch renderer", e)
        return False
    return True


def gsplat_available() -> bool:
    """Whether ``gsplat`` imports, has not failed before, and a CUDA device exists (it cannot rasterize on CPU)."""
    return torch.cuda.is_available() and not _GSPLAT_BROKEN and _gsplat_importable()


def _render_gsplat(g: Gaussians, w2c, K, width, height, near, far, sh_degree):
    from gsplat import rasterization

    colors, alphas, _ = rasterization(
        g.means, g.rotations, g.scales, g.opacities, g.sh, w2c, K, width, height,
        near_plane=near, far_plane=far, eps2d=EPS2D, sh_degree=sh_degree, render_mode="RGB+D",
        rasterize_mode="classic", packed=False)
    return colors[..., :3], alphas, colors[..., 3:4]


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The backend ``render`` will use for Gaussians on ``device``: ``"gsplat"`` or ``"torch"``."""
    if backend not in BACKENDS:
        raise InputError(f"Unknown render backend {backend!r}.", f"Use one of {', '.join(BACKENDS)}.")
    cuda = torch.device(device).type == "cuda"
    if backend == "gsplat":
        if not (cuda and gsplat_available()):
            raise InputError("The gsplat backend needs the optional gsplat package and Gaussians on a CUDA device.",
                             "pip install gsplat on a CUDA machine, or use backend='torch' (works everywhere).")
        return "gsplat"
    if backend == "auto" and cuda and gsplat_available():
        return "gsplat"
    return "torch"


# ------------------------------------------------------------------------------------- entry point

def _views(c2w, K, width, height, device, dtype):
    c2w = torch.as_tensor(c2w, dtype=dtype, device=device)
    K = torch.as_tensor(K, dtype=dtype, device=device)
    if c2w.ndim == 2:
        c2w = c2w[None]
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise InputError(f"Camera poses have shape {tuple(c2w.shape)}; expected [V, 4, 4] camera-to-world.",
                         "Pass the trajectory's c2w matrices.")
    if K.ndim == 2:
        K = K[None].expand(c2w.shape[0], 3, 3)
    if K.shape != (c2w.shape[0], 3, 3):
        raise InputError(f"Intrinsics have shape {tuple(K.shape)} for {c2w.shape[0]} views; expected [V, 3, 3].",
                         "Give one 3x3 K (pixels) per view, or one shared.")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise InputError(f"Render size {width}x{height} is not a positive integer size.", "Give width and height in pixels.")
    if not (torch.isfinite(c2w).all() and torch.isfinite(K).all()) or (K[:, 0, 0] <= 0).any() or (K[:, 1, 1] <= 0).any():
        raise InputError("Camera poses or intrinsics contain NaN/inf or non-positive focal lengths.",
                         "Check the camera trajectory.")
    return c2w, K.contiguous()


def _background(background, v, device, dtype):
    if background is None:
        return torch.zeros(v, 3, dtype=dtype, device=device)
    bg = torch.as_tensor(background, dtype=dtype, device=device)
    if bg.ndim == 0:
        bg = bg.expand(3)
    if bg.shape == (3,):
        bg = bg[None].expand(v, 3)
    if bg.shape != (v, 3):
        raise InputError(f"Background has shape {tuple(bg.shape)}; expected a number, [3] or [{v}, 3].",
                         "Give an RGB colour in [0, 1].")
    return bg


def render(gaussians: Gaussians, c2w: torch.Tensor, K: torch.Tensor, width: int, height: int,
           background=None, backend: str = "auto", *, near: float = 0.01, far: float = 1e10,
           sh_degree: int | None = None, tile_size: int = 16, max_elements: int = 1 << 18):
    """Render ``gaussians`` from ``V`` pinhole cameras.

    Args:
        gaussians: the scene (its device decides where rendering runs).
        c2w: ``[V, 4, 4]`` (or ``[4, 4]``) camera-to-world poses, OpenCV axes, same world as the Gaussians.
        K: ``[V, 3, 3]`` (or ``[3, 3]``) intrinsics in pixels of a ``width`` x ``height`` image.
        background: RGB in [0, 1] behind the splats: None (black), a number, ``[3]`` or ``[V, 3]``.
        backend: ``"auto"`` (gsplat on CUDA when installed, else torch), ``"torch"`` or ``"gsplat"``.
        sh_degree: SH bands to use (default: all the Gaussians have).
        tile_size, max_elements: torch backend only -- tile edge in pixels and the largest
            (Gaussian x pixel) batch evaluated at once, which bounds memory (about 40 bytes each).

    Returns:
        ``rgb [V, H, W, 3]`` (background composited), ``alpha [V, H, W, 1]`` and ``depth [V, H, W, 1]``
        (expected camera-space z of the splats, ``sum w_i z_i / alpha``; 0 where nothing was hit).
    """
    if not isinstance(gaussians, Gaussians):
        raise InputError(f"render() needs Gaussians, got {type(gaussians).__name__}.", "Convert it to Gaussians first.")
    g = gaussians
    dev, dtype = g.device, g.means.dtype
    c2w, K = _views(c2w, K, width, height, dev, dtype)
    deg = g.sh_degree if sh_degree is None else int(sh_degree)
    if not 0 <= deg <= g.sh_degree:
        raise InputError(f"sh_degree {deg} is outside 0..{g.sh_degree} (the Gaussians' degree).", "Lower sh_degree.")
    bg = _background(background, c2w.shape[0], dev, dtype)
    w2c = invert_pose(c2w)
    out = None
    if resolve_backend(backend, dev) == "gsplat":
        try:
            out = _render_gsplat(g, w2c, K, width, height, near, far, deg)
        except Exception as e:  # noqa: BLE001 - e.g. its CUDA kernels failed to build on this machine
            if backend == "gsplat":
                raise InputError(f"gsplat failed to render ({type(e).__name__}: {e}).",
                                 "Fix the gsplat install (it compiles CUDA kernels on first use) or use backend='torch'.") from e
            log.warning("gsplat failed (%s: %s); rendering with the torch backend from now on", type(e).__name__, e)
            _GSPLAT_BROKEN.append(str(e))
    if out is None:
        out = _render_torch(g, w2c, K, width, height, near, far, deg, tile_size, max_elements)
    rgb, alpha, dacc = out
    depth = dacc / alpha.clamp_min(1e-10)
    rgb = rgb + (1 - alpha) * bg[:, None, None, :]
    return rgb, alpha, depth
