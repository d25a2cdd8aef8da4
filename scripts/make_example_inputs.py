"""Regenerate the small example inputs in workflows/inputs/ (a source camera path and a scene).

The files are committed so the example workflows run on a fresh machine; this script documents how
they were made: ``python scripts/make_example_inputs.py``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lavr_core.camera import  CameraTrajectory, intrinsics_from_fov, look_at
from lavr_core.camera.formats import write_trajectory
from lavr_core.pointcloud import PointCloud, write_ply_points

OUT = Path(__file__).resolve().parents[1] / "workflows" / "inputs"


def source_path(n: int = 25) -> CameraTrajectory:
    """A hand-held-like walk forward with a slow pan: what a phone video's CUT3R poses look like."""
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    eye = torch.stack([0.15 * torch.sin(2 * math.pi * t), 0.03 * torch.sin(6 * math.pi * t), 1.2 * t], -1)
    target = torch.stack([0.8 * t, torch.zeros_like(t), 4.0 + 1.2 * t], -1)
    return CameraTrajectory(look_at(eye, target), intrinsics_from_fov(60, 832, 480), 832, 480, fps=30.0,
                            meta={"example": "walk forward with a pan"})


def scene(seed: int = 0) -> PointCloud:
    """A floor 1.2 units below the first camera and three coloured boxes ahead of it (OpenCV axes)."""
    g = torch.Generator().manual_seed(seed)
    floor = torch.rand(2500, 2, generator=g) * torch.tensor([8.0, 10.0]) + torch.tensor([-4.0, -1.0])
    xyz = [torch.stack([floor[:, 0], torch.full((2500,), 1.2), floor[:, 1]], -1)]
    checker = ((floor[:, 0].floor() + floor[:, 1].floor()) % 2)[:, None]
    rgb = [0.35 + 0.3 * checker.expand(-1, 3)]
    for centre, size, colour in (((-1.2, 0.7, 4.0), 1.0, (0.85, 0.25, 0.2)), ((1.0, 0.45, 5.5), 1.5, (0.2, 0.5, 0.9)),
                                 ((0.2, 0.9, 2.8), 0.6, (0.3, 0.8, 0.35))):
        u = torch.rand(900, 3, generator=g) - 0.5
        face = torch.randint(0, 3, (900,), generator=g)
        u[torch.arange(900), face] = torch.sign(u[torch.arange(900), face]) * 0.5  # points on the box surface
        xyz.append(torch.tensor(centre) + size * u)
        rgb.append(torch.tensor(colour).expand(900, 3) * (0.8 + 0.2 * torch.rand(900, 1, generator=g)))
    return PointCloud(torch.cat(xyz), torch.cat(rgb), meta={"example": "floor and boxes"})


def clip(n: int = 8, w: int = 96, h: int = 64):
    """A short video of a camera sliding past two coloured shapes on a gradient (an animated PNG),
    small enough for CPU tests; ComfyUI's Load Image reads every frame of it into one batch."""
    from PIL import Image, ImageDraw

    frames = []
    for i in range(n):
        img = Image.new("RGB", (w, h))
        d = ImageDraw.Draw(img)
        for y in range(h):
            d.line([(0, y), (w, y)], fill=(40 + y, 60 + y // 2, 110))
        dx = 3 * i
        d.rectangle([10 - dx // 2, 30, 40 - dx // 2, 58], fill=(210, 70, 50))
        d.ellipse([50 - dx, 12, 80 - dx, 42], fill=(60, 170, 90))
        frames.append(img)
    return frames


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    write_trajectory(source_path(), OUT / "lavr_example_walk.txt", "realestate10k")
    write_ply_points(scene(), OUT / "lavr_example_scene.ply")
    frames = clip()
    frames[0].save(OUT / "lavr_example_clip.png", save_all=True, append_images=frames[1:], duration=62, loop=0)
    print(f"wrote {sorted(p.name for p in OUT.iterdir())} to {OUT}")


if __name__ == "__main__":
    main()
