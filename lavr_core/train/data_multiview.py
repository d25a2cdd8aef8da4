"""Posed multi-view (and multi-view video) training data, and a procedural scene generator for tests.

Folder layout (``lavr_multiview`` version 1): a data root holds one folder per scene; a scene is::

    scene_0000/
      images/          V*T pictures (.png .jpg .jpeg .webp .bmp), taken in sorted file-name order,
                       VIEW-MAJOR: all T timesteps of view 0, then view 1, ... (frame = v*T + t)
      cameras.lavr.json   the cameras, one per view (V) or one per picture (V*T, the first
                          timestep's are used), in any format lavr_core.camera.formats reads:
                          cameras.lavr.json / cameras.json (LaVR JSON), transforms.json
                          (nerfstudio), camera_extrinsics.json (ReCamMaster), cameras.txt +
                          images.txt (COLMAP text, in the scene folder or sparse/0/)
      scene.json       optional: {"format": "lavr_multiview", "version": 1, "views": V, "times": T}
                       (without it T = 1: every picture is its own view of a static scene)

Cameras are c2w in OpenCV axes with K in pixels of the trajectory's width x height (LaVR's
conventions); pictures of another size get K scaled to their size. Pictures whose sides are not
multiples of VGGT's 14-pixel patches are resized (antialiased) to the nearest multiples, or to
``image_size`` when given, with K scaled to match.

``procedural_scene`` / ``write_procedural_dataset`` make scenes of random coloured Gaussian blobs
(moving linearly over time when ``times > 1``) seen by ``views`` inward-looking cameras, rendered
with ``lavr_core.gaussians.render``: exact cameras and pictures, for tests and smoke runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..camera.formats import read_trajectory, write_trajectory
from ..camera.trajectory import CameraTrajectory
from ..camera.transforms import look_at, scale_intrinsics
from ..errors import InputError
from ..fileio import atomic_write_text, atomic_writer

LAYOUT_FORMAT = "lavr_multiview"
LAYOUT_VERSION = 1
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
#: Camera files looked for in a scene folder, first found wins (COLMAP folders are checked after).
CAMERA_FILES = ("cameras.lavr.json", "cameras.json", "transforms.json", "camera_extrinsics.json")
PATCH = 14


@dataclass
class MultiViewScene:
    """One posed scene: ``images [V, T, 3, H, W]`` float32 RGB in [0, 1] (view-major grid),
    ``c2w [V, 4, 4]`` float64 OpenCV camera-to-world, ``K [V, 3, 3]`` float64 pixels of ``W x H``."""

    name: str
    images: torch.Tensor
    c2w: torch.Tensor
    K: torch.Tensor

    @property
    def views(self) -> int:
        return self.images.shape[0]

    @property
    def times(self) -> int:
        return self.images.shape[1]

    @property
    def image_hw(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])


# ------------------------------------------------------------------------------------------- reading

def _fail(scene: Path, message: str, hint: str) -> None:
    raise InputError(f"Scene {scene}: {message}", hint)


def find_camera_file(scene: Path) -> Path:
    """The camera file (or COLMAP folder) of a scene folder."""
    for name in CAMERA_FILES:
        if (scene / name).is_file():
            return scene / name
    for sub in (scene / "sparse" / "0", scene / "sparse", scene / "colmap", scene):
        if (sub / "images.txt").is_file() and (sub / "cameras.txt").is_file():
            return sub
    _fail(scene, "has no camera file.",
          f"Add one of {', '.join(CAMERA_FILES)} or a COLMAP text model (cameras.txt, images.txt).")
    raise AssertionError  # unreachable


def _read_scene_json(scene: Path, n_images: int) -> tuple[int, int]:
    f = scene / "scene.json"
    if not f.is_file():
        return n_images, 1
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
        views, times = int(data.get("views", n_images)), int(data.get("times", 1))
    except (ValueError, TypeError, AttributeError) as e:
        _fail(scene, f"scene.json is not valid ({e}).", 'Write {"views": V, "times": T} (numbers).')
    if data.get("format", LAYOUT_FORMAT) != LAYOUT_FORMAT or int(data.get("version", LAYOUT_VERSION)) > LAYOUT_VERSION:
        _fail(scene, f"scene.json is {data.get('format')!r} version {data.get('version')!r}.",
              f"Use format {LAYOUT_FORMAT!r} version {LAYOUT_VERSION}.")
    if views < 1 or times < 1 or views * times != n_images:
        _fail(scene, f"scene.json says {views} views x {times} timesteps = {views * times} pictures, but images/ "
                     f"holds {n_images}.", "Fix scene.json or the pictures (view-major order: frame = v*T + t).")
    return views, times


def _load_image(path: Path) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise InputError(f"Cannot read picture {path} ({e}).", "Replace the file with a valid PNG/JPEG.") from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0


def training_size(h: int, w: int, image_size: Sequence[int] | None = None) -> tuple[int, int]:
    """``(H, W)`` the pictures are brought to: ``image_size`` or the nearest multiples of 14."""
    if image_size is not None:
        H, W = int(image_size[0]), int(image_size[1])
        if H % PATCH or W % PATCH or H < PATCH or W < PATCH:
            raise InputError(f"Training size {H}x{W} is not a multiple of {PATCH} pixels.",
                             f"Give a height and width that are multiples of {PATCH} (e.g. 294x518).")
        return H, W
    return max(PATCH, round(h / PATCH) * PATCH), max(PATCH, round(w / PATCH) * PATCH)


def load_scene(scene: str | Path, image_size: Sequence[int] | None = None) -> MultiViewScene:
    """Read one scene folder (module docstring) into a ``MultiViewScene``."""
    scene = Path(scene)
    img_dir = scene / "images"
    if not img_dir.is_dir():
        _fail(scene, "has no images/ folder.", "Put the V*T pictures in <scene>/images/, view-major.")
    files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        _fail(scene, "images/ holds no pictures.", f"Add {', '.join(IMAGE_EXTENSIONS)} files.")
    views, times = _read_scene_json(scene, len(files))
    traj = read_trajectory(find_camera_file(scene))
    if traj.num_frames not in (views, views * times):
        _fail(scene, f"the camera file has {traj.num_frames} cameras for {views} views x {times} timesteps.",
              "Give one camera per view, or one per picture (view-major).")
    idx = list(range(views)) if traj.num_frames == views else [v * times for v in range(views)]
    traj = traj.subset(idx)
    pics = [_load_image(f) for f in files]
    h, w = pics[0].shape[-2:]
    if any(p.shape[-2:] != (h, w) for p in pics):
        bad = next(f.name for f, p in zip(files, pics) if p.shape[-2:] != (h, w))
        _fail(scene, f"pictures differ in size ({bad} is not {w}x{h}).", "Give every picture of a scene the same size.")
    if abs(traj.width / traj.height - w / h) > 0.01 * (w / h):
        _fail(scene, f"the cameras are for {traj.width}x{traj.height} pictures but the pictures are {w}x{h} "
                     "(another aspect ratio).", "Give the cameras of these very pictures.")
    H, W = training_size(h, w, image_size)
    images = torch.stack(pics)
    if (H, W) != (h, w):
        images = F.interpolate(images, size=(H, W), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    K = scale_intrinsics(traj.K, W / traj.width, H / traj.height)
    return MultiViewScene(scene.name, images.reshape(views, times, 3, H, W).contiguous(), traj.c2w.clone(), K)


class MultiViewDataset:
    """The scenes under ``root`` (every sub-folder with an ``images/`` folder), loaded on access."""

    def __init__(self, root: str | Path, image_size: Sequence[int] | None = None, cache: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"Training data folder {self.root} does not exist.",
                             "Pass --data DIR holding one folder per scene (see lavr_core.train.data_multiview).")
        self.scenes = sorted(p for p in self.root.iterdir() if (p / "images").is_dir())
        if not self.scenes and (self.root / "images").is_dir():
            self.scenes = [self.root]  # the root is itself one scene
        if not self.scenes:
            raise InputError(f"{self.root} holds no scene folders (folders with an images/ sub-folder).",
                             "Lay the data out as DIR/scene_x/images/*.png + DIR/scene_x/cameras.lavr.json.")
        self.image_size = image_size
        self._cache: dict[int, MultiViewScene] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> MultiViewScene:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        s = load_scene(self.scenes[i], self.image_size)
        if self._cache is not None:
            self._cache[i] = s
        return s


# ------------------------------------------------------------------------------------ procedural

def procedural_cameras(views: int, width: int, height: int, radius: float = 3.5, spread_deg: float = 40.0,
                       fov_deg: float = 50.0, elevation_deg: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``views`` cameras on an arc of ``spread_deg`` degrees at ``radius``, looking at the origin.

    Returns c2w ``[V, 4, 4]`` (OpenCV, world y down) and K ``[V, 3, 3]`` (float64)."""
    az = torch.linspace(-spread_deg / 2, spread_deg / 2, views, dtype=torch.float64) if views > 1 \
        else torch.zeros(1, dtype=torch.float64)
    az, el = torch.deg2rad(az), math.radians(elevation_deg)
    eye = torch.stack([radius * math.cos(el) * torch.sin(az), torch.full_like(az, -radius * math.sin(el)),
                       -radius * math.cos(el) * torch.cos(az)], -1)
    c2w = look_at(eye, torch.zeros_like(eye))
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float64).expand(views, 3, 3)
    return c2w, K.clone()


