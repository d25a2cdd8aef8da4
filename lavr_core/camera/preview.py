"""A headless picture of camera paths (and an optional point cloud) for a preview IMAGE output.

The view is an auto-fitted perspective from above and behind the cameras: world "up" is taken
from the cameras themselves (the mean of their image-up axes), so it works whatever world frame
the trajectory came in. Drawn with Pillow's ImageDraw plus a numpy z-buffered point splat; no
matplotlib, no GPU, fast enough to run on every node execution (well under 0.2 s for 2048 frames
and 50k points at 512 x 512).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError
from .trajectory import CameraTrajectory

BACKGROUND = (22, 23, 27)
TARGET_COLOR = (255, 150, 40)
TARGET_FIRST_COLOR = (255, 232, 160)
SOURCE_COLOR = (70, 145, 255)
SOURCE_FIRST_COLOR = (175, 215, 255)
POINT_DEFAULT_COLOR = (170, 170, 170)

_ELEVATION_DEG = 50.0  # how far the virtual camera looks down: "top-down-ish" but still shows height
_FRUSTUMS_PER_PATH = 12
_MAX_FIT_POINTS = 20000  # points sampled to estimate the cloud's robust extent


def _as_points(points) -> tuple[np.ndarray, np.ndarray] | None:
    """``(xyz [N,3], rgb [N,3] in [0,1] or None)`` or an object with ``xyz``/``rgb`` -> finite float arrays."""
    if points is None:
        return None
    if hasattr(points, "xyz"):
        xyz, rgb = points.xyz, getattr(points, "rgb", None)
    elif isinstance(points, (tuple, list)) and len(points) == 2:
        xyz, rgb = points
    else:
        raise InputError("Preview points must be a pair (xyz [N, 3], rgb [N, 3]).",
                         "Pass the point cloud's positions and colours, or None for no points.")
    xyz = np.asarray(xyz.detach().cpu() if isinstance(xyz, torch.Tensor) else xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise InputError(f"Preview points have shape {xyz.shape}; expected [N, 3].", "Pass one xyz row per point.")
    if rgb is None:
        rgb = np.tile(np.asarray(POINT_DEFAULT_COLOR, np.uint8), (len(xyz), 1))
    else:
        rgb = np.asarray(rgb.detach().float().cpu() if isinstance(rgb, torch.Tensor) else rgb, dtype=np.float64)
        if rgb.shape != xyz.shape:
            raise InputError(f"Point colours have shape {rgb.shape} for {len(xyz)} points.",
                             "Give one RGB row in [0, 1] per point.")
        rgb = (np.clip(np.nan_to_num(rgb), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    keep = np.isfinite(xyz).all(1)
    return xyz[keep], rgb[keep]


def _check_size(size) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
        ok = all(float(v) == int(v) for v in size) and 32 <= w <= 8192 and 32 <= h <= 8192
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"Preview size {size!r} is not a (width, height) pair of 32..8192 pixels.",
                         "Use e.g. (512, 512).")
    return w, h


def _frame_picks(n: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, n - 1, min(n, _FRUSTUMS_PER_PATH))).astype(np.int64))


def _frustum_lines(c2w: np.ndarray, K: np.ndarray, width: int, height: int, scale: float) -> np.ndarray:
    """World-space corner points ``[n, 5, 3]`` (apex then image corners TL, TR, BR, BL at depth ``scale``)."""
    px = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], np.float64)
    cam = np.einsum("nij,kj->nki", np.linalg.inv(K), px) * scale  # z = 1 rays scaled to depth `scale`
    world = np.einsum("nij,nkj->nki", c2w[:, :3, :3], cam) + c2w[:, None, :3, 3]
    return np.concatenate([c2w[:, None, :3, 3], world], 1)


class _View:
    """A virtual pinhole looking at the scene, plus the 2D fit of the projection into the image.

    Everything is derived from the cameras and points themselves in a frame built from them (up,
    mean horizontal forward), so moving, rotating or scaling the whole world leaves the picture as is.
    """

    def __init__(self, c2ws: list[np.ndarray], points: np.ndarray | None, img_w: int, img_h: int):
        rots = np.concatenate([c[:, :3, :3] for c in c2ws])
        up = -rots[:, :, 1].mean(0)  # OpenCV image-up is -y
        up = up / np.linalg.norm(up) if np.linalg.norm(up) > 1e-6 else np.array([0.0, -1.0, 0.0])
        fwd = rots[:, :, 2].mean(0)
        fwd = fwd - fwd.dot(up) * up
        if np.linalg.norm(fwd) < 1e-6:  # cameras look straight along up or cancel out: any horizontal
            fwd = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 0.0, 1.0])
        fwd /= np.linalg.norm(fwd)
        basis = np.stack([np.cross(-up, fwd), up, fwd], 1)  # right, up, forward (orthonormal)
        centres = np.concatenate([c[:, :3, 3] for c in c2ws]) @ basis
        lo, hi = centres.min(0), centres.max(0)
        self.path_extent = float(np.linalg.norm(hi - lo))
        if points is not None and len(points):
            # Robust extent: a few stray points far away must not shrink the scene to a dot.
            plo, phi = np.quantile(points @ basis, [0.02, 0.98], axis=0)
            lo, hi = np.minimum(lo, plo), np.maximum(hi, phi)
        self.center = basis @ ((lo + hi) / 2)
        self.radius = float(np.linalg.norm(hi - lo)) / 2
        if self.radius < 1e-9:  # one still camera and no points: nothing has a size, pick 1 unit
            self.radius = 1.0
        # The 8 corners of the (robust) scene box, for fitting the picture.
        corners = np.stack(np.meshgrid(*zip(lo, hi), indexing="ij"), -1).reshape(-1, 3)
        self.box = corners @ basis.T
        el = math.radians(_ELEVATION_DEG)
        view = math.cos(el) * fwd - math.sin(el) * up
        self.eye = self.center - 3.0 * self.radius * view
        z = view
        x = np.cross(-up, z)
        x /= np.linalg.norm(x)
        self.R = np.stack([x, np.cross(z, x), z], 1)  # columns = virtual camera axes (OpenCV)
        self.img_w, self.img_h = img_w, img_h
        self.scale, self.offset = 1.0, np.zeros(2)

    def camera(self, p: np.ndarray) -> np.ndarray:
        return (p - self.eye) @ self.R

    def fit(self, p: np.ndarray, margin: float):
        uv = self._normalized(p)
        lo, hi = uv.min(0), uv.max(0)
        span = np.maximum(hi - lo, 1e-9)
        self.scale = min((self.img_w - 2 * margin) / span[0], (self.img_h - 2 * margin) / span[1])
        self.offset = np.array([self.img_w, self.img_h]) / 2 - self.scale * (lo + hi) / 2

    def _normalized(self, p: np.ndarray) -> np.ndarray:
        c = self.camera(p)
        return c[:, :2] / np.maximum(c[:, 2:], 1e-9 * self.radius)

    def project(self, p: np.ndarray) -> np.ndarray:
        """Image coordinates ``[M, 2]`` (x right, y down) of world points ``[M, 3]``."""
        return self._normalized(p) * self.scale + self.offset


def _splat_points(canvas: np.ndarray, view: _View, xyz: np.ndarray, rgb: np.ndarray, dot: int):
    """Draw points as ``dot`` x ``dot`` squares, the nearest point winning each pixel (deterministic)."""
    cam = view.camera(xyz)
    front = cam[:, 2] > 0.05 * view.radius
    xyz, rgb, depth = xyz[front], rgb[front], cam[front, 2]
    n = len(xyz)
    if not n:
        return
    rank = np.empty(n, np.int64)
    rank[np.argsort(depth, kind="stable")] = np.arange(n)  # 0 = nearest
    ij = np.floor(view.project(xyz)).astype(np.int64)
    H, W = canvas.shape[:2]
    offs = np.array([(dx, dy) for dy in range(dot) for dx in range(dot)], np.int64) - dot // 2
    ij = (ij[:, None, :] + offs[None]).reshape(-1, 2)
    src = np.repeat(np.arange(n), len(offs))
    inside = (ij[:, 0] >= 0) & (ij[:, 0] < W) & (ij[:, 1] >= 0) & (ij[:, 1] < H)
    lin, src = ij[inside, 1] * W + ij[inside, 0], src[inside]
    if not len(lin):
        return
    key = np.sort(lin * n + rank[src])  # grouped by pixel, nearest first within a pixel
    pix = key // n
    first = np.ones(len(key), bool)
    first[1:] = pix[1:] != pix[:-1]
    by_rank = np.empty(n, np.int64)
    by_rank[rank] = np.arange(n)
    canvas.reshape(-1, 3)[pix[first]] = rgb[by_rank[key[first] % n]]


def _font(px: int):
    try:
        return ImageFont.load_default(size=px)  # Pillow >= 10.1 with FreeType: scalable
    except (TypeError, OSError, AttributeError):
        return ImageFont.load_default()


def _draw_path(draw: ImageDraw.ImageDraw, view: _View, traj_np, color, first_color, lw: int):
    c2w, K, width, height, frusta = traj_np
    centres = view.project(c2w[:, :3, 3])
    for k, f in enumerate(frusta):
        q = view.project(f)
        first = k == 0
        col, w = (first_color, lw + 1) if first else (color, max(1, lw - 1))
        for c in range(1, 5):
            draw.line([tuple(q[0]), tuple(q[c])], fill=col, width=w)
        draw.line([tuple(q[c]) for c in (1, 2, 3, 4, 1)], fill=col, width=w)
        draw.line([tuple(q[1]), tuple(q[2])], fill=col, width=w + 1)  # top edge: shows which way is up
    if len(centres) > 1:
        draw.line([tuple(p) for p in centres], fill=color, width=lw, joint="curve")
    r = lw + 3
    x, y = centres[0]
    draw.ellipse([x - r, y - r, x + r, y + r], fill=first_color, outline=(0, 0, 0))


def render_trajectory_preview(target: CameraTrajectory, source: CameraTrajectory | None = None,
                              points=None, size: tuple[int, int] = (512, 512)) -> torch.Tensor:
    """Picture of the target (orange) and optional source (blue) camera paths and point cloud.

    Args:
        target: the new camera path.
        source: the original video's path, or None.
        points: ``(xyz [N, 3], rgb [N, 3] in [0, 1])`` (torch or numpy; ``rgb`` may be None), an
            object with ``xyz`` and ``rgb`` attributes, or None. Non-finite points are skipped.
        size: ``(width, height)`` of the picture in pixels.

    Returns:
        ComfyUI IMAGE ``[1, height, width, 3]`` float32 in [0, 1]. Paths are polylines through the
        camera centres with a frustum every few frames (the top edge drawn thicker); the first
        frame's frustum and centre are highlighted; points are z-buffered dots; a legend sits top-left.
    """
    if not isinstance(target, CameraTrajectory) or not (source is None or isinstance(source, CameraTrajectory)):
        raise InputError("The trajectory preview needs CameraTrajectory values.",
                         "Connect a LAVR camera trajectory to the preview.")
    W, H = _check_size(size)
    pts = _as_points(points)
    trajs = [(t, c, fc, name) for t, c, fc, name in
             ((source, SOURCE_COLOR, SOURCE_FIRST_COLOR, "source"), (target, TARGET_COLOR, TARGET_FIRST_COLOR, "target"))
             if t is not None]
    c2ws = [t.c2w.numpy() for t, *_ in trajs]
    sample = None
    if pts is not None and len(pts[0]):
        sample = pts[0]
        if len(sample) > _MAX_FIT_POINTS:
            sample = sample[np.random.default_rng(0).choice(len(sample), _MAX_FIT_POINTS, replace=False)]
    view = _View(c2ws, sample, W, H)
    # Frustums scale with the path (or with the scene for a camera that stays put).
    moving = view.path_extent > 1e-6 * view.radius
    frustum_size = 0.08 * view.path_extent if moving else 0.15 * view.radius
    if sample is not None:
        frustum_size = max(frustum_size, 0.04 * view.radius)
    drawn = []
    for (t, *_), c2w in zip(trajs, c2ws):
        picks = _frame_picks(len(t))
        frusta = _frustum_lines(c2w[picks], t.K.numpy()[picks], t.width, t.height, frustum_size)
        drawn.append((c2w, t.K.numpy(), t.width, t.height, frusta))
    view.fit(np.concatenate([view.box] + [d[4].reshape(-1, 3) for d in drawn]), margin=0.06 * min(W, H))

    canvas = np.empty((H, W, 3), np.uint8)
    canvas[:] = BACKGROUND
    if pts is not None and len(pts[0]):
        _splat_points(canvas, view, pts[0], pts[1], dot=max(1, round(min(W, H) / 300)))
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    lw = max(1, round(min(W, H) / 256))
    for (t, color, first_color, _), d in zip(trajs, drawn):
        _draw_path(draw, view, d, color, first_color, lw)

    font = _font(max(10, min(W, H) // 40))
    def frames(t):
        return f"{len(t)} frame{'s' if len(t) != 1 else ''}"
    lines = [(TARGET_COLOR, f"target path ({frames(target)})")]
    if source is not None:
        lines.append((SOURCE_COLOR, f"source path ({frames(source)})"))
    lines.append((TARGET_FIRST_COLOR, "first frame"))
    if pts is not None:
        lines.append((POINT_DEFAULT_COLOR, f"points ({len(pts[0])})"))
    row = max(12, font.getbbox("Ag")[3] + 4)
    sw = 2 * row
    box_w = sw + 12 + max(int(draw.textlength(s, font=font)) for _, s in lines) + 8
    draw.rectangle([4, 4, 4 + box_w, 8 + row * len(lines)], fill=(10, 10, 12), outline=(90, 90, 96))
    for k, (col, text) in enumerate(lines):
        y = 6 + k * row + row // 2
        draw.line([(10, y), (10 + sw, y)], fill=col, width=max(2, lw))
        top, bottom = font.getbbox(text)[1::2]  # no anchors: bitmap fonts (no FreeType) lack them
        draw.text((16 + sw, y - (top + bottom) / 2), text, fill=(230, 230, 230), font=font)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]
