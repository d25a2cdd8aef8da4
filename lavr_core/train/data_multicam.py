"""Paired multi-camera videos with poses (MultiCamVideo-like), and a procedural generator for tests.

Folder layout (``lavr_multicam`` version 1): a data root holds one folder per scene::

    scene_0000/
      videos/<cam>.mp4 | videos/<cam>.npz | videos/<cam>/*.png
                        one synchronised video per camera, all with the same frame count and size.
                        .npz: key "frames", uint8 [T, H, W, 3]; a PNG folder is read in sorted
                        file-name order; .mp4 is decoded with PyAV.
      cameras.json      {"format": "lavr_multicam", "version": 1,
                         "cameras": {"<cam>": {"c2w": [T x 4x4], "K": [3x3] or [T x 3x3]}, ...}}
                        OpenCV camera-to-world (x right, y down, z forward), one pose per frame,
                        K in pixels of the video frames; translations in metres (any consistent unit).
        or cameras/camera_extrinsics.json   MultiCamVideo's own file (Unreal, centimetres; read with
                        ``lavr_core.camera.formats.recammaster``; cameras named cam01..cam10)
      scene_latents/<cam>.safetensors   optional: the scene latent of that camera's video
                        (``write_scene_tokens``): ``state_tokens [K, S, D]``, ``state_frames [K]`` int64,
                        ``c2w [T, 4, 4]`` float64 (the reconstruction's source cameras, world = first
                        camera); metadata {"format": "lavr_scene_tokens", "version": "1"}
      latents/<cam>.safetensors         optional: VAE latents of that video, key ``latents``
                        ``[C, F, h, w]`` (normalised Wan latents); used instead of encoding when its
                        frame count and size match the training setting
      context.safetensors               optional: key ``context`` ``[L, text_dim]`` umT5 features of
                        the scene's caption (else the trainer's fixed context is used)

A camera whose video has a scene latent (cached, or computed with ``--cut3r``) can be the source of
a training pair; every other camera of the scene can be its target.

``procedural_multicam_scene`` / ``write_procedural_multicam`` make small synthetic scenes for tests:
cameras at the origin looking into a spherical environment of coloured blobs. Camera 0 (the source)
only ever looks at the front half; the target cameras look sideways or back, where a per-scene
random backdrop colour (or one of a small palette, ``back_palette``) and blobs are that the
source never shows. The scene latent written for camera 0 is **synthetic**: a fixed random
projection of the whole environment's description (blob directions and colours, backdrop colour),
standing in for a reconstruction model's scene memory. It therefore carries exactly the information
the source pixels lack, which is what a test of the adapter's plumbing needs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import InputError
from ..fileio import atomic_write_text, atomic_writer

LAYOUT_FORMAT = "lavr_multicam"
LAYOUT_VERSION = 1
TOKENS_FORMAT = "lavr_scene_tokens"
CAMERAS_FILE = "cameras.json"
MULTICAMVIDEO_CAMERAS = Path("cameras") / "camera_extrinsics.json"
VIDEO_SUFFIXES = (".npz", ".mp4")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


# ------------------------------------------------------------------------------------------- types

@dataclass
class MultiCamScene:
    """One scene folder. ``cameras``: names (sorted); ``c2w[cam] [T, 4, 4]`` float64 OpenCV;
    ``K[cam] [T, 3, 3]`` float64 pixels. Videos, latents and scene latents are read on demand."""

    folder: Path
    cameras: list[str]
    c2w: dict[str, torch.Tensor]
    K: dict[str, torch.Tensor]
    _videos: dict[str, Path] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.folder.name

    def video(self, cam: str) -> torch.Tensor:
        """``[T, 3, H, W]`` float32 RGB in [0, 1]."""
        return read_video(self._videos[cam])

    def scene_tokens_path(self, cam: str) -> Path:
        return self.folder / "scene_latents" / f"{cam}.safetensors"

    def latents_path(self, cam: str) -> Path:
        return self.folder / "latents" / f"{cam}.safetensors"

    def context_path(self) -> Path:
        return self.folder / "context.safetensors"


# ----------------------------------------------------------------------------------------- reading

def _fail(scene: Path, message: str, hint: str):
    raise InputError(f"Scene {scene}: {message}", hint)


def read_video(path: Path) -> torch.Tensor:
    """A camera's video (``.npz``, ``.mp4`` or a folder of pictures) as ``[T, 3, H, W]`` float in [0, 1]."""
    path = Path(path)
    if path.is_dir():
        from PIL import Image

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"Video folder {path} holds no pictures.", f"Add {', '.join(IMAGE_SUFFIXES)} frames.")
        frames = []
        for f in files:
            try:
                with Image.open(f) as im:
                    frames.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            except OSError as e:
                raise InputError(f"Cannot read frame {f} ({e}).", "Replace the file with a valid PNG/JPEG.") from e
        if any(fr.shape != frames[0].shape for fr in frames):
            raise InputError(f"The frames in {path} differ in size.", "Give every frame of a video the same size.")
        arr = np.stack(frames)
    elif path.suffix.lower() == ".npz":
        try:
            with np.load(path) as z:
                arr = np.asarray(z["frames"])
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"Cannot read {path} ({e}).", 'Save the frames with np.savez(path, frames=uint8 [T, H, W, 3]).') from e
        if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise InputError(f"{path} holds frames {arr.dtype} {arr.shape}; expected uint8 [T, H, W, 3].",
                             "Save 8-bit RGB frames.")
    elif path.suffix.lower() == ".mp4":
        try:
            import av
        except ImportError as e:  # pragma: no cover - PyAV comes with ComfyUI
            raise InputError("Reading .mp4 needs PyAV.", "pip install av, or store the frames as .npz / PNGs.") from e
        try:
            with av.open(str(path)) as container:
                arr = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        except (av.error.FFmpegError, ValueError) as e:
            raise InputError(f"Cannot decode {path} ({e}).", "Re-encode the video (H.264 .mp4) or store frames as PNGs.") from e
    else:
        raise InputError(f"{path} is not a video this loader reads.", "Use .mp4, .npz or a folder of PNGs.")
    if arr.shape[0] == 0:
        raise InputError(f"{path} has no frames.", "Give every camera a video with frames.")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0


