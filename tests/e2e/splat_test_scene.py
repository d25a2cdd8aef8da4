"""A small, recognisable Gaussian scene written with LaVR's own writers, for the splat browser tests.

Four flat discs of Gaussians facing a camera that sits at the origin looking down +z (OpenCV: x right,
y down, z forward): red on the left, green in the middle, blue on the right, yellow above the middle.
A viewer that shows an OpenCV-frame splat upright therefore draws R G B from left to right with Y on top,
which the browser tests check pixel by pixel.

    python tests/e2e/splat_test_scene.py OUT.ply            # or OUT.splat / OUT.spz (by extension)
    python tests/e2e/splat_test_scene.py --sequence DIR --frames 3   # DIR/scene_0000{0,1,2}.ply + DIR/scene.json

Frame ``t`` of a sequence moves the yellow disc right by ``0.4 * t`` (the others stay): a preview that
loads frame 2 shows yellow right of where frame 0 had it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from lavr_core.gaussians import Gaussians, GaussianSequence, write_gaussians, write_sequence  # noqa: E402

#: centre (x, y, z) and colour of each disc; z = DEPTH in front of the origin camera.
DEPTH = 3.0
DISCS = {
    "red": ((-0.9, 0.15, DEPTH), (0.95, 0.1, 0.1)),
    "green": ((0.0, 0.15, DEPTH), (0.1, 0.9, 0.15)),
    "blue": ((0.9, 0.15, DEPTH), (0.15, 0.25, 0.95)),
    "yellow": ((0.0, -0.75, DEPTH), (0.95, 0.85, 0.1)),
}
RADIUS = 0.32


def scene(per_disc: int = 1000, yellow_shift: float = 0.0, seed: int = 0) -> Gaussians:
    """``4 * per_disc`` Gaussians in four coloured discs (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    means, rgb = [], []
    for name, (c, col) in DISCS.items():
        r = RADIUS * torch.rand(per_disc, generator=g).sqrt()
        a = 2 * math.pi * torch.rand(per_disc, generator=g)
        x = c[0] + r * a.cos() + (yellow_shift if name == "yellow" else 0.0)
        y = c[1] + r * a.sin()
        z = c[2] + 0.02 * torch.randn(per_disc, generator=g)
        means.append(torch.stack([x, y, z], 1))
        rgb.append(torch.tensor(col).expand(per_disc, 3))
    n = 4 * per_disc
    # flattened ellipsoids with random in-plane rotation: exercises scale and quaternion handling
    scales = torch.tensor([0.03, 0.018, 0.006]).expand(n, 3) * (0.7 + 0.6 * torch.rand(n, 1, generator=g))
    ang = math.pi * torch.rand(n, generator=g)
    rot = torch.stack([torch.cos(ang / 2), torch.zeros(n), torch.zeros(n), torch.sin(ang / 2)], 1)  # about z
    return Gaussians.from_rgb(torch.cat(means), scales, rot, torch.full((n,), 0.9), torch.cat(rgb),
                              meta={"scene": "lavr splat browser test"})


def write_scene(path: str | Path, per_disc: int = 1000) -> Path:
    return write_gaussians(scene(per_disc), Path(path))


def write_scene_sequence(folder: str | Path, frames: int = 3, per_disc: int = 500, fmt: str = "ply") -> Path:
    seq = GaussianSequence.from_fps([scene(per_disc, 0.4 * t, seed=t) for t in range(frames)], fps=8.0,
                                    meta={"scene": "lavr splat browser test"})
    return write_sequence(seq, folder, stem="scene", fmt=fmt)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", nargs="?", type=Path, help="file to write (.ply, .splat or .spz)")
    p.add_argument("--per-disc", type=int, default=1000)
    p.add_argument("--sequence", type=Path, help="write a sequence (numbered .ply + scene.json) into this folder")
    p.add_argument("--frames", type=int, default=3)
    a = p.parse_args(argv)
    if a.sequence:
        m = write_scene_sequence(a.sequence, a.frames, a.per_disc)
        print(json.dumps({"manifest": str(m)}))
    elif a.out:
        print(json.dumps({"file": str(write_scene(a.out, a.per_disc))}))
    else:
        p.error("give OUT or --sequence DIR")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