def procedural_scene(seed: int, views: int = 4, times: int = 1, height: int = 42, width: int = 56,
                     num_blobs: int = 40, background: Sequence[float] = (0.5, 0.5, 0.5), motion: float = 0.15,
                     **camera_kw) -> MultiViewScene:
    """A random scene of ``num_blobs`` coloured Gaussian blobs in a 2 x 2 x 1 box around the origin, plus
    a coloured backdrop of wide blobs behind them, rendered from ``procedural_cameras``; with
    ``times > 1`` the blobs move linearly (``motion`` scene units per timestep, random directions)."""
    from ..gaussians.render import render
    from ..gaussians.types import Gaussians

    g = torch.Generator().manual_seed(int(seed))
    n = num_blobs
    centre = (torch.rand(n, 3, generator=g) * 2 - 1) * torch.tensor([1.0, 1.0, 0.5])
    scales = 0.08 + 0.17 * torch.rand(n, 3, generator=g)
    rot = torch.randn(n, 4, generator=g)
    colours = torch.rand(n, 3, generator=g)
    velocity = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * motion
    # A backdrop (a wall of wide, dim blobs at z = 1.5) so every picture has structure everywhere.
    gy, gx = torch.meshgrid(torch.linspace(-2.5, 2.5, 6), torch.linspace(-3, 3, 7), indexing="ij")
    wall = torch.stack([gx.reshape(-1), gy.reshape(-1), torch.full((42,), 1.5)], -1)
    wall_col = 0.2 + 0.6 * torch.rand(42, 3, generator=g)
    c2w, K = procedural_cameras(views, width, height, **camera_kw)
    frames = []
    for t in range(times):
        means = torch.cat([centre + velocity * t, wall])
        gs = Gaussians.from_rgb(means, torch.cat([scales, torch.full((42, 3), 0.6)]),
                                torch.cat([rot, torch.tensor([[1.0, 0, 0, 0]]).expand(42, 4)]),
                                torch.cat([torch.full((n,), 0.95), torch.full((42,), 0.9)]), torch.cat([colours, wall_col]))
        rgb, _, _ = render(gs, c2w.float(), K.float(), width, height, background=torch.tensor(background),
                           backend="torch")
        frames.append(rgb.clamp(0, 1).permute(0, 3, 1, 2))                 # [V, 3, H, W]
    images = torch.stack(frames, 1).contiguous()                            # [V, T, 3, H, W]
    return MultiViewScene(f"procedural_{seed:05d}", images, c2w, K)