def _find_videos(scene: Path) -> dict[str, Path]:
    vdir = scene / "videos"
    if not vdir.is_dir():
        _fail(scene, "has no videos/ folder.", "Put one video per camera in <scene>/videos/ (<cam>.mp4, .npz or a PNG folder).")
    out = {}
    for p in sorted(vdir.iterdir()):
        if p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES:
            out[p.stem if p.is_file() else p.name] = p
    if not out:
        _fail(scene, "videos/ holds no videos.", "Add <cam>.mp4, <cam>.npz or <cam>/ PNG folders.")
    return out


def _read_cameras(scene: Path, names: list[str]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    f = scene / CAMERAS_FILE
    if f.is_file():
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except ValueError as e:
            _fail(scene, f"{CAMERAS_FILE} is not valid JSON ({e}).", "Fix the file (see lavr_core.train.data_multicam).")
        if data.get("format") != LAYOUT_FORMAT or int(data.get("version", 0)) != LAYOUT_VERSION:
            _fail(scene, f"{CAMERAS_FILE} is {data.get('format')!r} version {data.get('version')!r}.",
                  f"Write format {LAYOUT_FORMAT!r} version {LAYOUT_VERSION}.")
        cams = data.get("cameras", {})
        c2w, K = {}, {}
        for n in names:
            if n not in cams:
                _fail(scene, f"{CAMERAS_FILE} has no camera {n!r} (it has {sorted(cams)}).", "Give every video its cameras.")
            try:
                c2w[n] = torch.tensor(cams[n]["c2w"], dtype=torch.float64)
                K[n] = torch.tensor(cams[n]["K"], dtype=torch.float64)
            except (KeyError, TypeError, ValueError) as e:
                _fail(scene, f"camera {n!r} in {CAMERAS_FILE} is malformed ({e!r}).", 'Give "c2w": [T x 4x4] and "K": [3x3].')
        return c2w, K
    f = scene / MULTICAMVIDEO_CAMERAS
    if f.is_file():
        from ..camera.formats.recammaster import read_recammaster

        c2w, K = {}, {}
        for n in names:
            traj = read_recammaster(f, cam=n)
            c2w[n], K[n] = traj.c2w, traj.K
        return c2w, K
    _fail(scene, f"has no {CAMERAS_FILE} or {MULTICAMVIDEO_CAMERAS}.", "Add the cameras (see lavr_core.train.data_multicam).")
    raise AssertionError  # unreachable


def load_multicam_scene(scene: str | Path) -> MultiCamScene:
    """Read one scene folder's cameras and find its videos (the videos are read on demand)."""
    scene = Path(scene)
    videos = _find_videos(scene)
    names = sorted(videos)
    if len(names) < 2:
        _fail(scene, f"has {len(names)} camera video(s); a training pair needs two.", "Give each scene several cameras.")
    c2w, K = _read_cameras(scene, names)
    for n in names:
        if c2w[n].ndim != 3 or c2w[n].shape[-2:] != (4, 4) or not torch.isfinite(c2w[n]).all():
            _fail(scene, f"camera {n!r} has poses of shape {tuple(c2w[n].shape)} (or non-finite values).",
                  "Give one finite 4x4 camera-to-world matrix per frame.")
        if K[n].shape == (3, 3):
            K[n] = K[n].expand(c2w[n].shape[0], 3, 3).clone()
        if K[n].shape != (c2w[n].shape[0], 3, 3):
            _fail(scene, f"camera {n!r} has intrinsics {tuple(K[n].shape)} for {c2w[n].shape[0]} poses.",
                  "Give one 3x3 K, or one per frame.")
    frames = {c2w[n].shape[0] for n in names}
    if len(frames) != 1:
        _fail(scene, f"the cameras have different pose counts {sorted(frames)}.", "The videos must be synchronised.")
    return MultiCamScene(scene, names, c2w, K, videos)


class MultiCamDataset:
    """The scene folders under ``root`` (every sub-folder with a ``videos/`` folder)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"Training data folder {self.root} does not exist.",
                             "Pass --data DIR holding one folder per scene (see lavr_core.train.data_multicam).")
        folders = sorted(p for p in self.root.iterdir() if (p / "videos").is_dir())
        if not folders and (self.root / "videos").is_dir():
            folders = [self.root]
        if not folders:
            raise InputError(f"{self.root} holds no scene folders (folders with a videos/ sub-folder).",
                             "Lay the data out as DIR/scene_x/videos/<cam>.mp4 + DIR/scene_x/cameras.json.")
        self.folders = folders
        self._scenes: dict[int, MultiCamScene] = {}

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, i: int) -> MultiCamScene:
        if i not in self._scenes:
            self._scenes[i] = load_multicam_scene(self.folders[i])
        return self._scenes[i]


# ----------------------------------------------------------------------------------- scene tokens

def write_scene_tokens(path: str | Path, state_tokens: torch.Tensor, state_frames: Sequence[int],
                       c2w: torch.Tensor) -> Path:
    """Cache a scene latent's adapter inputs (layout in the module docstring), atomically."""
    from safetensors.torch import save

    data = save({"state_tokens": state_tokens.detach().float().contiguous().cpu(),
                 "state_frames": torch.tensor(list(state_frames), dtype=torch.int64),
                 "c2w": c2w.detach().double().contiguous().cpu()},
                metadata={"format": TOKENS_FORMAT, "version": "1"})
    with atomic_writer(path, "wb") as f:
        f.write(data)
    return Path(path)


def read_scene_tokens(path: str | Path):
    """A cached scene latent as ``lavr_core.lavr.SceneTokens``."""
    from ..checkpoint_io import load_safetensors, safetensors_metadata
    from ..lavr.model import SceneTokens

    meta = safetensors_metadata(path)
    if meta.get("format") != TOKENS_FORMAT:
        raise InputError(f"{path} is not a LaVR scene-latent cache (format {meta.get('format')!r}).",
                         "Delete it to recompute it, or write it with write_scene_tokens.")
    t = load_safetensors(path, what="scene latent cache")
    missing = [k for k in ("state_tokens", "state_frames", "c2w") if k not in t]
    if missing:
        raise InputError(f"{path} lacks {missing}.", "Delete it to recompute it.")
    return SceneTokens(t["state_tokens"], [int(v) for v in t["state_frames"]], t["c2w"])


# ------------------------------------------------------------------------------------ procedural

def _yaw(deg: float) -> torch.Tensor:
    """c2w rotation turning the camera ``deg`` degrees about its y (down) axis: +x pans right."""
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], dtype=torch.float64)


