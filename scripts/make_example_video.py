"""Write the example source video of the re-render workflow: workflows/inputs/lavr_example_walk.mp4.

17 frames (a 4k+1 count, 5 Wan latent frames) of 64x64 pixels at 16 fps: a camera walking forward
past three coloured boxes on a checkered floor under a sky gradient, drawn with a tiny pinhole
renderer so the motion has real parallax (what CUT3R and ReCamMaster expect of a video). H.264 in
MP4 through PyAV, single-threaded and with fixed settings, so the file is the same on every run of
the same PyAV build. Small enough for CPU tests; with real weights, use your own 832x480 clip.

    python scripts/make_example_video.py [--frames 17] [--size 64]
"""

from __future__ import annotations

import argparse
import math
from fractions import Fraction
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "workflows" / "inputs" / "lavr_example_walk.mp4"
FPS = 16

#: Axis-aligned boxes (centre x, y, z; half size; RGB) in an OpenCV world (+y down, +z forward).
BOXES = (((-1.1, 0.7, 4.4), 0.5, (215, 70, 50)), ((1.3, 0.5, 6.0), 0.7, (60, 120, 220)),
         ((0.2, 0.9, 3.2), 0.3, (70, 190, 90)))
FLOOR_Y = 1.2


def render(frame: int, frames: int, size: int) -> np.ndarray:
    """One ``size x size`` RGB frame: ray-cast floor and boxes from a camera at ``frame``'s pose."""
    s = frame / max(frames - 1, 1)
    eye = np.array([0.25 * math.sin(math.pi * s), -0.05, 1.0 * s])
    yaw = math.radians(-8.0 * s)
    R = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    f = size / (2 * math.tan(math.radians(60) / 2))
    u, v = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    dirs = np.stack([(u - size / 2) / f, (v - size / 2) / f, np.ones_like(u)], -1) @ R.T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    # sky: a vertical gradient by ray elevation
    img = np.zeros((size, size, 3))
    up = np.clip(-dirs[..., 1], -1, 1)[..., None]
    img[:] = np.array([150, 190, 235]) * (0.6 + 0.4 * up) + np.array([40, 40, 40]) * (1 - up)
    depth = np.full((size, size), np.inf)
    # floor plane y = FLOOR_Y, checkered
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (FLOOR_Y - eye[1]) / dirs[..., 1]
    hit = np.isfinite(t) & (t > 0)
    p = eye + np.where(hit[..., None], t[..., None], 0) * dirs
    checker = ((np.floor(p[..., 0] * 2) + np.floor(p[..., 2] * 2)) % 2)[..., None]
    floor_rgb = np.array([90, 80, 70]) + checker * np.array([90, 85, 80])
    img = np.where(hit[..., None], floor_rgb, img)
    depth = np.where(hit, t, depth)
    # boxes: slab intersection, shaded by which face was hit
    for centre, half, colour in BOXES:
        lo, hi = np.array(centre) - half, np.array(centre) + half
        with np.errstate(divide="ignore", invalid="ignore"):
            t0, t1 = (lo - eye) / dirs, (hi - eye) / dirs
        tmin, tmax = np.minimum(t0, t1), np.maximum(t0, t1)
        near, far = tmin.max(-1), tmax.min(-1)
        box_hit = (near <= far) & (near > 0) & (near < depth)
        face = tmin.argmax(-1)
        shade = np.array([0.75, 1.0, 0.9])[face][..., None]
        img = np.where(box_hit[..., None], np.array(colour) * shade, img)
        depth = np.where(box_hit, near, depth)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_video(path: Path, frames: int = 17, size: int = 64) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), mode="w") as out:
        stream = out.add_stream("libx264", rate=Fraction(FPS, 1))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20", "preset": "medium", "threads": "1"}
        stream.thread_count = 1
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(render(i, frames, size), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)
    return path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    p = write_video(args.out, args.frames, args.size)
    print(f"wrote {p} ({p.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
