"""nerfstudio ``transforms.json`` (the file ``ns-process-data`` writes and nerfstudio, gsplat and
many 3DGS tools read).

Layout::

    {"camera_model": "OPENCV",            # or PINHOLE, SIMPLE_PINHOLE, SIMPLE_RADIAL, RADIAL
     "fl_x": ..., "fl_y": ..., "cx": ..., "cy": ..., "w": ..., "h": ...,   # global, or per frame
     "k1": ..., "k2": ..., "p1": ..., "p2": ...,                            # distortion (optional)
     "frames": [{"file_path": "images/frame_00001.png",
                 "transform_matrix": [[...4x4 camera-to-world...]], ...}, ...],
     "applied_transform": [[...3x4...]], "applied_scale": s}               # optional

* ``transform_matrix`` is camera-to-world with **OpenGL camera axes** (x right, y up, z backward);
  the reader flips y and z to OpenCV.
* Intrinsics are pixels; each of fl_x/fl_y/cx/cy/w/h may be global or per frame (a global value
  wins, as in nerfstudio's parser). All six are required, as nerfstudio requires them.
* Distortion parameters are preserved in ``meta["distortion"]`` but **not applied**: the trajectory
  is a pinhole camera. Fisheye and equirectangular models are refused.
* ``applied_transform`` (3x4) and ``applied_scale`` record how ``ns-process-data`` moved the
  original (e.g. COLMAP) world: ``x_file = applied_scale * (A @ [x_orig; 1])``. By default
  (``world="file"``) poses are taken as the file states them and both values are kept in ``meta`` and
  written back unchanged. ``world="original"`` undoes them, giving poses in the original world; the
  writer then re-applies them, so either way a read/write round trip reproduces the file's poses.
* nerfstudio orders frames by file name, and so does this reader (natural order: ``2`` before
  ``10``). A top-level ``fps`` (our writer adds it; nerfstudio ignores it) is read back.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ...errors import TrajectoryError
from ..trajectory import CameraTrajectory
from ..transforms import convert_axes, orthonormalize
from ._common import (atomic_write_text, check_no_skew, check_rotation, fail, json_matrix, json_number,
                      natural_key)
from .lavr_json import load_json

FORMAT_NAME = "nerfstudio"
EXTENSIONS = (".json",)

#: Camera models that are pinhole cameras (possibly with lens distortion we keep but do not apply).
PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


def _applied(data: dict, path) -> tuple[torch.Tensor | None, float | None]:
    """``applied_transform`` as a 4x4 rigid map and ``applied_scale`` (None when absent)."""
    A = s = None
    if "applied_transform" in data:
        rows = data["applied_transform"]
        n = 4 if isinstance(rows, list) and len(rows) == 4 else 3
        A = torch.eye(4, dtype=torch.float64)
        A[:n] = torch.tensor(json_matrix(rows, n, 4, path, "applied_transform"), dtype=torch.float64)
        if (A[3] - torch.tensor([0, 0, 0, 1.0], dtype=torch.float64)).abs().max() > 1e-9:
            fail(path, "applied_transform's last row is not [0, 0, 0, 1].",
                 "It must be a rigid 3x4 (or 4x4) transform.", item="applied_transform")
        A[:3, :3] = check_rotation(A[:3, :3], path, item="applied_transform")
    if "applied_scale" in data:
        s = json_number(data["applied_scale"], path, "applied_scale")
        if s <= 0:
            fail(path, f"applied_scale is {s:g}.", "It must be a positive scale factor.", item="applied_scale")
    return A, s


def read_nerfstudio(path, fps: float | None = None, world: str = "file", **_unused) -> CameraTrajectory:
    """Read a nerfstudio ``transforms.json`` (or the folder holding one).

    Args:
        fps: frame rate (the format has none; default: the file's ``fps`` key, else 16).
        world: ``"file"`` (poses as written) or ``"original"`` (``applied_transform`` /
            ``applied_scale`` undone). See the module docstring.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    if world not in ("file", "original"):
        raise TrajectoryError(f"world={world!r} is not known.", "Use world='file' or world='original'.")
    data = load_json(path, "nerfstudio transforms.json")
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        fail(path, "This JSON has no \"frames\" list, so it is not a nerfstudio transforms.json.",
             "Pass the transforms.json that ns-process-data (or your exporter) wrote.")
    frames = data["frames"]
    if not frames:
        fail(path, "\"frames\" is empty.", "A trajectory needs at least one frame.", item="frames")
    model = data.get("camera_model", "PINHOLE")
    if model not in PINHOLE_MODELS:
        fail(path, f"camera_model {model!r} is not a pinhole camera.",
             f"LaVR reads {', '.join(PINHOLE_MODELS)}; undistort the images to a pinhole camera first.",
             item="camera_model")

    names = []
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict):
            fail(path, "A frame is not a JSON object.",
                 "Each frame is {\"file_path\": ..., \"transform_matrix\": ...}.", item=f"frames[{i}]")
        names.append(fr.get("file_path"))
    if any(n is not None for n in names):
        missing = [i for i, n in enumerate(names) if not isinstance(n, str)]
        if missing:
            fail(path, "This frame has no file_path while others do.",
                 "Give every frame its image path (nerfstudio needs them to order frames).",
                 item=f"frames[{missing[0]}]")
        order = sorted(range(len(frames)), key=lambda i: natural_key(names[i]))
    else:
        order = list(range(len(frames)))  # a pure camera path without images: keep the file's order

    c2ws, Ks, sizes, dists = [], [], set(), []
    notes = set()
    for i in order:
        fr, item = frames[i], f"frames[{i}]"
        if "transform_matrix" not in fr:
            fail(path, "This frame has no transform_matrix.", "Every frame needs its 4x4 camera-to-world matrix.",
                 item=item)
        rows = fr["transform_matrix"]
        nrows = 3 if isinstance(rows, list) and len(rows) == 3 else 4
        M = torch.eye(4, dtype=torch.float64)
        M[:nrows] = torch.tensor(json_matrix(rows, nrows, 4, path, f"{item}.transform_matrix"), dtype=torch.float64)
        if (M[3] - torch.tensor([0, 0, 0, 1.0], dtype=torch.float64)).abs().max() > 1e-6:
            fail(path, f"The last row of transform_matrix is {M[3].tolist()}, not [0, 0, 0, 1].",
                 "transform_matrix must be a rigid camera-to-world transform.", item=f"{item}.transform_matrix")
        M[3] = torch.tensor([0, 0, 0, 1.0], dtype=torch.float64)
        M[:3, :3] = check_rotation(M[:3, :3], path, item=f"{item}.transform_matrix")
        c2ws.append(M)

        def get(key, default=None):
            # nerfstudio's rule: a global value, when present, wins over the frame's own.
            if key in data:
                return json_number(data[key], path, key)
            if key in fr:
                return json_number(fr[key], path, f"{item}.{key}")
            return default

        w, h = get("w"), get("h")
        if w is None or h is None:
            fail(path, "The image size (w, h) is missing.", "Add \"w\" and \"h\" in pixels, globally or per frame.",
                 item=item)
        if w != int(w) or h != int(h) or w < 1 or h < 1:
            fail(path, f"Image size {w:g} x {h:g} is not positive whole pixels.", "Fix \"w\" / \"h\".", item=item)
        sizes.add((int(w), int(h)))
        fx, fy, cx, cy = (get(k) for k in ("fl_x", "fl_y", "cx", "cy"))
        absent = [k for k, v in zip(("fl_x", "fl_y", "cx", "cy"), (fx, fy, cx, cy)) if v is None]
        if absent:  # nerfstudio itself requires all four; guessing them would move every pixel
            fail(path, f"The intrinsics {', '.join(absent)} are missing.",
                 "Add fl_x, fl_y, cx, cy in pixels (globally or per frame), as ns-process-data writes them.",
                 item=item)
        if fx <= 0 or fy <= 0:
            fail(path, f"Focal length fl_x={fx:g}, fl_y={fy:g} is not positive.", "Give focal lengths in pixels.",
                 item=item)
        Ks.append([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        found = {k: get(k) for k in _DISTORTION_KEYS}
        dists.append({k: v for k, v in found.items() if v is not None})
    if len(sizes) > 1:
        fail(path, f"Frames have different image sizes {sorted(sizes)}.",
             "A LaVR trajectory has one image size; split the file or resize the images and scale the intrinsics.")
    (W, H), = sizes

    c2w = torch.stack(c2ws)
    A, s = _applied(data, path)
    if world == "original" and (A is not None or s is not None):
        # x_file = s * (A x_orig)  =>  pose_orig = A^-1 (S^-1 pose_file), S scaling translations only.
        c2w = c2w.clone()
        c2w[:, :3, 3] /= (s or 1.0)
        if A is not None:
            c2w = torch.linalg.inv(A) @ c2w
    c2w = convert_axes(c2w, "opengl", "opencv")

    meta = {"source": FORMAT_NAME, "camera_model": model, "world": world,
            "file_paths": [names[i] for i in order] if names[0] is not None else None}
    if A is not None:
        meta["applied_transform"] = A[:3].tolist()
    if s is not None:
        meta["applied_scale"] = s
    if any(dists):
        meta["distortion"] = dists if any(d != dists[0] for d in dists) else dists[0]
        notes.add("lens distortion is kept in meta but not applied (pinhole cameras)")
    if notes:
        meta["notes"] = sorted(notes)
    if fps is None:
        fps = json_number(data["fps"], path, "fps") if "fps" in data else 16.0
    try:
        return CameraTrajectory(c2w=c2w, K=torch.tensor(Ks, dtype=torch.float64), width=W, height=H,
                                fps=fps, meta=meta)
    except TrajectoryError as e:
        raise TrajectoryError(f"{path}: {e.message}", e.hint) from None


def _meta_applied(meta: dict) -> tuple[torch.Tensor | None, float | None]:
    A = s = None
    if meta.get("applied_transform") is not None:
        A = torch.eye(4, dtype=torch.float64)
        A[:3] = torch.as_tensor(meta["applied_transform"], dtype=torch.float64).reshape(3, 4)
        A[:3, :3] = orthonormalize(A[:3, :3], what="applied_transform in meta")
    if meta.get("applied_scale") is not None:
        s = float(meta["applied_scale"])
    return A, s


def write_nerfstudio(traj: CameraTrajectory, path, **_unused) -> Path:
    """Write ``traj`` as a nerfstudio ``transforms.json`` (atomic; ``path`` may be a folder).

    Global intrinsics when every frame shares one K, otherwise per frame. ``camera_model`` is
    ``PINHOLE`` (this trajectory has no distortion). ``file_path`` comes from ``meta["file_paths"]``
    when it has one name per frame, else ``images/frame_00001.png`` ... . ``applied_transform`` /
    ``applied_scale`` from ``meta`` are written back (and re-applied when ``meta["world"]`` is
    ``"original"``, see the module docstring).
    """
    path = Path(path)
    if path.is_dir() or path.suffix == "":
        path = path / "transforms.json"
    check_no_skew(traj.K, "nerfstudio")
    meta = traj.meta if isinstance(traj.meta, dict) else {}
    c2w = convert_axes(traj.c2w, "opencv", "opengl")
    A, s = _meta_applied(meta)
    if meta.get("world") == "original":
        if A is not None:
            c2w = A @ c2w
        if s is not None:
            c2w = c2w.clone()
            c2w[:, :3, 3] *= s
    names = meta.get("file_paths")
    if not (isinstance(names, list) and len(names) == traj.num_frames and all(isinstance(n, str) for n in names)
            and [natural_key(n) for n in names] == sorted(natural_key(n) for n in names)
            and len(set(names)) == len(names)):
        names = [f"images/frame_{i + 1:05d}.png" for i in range(traj.num_frames)]
    K = traj.K
    shared = bool((K == K[:1]).all())
    out: dict = {"camera_model": "PINHOLE"}
    if shared:
        out.update(fl_x=K[0, 0, 0].item(), fl_y=K[0, 1, 1].item(), cx=K[0, 0, 2].item(), cy=K[0, 1, 2].item())
    out.update(w=traj.width, h=traj.height, fps=traj.fps)
    frames = []
    for i in range(traj.num_frames):
        fr = {"file_path": names[i], "transform_matrix": c2w[i].tolist()}
        if not shared:
            fr.update(fl_x=K[i, 0, 0].item(), fl_y=K[i, 1, 1].item(), cx=K[i, 0, 2].item(), cy=K[i, 1, 2].item())
        frames.append(fr)
    out["frames"] = frames
    if A is not None:
        out["applied_transform"] = A[:3].tolist()
    if s is not None:
        out["applied_scale"] = s
    return atomic_write_text(path, json.dumps(out, indent=2) + "\n")