#: Backdrop colours of the hidden half with ``back_palette = K``: the first K of these.
BACK_PALETTE = ((0.9, 0.1, 0.1), (0.1, 0.8, 0.2), (0.15, 0.2, 0.95), (0.95, 0.9, 0.2),
                (0.9, 0.2, 0.9), (0.1, 0.9, 0.9), (0.5, 0.5, 0.5), (0.05, 0.05, 0.05))


def _environment(seed: int, front_blobs: int, back_blobs: int, back_palette: int = 0) -> dict[str, torch.Tensor]:
    if not 0 <= back_palette <= len(BACK_PALETTE):
        raise InputError(f"back_palette={back_palette} is not between 0 and {len(BACK_PALETTE)}.",
                         "Use 0 (any colour) or a small palette size.")
    g = torch.Generator().manual_seed(int(seed))

    def dirs(n, front):
        az = (torch.rand(n, generator=g) * 2 - 1) * (math.radians(40) if front else math.radians(60))
        az = az if front else az + math.pi
        el = (torch.rand(n, generator=g) * 2 - 1) * math.radians(20)
        return torch.stack([torch.cos(el) * torch.sin(az), torch.sin(el), torch.cos(el) * torch.cos(az)], -1)

    env = {"front_dirs": dirs(front_blobs, True), "front_cols": torch.rand(front_blobs, 3, generator=g),
           "back_dirs": dirs(back_blobs, False), "back_cols": torch.rand(back_blobs, 3, generator=g),
           "front_base": 0.3 + 0.4 * torch.rand(3, generator=g), "back_base": torch.rand(3, generator=g)}
    if back_palette:  # seed mod K: consecutive scenes never share the hidden colour
        env["back_base"] = torch.tensor(BACK_PALETTE[int(seed) % back_palette])
    return env


