"""Fake synchronized multi-view videos from ordinary videos (4Real-Video-V2's data trick).

A V x F grid of frames (views x video frames) is made from one video by warping every frame with one
random **homography per view** (view 0 keeps the identity): each row is then the same motion seen
through a different, fixed "camera", so the rows are synchronized and the columns are
freeze-time sweeps. A second source, **static-scene duplication**, repeats one image over time before
warping, giving a grid whose rows are still and whose columns carry all the variation (the same
regime as multi-view captures of static scenes).

Homographies come from moving the image corners (the 4-point parameterisation): each corner moves
by up to ``strength`` of the image size; pixels outside the source are filled by reflection so that
no black borders teach the model to paint them.

Also here: a procedural video generator (moving, rotating coloured shapes on a textured, drifting
background) for CPU smoke runs and tests, and a loader for folders of frame images.

Shapes: videos ``[F, 3, H, W]`` float in [0, 1]; grids ``[V, F, 3, H, W]``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def homography_from_corners(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The 3x3 ``H`` (float64, ``H[2,2] = 1``) with ``dst ~ H src`` for 4 point pairs ``[4, 2]`` (DLT)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src.tolist(), dst.tolist()):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = torch.linalg.solve(torch.tensor(rows, dtype=torch.float64), torch.tensor(rhs, dtype=torch.float64))
    return torch.cat([h, torch.ones(1, dtype=torch.float64)]).reshape(3, 3)


def random_homography(strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random homography of the normalised square ``[-1, 1]^2``: corners moved by up to ``2*strength``."""
    if not 0.0 <= strength < 0.5:
        raise InputError(f"Homography strength {strength} must be in [0, 0.5).", "Use about 0.1-0.2.")
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    offsets = (torch.rand(4, 2, generator=generator, dtype=torch.float64) * 2 - 1) * 2 * strength
    return homography_from_corners(corners, corners + offsets)


def warp(frames: torch.Tensor, homography: torch.Tensor) -> torch.Tensor:
    """Warp ``[N, 3, H, W]`` so that output pixel ``p`` shows input pixel ``H^-1 p`` (normalised coords)."""
    n, _, h, w = frames.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, dtype=torch.float64),
                            torch.linspace(-1, 1, w, dtype=torch.float64), indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(-1, 3)
    src = pts @ torch.linalg.inv(homography).T
    src = (src[:, :2] / src[:, 2:3]).reshape(1, h, w, 2).to(frames.dtype).expand(n, h, w, 2)
    return F.grid_sample(frames, src, mode="bilinear", padding_mode="reflection", align_corners=True)


def synchronized_views(video: torch.Tensor, views: int, strength: float = 0.15,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``[F, 3, H, W]`` -> ``[V, F, 3, H, W]``: view 0 the video itself, views 1.. each one fixed homography."""
    if video.ndim != 4 or video.shape[1] != 3:
        raise InputError(f"A video must be [frames, 3, height, width]; got {tuple(video.shape)}.", "Pass RGB frames.")
    rows = [video]
    for _ in range(views - 1):
        rows.append(warp(video, random_homography(strength, generator)))
    return torch.stack(rows)


def static_scene(image: torch.Tensor, views: int, frames: int, strength: float = 0.15,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """One image ``[3, H, W]`` duplicated over ``frames`` time steps, then warped per view."""
    return synchronized_views(image[None].expand(frames, *image.shape).contiguous(), views, strength, generator)


def procedural_video(frames: int, height: int, width: int, generator: torch.Generator | None = None,
                     shapes: int = 3) -> torch.Tensor:
    """A random ``[F, 3, H, W]`` clip: coloured discs/squares moving on a drifting sinusoidal texture."""
    g = generator
    ys, xs = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    freq = 2 + 6 * torch.rand(2, generator=g)
    phase = 2 * math.pi * torch.rand(2, generator=g)
    drift = 0.05 * (torch.rand(2, generator=g) * 2 - 1)
    base = torch.rand(3, generator=g) * 0.5 + 0.25
    pos = torch.rand(shapes, 2, generator=g) * 0.6 + 0.2
    vel = (torch.rand(shapes, 2, generator=g) * 2 - 1) * 0.04
    radius = torch.rand(shapes, generator=g) * 0.12 + 0.08
    colour = torch.rand(shapes, 3, generator=g)
    square = torch.rand(shapes, generator=g) < 0.5
    out = []
    for f in range(frames):
        tex = 0.5 + 0.25 * torch.sin(2 * math.pi * freq[0] * (xs + drift[0] * f) + phase[0]) \
            * torch.cos(2 * math.pi * freq[1] * (ys + drift[1] * f) + phase[1])
        img = base[:, None, None] * (0.6 + 0.8 * tex)[None]
        for s in range(shapes):
            cx, cy = (pos[s] + vel[s] * f).tolist()
            dx, dy = xs - cx, ys - cy
            inside = (dx.abs().maximum(dy.abs()) if square[s] else (dx * dx + dy * dy).sqrt()) < radius[s]
            img = torch.where(inside[None], colour[s][:, None, None], img)
        out.append(img.clamp(0, 1))
    return torch.stack(out)


def load_frame_folder(folder: str | Path, frames: int, height: int, width: int) -> torch.Tensor:
    """The first ``frames`` images (sorted by name) of a folder, resized to ``height x width`` -> ``[F, 3, H, W]``."""
    from PIL import Image

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < frames:
        raise InputError(f"{folder} has {len(files)} frame images; {frames} are needed.",
                         "Use clips with enough frames, or lower --frames.")
    out = []
    for p in files[:frames]:
        with Image.open(p) as im:
            im = im.convert("RGB").resize((width, height), Image.BICUBIC)
            out.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).reshape(height, width, 3))
    return torch.stack(out).permute(0, 3, 1, 2).float() / 255.0


class HomographyGrids:
    """A source of V x F training grids: homography views of videos, or duplicated static images.

    Args:
        views, frames, height, width: grid size (frames per view, ``4k+1`` for the Wan VAE).
        folders: clip folders of frame images; ``None`` uses ``procedural_video``.
        static_fraction: probability that a grid is a static scene (first frame duplicated over time).
        strength: homography corner displacement (fraction of the image size).
    """

    def __init__(self, views: int, frames: int, height: int, width: int, folders: list[Path] | None = None,
                 static_fraction: float = 0.25, strength: float = 0.15):
        if not 0.0 <= static_fraction <= 1.0:
            raise InputError(f"static_fraction {static_fraction} must be in [0, 1].", "Use e.g. 0.25.")
        self.views, self.frames, self.height, self.width = views, frames, height, width
        self.folders = folders
        self.static_fraction = static_fraction
        self.strength = strength

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        """One grid ``[V, F, 3, H, W]`` in [0, 1]."""
        if self.folders:
            i = int(torch.randint(len(self.folders), (1,), generator=generator))
            video = load_frame_folder(self.folders[i], self.frames, self.height, self.width)
        else:
            video = procedural_video(self.frames, self.height, self.width, generator)
        if float(torch.rand(1, generator=generator)) < self.static_fraction:
            return static_scene(video[0], self.views, self.frames, self.strength, generator)
        return synchronized_views(video, self.views, self.strength, generator)