def _save_png(path: Path, image: torch.Tensor) -> None:
    from PIL import Image

    arr = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    with atomic_writer(path, "wb") as f:
        Image.fromarray(arr).save(f, format="PNG")


def write_scene(scene: MultiViewScene, folder: str | Path) -> Path:
    """Write ``scene`` in the folder layout of the module docstring (atomically, file by file)."""
    folder = Path(folder)
    V, T, _, H, W = scene.images.shape
    for v in range(V):
        for t in range(T):
            _save_png(folder / "images" / f"{v * T + t:05d}.png", scene.images[v, t])
    traj = CameraTrajectory(c2w=scene.c2w, K=scene.K, width=W, height=H, fps=16.0,
                            meta={"source": "lavr_multiview", "scene": scene.name})
    write_trajectory(traj, folder / "cameras.lavr.json")
    atomic_write_text(folder / "scene.json", json.dumps({"format": LAYOUT_FORMAT, "version": LAYOUT_VERSION,
                                                         "views": V, "times": T}, indent=1))
    return folder


def write_procedural_dataset(root: str | Path, num_scenes: int, seed: int = 0, **scene_kw) -> list[Path]:
    """Write ``num_scenes`` procedural scenes (seeds ``seed, seed+1, ...``) under ``root``."""
    if num_scenes < 1:
        raise InputError(f"num_scenes must be >= 1, got {num_scenes}.", "Ask for at least one scene.")
    root = Path(root)
    return [write_scene(procedural_scene(seed + i, **scene_kw), root / f"scene_{seed + i:05d}")
            for i in range(num_scenes)]


# ------------------------------------------------------------------------------------------ CLI

def add_arguments(ap) -> None:
    ap.add_argument("--out", required=True, help="data root to write scene folders into")
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--times", type=int, default=1, help="timesteps (> 1: blobs move)")
    ap.add_argument("--height", type=int, default=42)
    ap.add_argument("--width", type=int, default=56)
    ap.add_argument("--blobs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)


def main(args) -> int:
    paths = write_procedural_dataset(args.out, args.scenes, seed=args.seed, views=args.views, times=args.times,
                                     height=args.height, width=args.width, num_blobs=args.blobs)
    print(f"wrote {len(paths)} scenes ({args.views} views x {args.times} timesteps, {args.width}x{args.height}) "
          f"to {args.out}")
    return 0