def _render(env: dict[str, torch.Tensor], R: torch.Tensor, K: torch.Tensor, height: int, width: int,
            blob_size: float = 0.25) -> torch.Tensor:
    """``[3, H, W]`` view of the environment from a camera at the origin with rotation ``R`` (c2w)."""
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float64) + 0.5,
                          torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij")
    rays = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)
    d = torch.nn.functional.normalize(rays @ R.T, dim=-1).float()               # world directions
    back = (-d[..., 2] * 2).clamp(0, 1)[..., None]                              # 0 on the front half
    img = env["front_base"] * (1 - back) + env["back_base"] * back
    for dirs, cols in ((env["front_dirs"], env["front_cols"]), (env["back_dirs"], env["back_cols"])):
        for mu, col in zip(dirs, cols):
            w = torch.exp((d @ mu - 1) / blob_size ** 2)[..., None]
            w = torch.where(w < 1e-4, torch.zeros_like(w), w)   # compact support: no leak across the halves
            img = img * (1 - w) + col * w
    return img.permute(2, 0, 1).clamp(0, 1)


def _synthetic_tokens(env: dict[str, torch.Tensor], tokens: int, width: int, snapshots: int, seed: int) -> torch.Tensor:
    """``[snapshots, tokens, width]``: one token per blob ([direction, colour, kind]) and one per
    backdrop, each also carrying both backdrop colours (a scene memory spreads global facts over its
    slots, as CUT3R's state does); the remaining slots carry only those global facts. The features
    go through a projection that is the same for every scene (a fixed "encoder"), every slot adds a
    fixed embedding of its own (CUT3R's state starts from learned tokens), plus a little
    per-snapshot noise. No slot is the same in every scene: a constant slot would let an adapter
    attend to it alone and ignore the scene (seen in training runs with zero padding slots)."""
    rows = [torch.cat([d, c, torch.tensor([1.0, 0.0])]) for d, c in zip(env["front_dirs"], env["front_cols"])]
    rows += [torch.cat([d, c, torch.tensor([0.0, 1.0])]) for d, c in zip(env["back_dirs"], env["back_cols"])]
    rows += [torch.cat([torch.zeros(3), env["front_base"], torch.tensor([1.0, 1.0])]),
             torch.cat([torch.zeros(3), env["back_base"], torch.tensor([-1.0, 1.0])])]
    if len(rows) > tokens:
        raise InputError(f"The procedural scene needs {len(rows)} state tokens; {tokens} were asked for.",
                         "Ask for more state tokens or fewer blobs.")
    rows += [torch.zeros(8)] * (tokens - len(rows))
    glob = torch.cat([env["front_base"], env["back_base"]])
    feats = torch.stack([torch.cat([r, glob]) for r in rows])
    fixed = torch.Generator().manual_seed(12345)
    proj = torch.randn(feats.shape[1], width, generator=fixed) / math.sqrt(feats.shape[1])
    slots = 0.3 * torch.randn(tokens, width, generator=fixed)
    g = torch.Generator().manual_seed(int(seed) + 777)
    return (feats @ proj + slots)[None] + 0.01 * torch.randn(snapshots, tokens, width, generator=g)


@dataclass
class ProceduralMultiCam:
    """In-memory procedural scene: ``videos[cam] [T, 3, H, W]``, ``c2w[cam] [T, 4, 4]``, ``K [3, 3]``,
    and the synthetic scene latent of camera ``cam00`` (``state_tokens [K, S, D]`` at ``state_frames``)."""

    name: str
    videos: dict[str, torch.Tensor]
    c2w: dict[str, torch.Tensor]
    K: torch.Tensor
    state_tokens: torch.Tensor
    state_frames: list[int]


def procedural_multicam_scene(seed: int, cameras: int = 3, frames: int = 5, height: int = 64, width: int = 64,
                              front_blobs: int = 4, back_blobs: int = 4, state_tokens: int = 16,
                              state_dim: int = 32, state_every: int = 1, fov_deg: float = 60.0,
                              target_heading: tuple[float, float] = (110.0, 180.0),
                              back_palette: int = 0) -> ProceduralMultiCam:
    """A procedural scene (module docstring). ``cam00`` pans from -10 to +10 degrees (front only);
    camera ``j >= 1`` starts at a random heading in ``target_heading`` degrees to the left or right
    and pans 30 degrees further round, so it sees mostly the back half, unseen by ``cam00``.

    ``back_palette``: 0 = the hidden backdrop colour is uniformly random; K > 0 = it is colour
    ``seed mod K`` of ``BACK_PALETTE``. A few discrete colours keep what must be learnt from the
    scene latent small: through a (random) VAE the target's latents are a strongly nonlinear
    function of a continuous colour, which a few dozen scenes cannot pin down."""
    if cameras < 2 or frames < 1:
        raise InputError(f"A procedural scene needs >= 2 cameras and >= 1 frame (got {cameras}, {frames}).",
                         "Ask for more cameras or frames.")
    env = _environment(seed, front_blobs, back_blobs, back_palette)
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float64)
    g = torch.Generator().manual_seed(int(seed) + 1)
    s = torch.linspace(0, 1, frames, dtype=torch.float64) if frames > 1 else torch.zeros(1, dtype=torch.float64)
    paths = {"cam00": [-10 + 20 * float(x) for x in s]}
    for j in range(1, cameras):
        lo, hi = target_heading
        start = float(lo + (hi - lo) * torch.rand(1, generator=g)) * (1 if torch.rand(1, generator=g) < 0.5 else -1)
        paths[f"cam{j:02d}"] = [start + 30 * float(x) * (1 if start > 0 else -1) for x in s]
    videos, c2w = {}, {}
    for cam, yaws in paths.items():
        poses = torch.eye(4, dtype=torch.float64).repeat(frames, 1, 1)
        for i, yaw in enumerate(yaws):
            poses[i, :3, :3] = _yaw(yaw)
        c2w[cam] = poses
        videos[cam] = torch.stack([_render(env, poses[i, :3, :3], K, height, width) for i in range(frames)])
    kept = list(range(0, frames, max(1, state_every)))
    tokens = _synthetic_tokens(env, state_tokens, state_dim, len(kept), seed)
    return ProceduralMultiCam(f"procedural_{seed:05d}", videos, c2w, K, tokens, kept)


def write_multicam_scene(scene: ProceduralMultiCam, folder: str | Path) -> Path:
    """Write a procedural scene in the folder layout (videos as .npz, the source's scene latent cache)."""
    folder = Path(folder)
    cams = {}
    for cam, video in scene.videos.items():
        arr = (video.permute(0, 2, 3, 1).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
        with atomic_writer(folder / "videos" / f"{cam}.npz", "wb") as f:
            np.savez(f, frames=arr)
        cams[cam] = {"c2w": scene.c2w[cam].tolist(), "K": scene.K.tolist()}
    atomic_write_text(folder / CAMERAS_FILE, json.dumps({"format": LAYOUT_FORMAT, "version": LAYOUT_VERSION,
                                                          "cameras": cams}))
    src = "cam00"
    rel = torch.linalg.inv(scene.c2w[src][0]) @ scene.c2w[src]
    write_scene_tokens(folder / "scene_latents" / f"{src}.safetensors", scene.state_tokens, scene.state_frames, rel)
    return folder


def write_procedural_multicam(root: str | Path, num_scenes: int, seed: int = 0, **scene_kw) -> list[Path]:
    """Write ``num_scenes`` procedural scenes (seeds ``seed, seed+1, ...``) under ``root``."""
    if num_scenes < 1:
        raise InputError(f"num_scenes must be >= 1, got {num_scenes}.", "Ask for at least one scene.")
    root = Path(root)
    return [write_multicam_scene(procedural_multicam_scene(seed + i, **scene_kw), root / f"scene_{seed + i:05d}")
            for i in range(num_scenes)]


# ------------------------------------------------------------------------------------------ CLI

def add_arguments(ap) -> None:
    ap.add_argument("--out", required=True, help="data root to write scene folders into")
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--frames", type=int, default=5, help="frames per video (4k+1 for the Wan VAE)")
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--state-tokens", type=int, default=16)
    ap.add_argument("--state-dim", type=int, default=32)
    ap.add_argument("--back-blobs", type=int, default=4, help="blobs on the back half (unseen by the source)")
    ap.add_argument("--back-palette", type=int, default=0,
                    help="0: random hidden backdrop colours; K: one of K fixed colours (seed mod K)")
    ap.add_argument("--seed", type=int, default=0)


def main(args) -> int:
    paths = write_procedural_multicam(args.out, args.scenes, seed=args.seed, cameras=args.cameras, frames=args.frames,
                                      height=args.height, width=args.width, state_tokens=args.state_tokens,
                                      state_dim=args.state_dim, back_blobs=args.back_blobs,
                                      back_palette=args.back_palette)
    print(f"wrote {len(paths)} scenes under {args.out}")
    return 0
