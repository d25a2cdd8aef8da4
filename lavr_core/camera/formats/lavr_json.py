"""``lavr_trajectory`` version 1: LaVR's own lossless trajectory file (``*.lavr.json``).

Layout (JSON object)::

    {"format": "lavr_trajectory", "version": 1,
     "conventions": "<human-readable reminder, ignored on reading>",
     "num_frames": T, "width": W, "height": H, "fps": 16.0,
     "c2w": [T x 4x4 camera-to-world, OpenCV camera axes, scene units],
     "K":   [T x 3x3 intrinsics in pixels of W x H, principal point from the top-left corner],
     "meta": {...free-form JSON...}}

Numbers are written with Python's shortest round-trip ``repr``, so reading gives back the very same
float64 values (then ``CameraTrajectory`` re-orthonormalises, which moves them by ~1e-16 at most).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ...errors import TrajectoryError
from ..trajectory import CameraTrajectory
from ._common import atomic_write_text, check_rotation, fail, json_matrix, json_number, read_text

FORMAT_NAME = "lavr_trajectory"
VERSION = 1
EXTENSIONS = (".lavr.json",)

_CONVENTIONS = ("c2w: camera-to-world 4x4, OpenCV camera axes (x right, y down, z forward), right-handed world; "
                "K: 3x3 in pixels of width x height, principal point from the image's top-left corner; "
                "frame i is at time i / fps seconds")


def load_json(path: Path, what: str):
    """Parsed JSON, or a ``TrajectoryError`` with the line and column where the text stops being JSON."""
    text = read_text(path, what)
    if not text.strip():
        fail(path, "The file is empty.", f"Write or export the {what} file again; it may have been cut short.")
    try:
        return json.loads(text, parse_constant=lambda name: _reject_constant(path, name))
    except json.JSONDecodeError as e:
        fail(path, f"Not valid JSON (column {e.colno}: {e.msg}).",
             f"The file may be truncated or hand-edited; re-export the {what} file or fix the JSON there.",
             line=e.lineno)


def _reject_constant(path, name):
    fail(path, f"The JSON holds {name}, which is not a valid number.",
         "Every value must be finite; fix or drop that frame where the file was made.")


def read_lavr_json(path, **_unused) -> CameraTrajectory:
    """Read a ``lavr_trajectory`` file. Unknown keyword arguments are ignored (none are needed)."""
    path = Path(path)
    data = load_json(path, "lavr_trajectory")
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        fail(path, f"This JSON is not a {FORMAT_NAME} file (its \"format\" is "
                   f"{data.get('format') if isinstance(data, dict) else type(data).__name__!r}).",
             "Pass format='nerfstudio' or 'recammaster' if it is one of those, or re-save it from LaVR.")
    version = data.get("version")
    if version != VERSION:
        fail(path, f"{FORMAT_NAME} version {version!r} is not supported (this LaVR reads version {VERSION}).",
             "Update ComfyUI-LaVR, or re-save the trajectory with this version.")
    for key in ("c2w", "K", "width", "height", "fps"):
        if key not in data:
            fail(path, f"The key {key!r} is missing.", "The file is incomplete; re-save it from LaVR.")
    c2w, K = data["c2w"], data["K"]
    if not isinstance(c2w, list) or not c2w:
        fail(path, "\"c2w\" holds no poses.", "A trajectory needs at least one frame.", item="c2w")
    if not isinstance(K, list) or len(K) != len(c2w):
        fail(path, f"\"K\" has {len(K) if isinstance(K, list) else 'no'} matrices for {len(c2w)} poses.",
             "Give one 3x3 K per pose.", item="K")
    n = data.get("num_frames", len(c2w))
    if n != len(c2w):
        fail(path, f"\"num_frames\" says {n} but there are {len(c2w)} poses; the file looks truncated.",
             "Re-save the trajectory.", item="num_frames")
    c2w_t = torch.tensor([json_matrix(m, 4, 4, path, f"c2w[{i}]") for i, m in enumerate(c2w)], dtype=torch.float64)
    for i in range(c2w_t.shape[0]):  # per frame, so the error can name the frame's item
        if (c2w_t[i, 3] - torch.tensor([0, 0, 0, 1.0], dtype=torch.float64)).abs().max() > 1e-6:
            fail(path, f"The last row is {c2w_t[i, 3].tolist()}, not [0, 0, 0, 1].",
                 "Poses must be rigid 4x4 camera-to-world transforms.", item=f"c2w[{i}]")
        check_rotation(c2w_t[i, :3, :3], path, item=f"c2w[{i}]")
    K_t = torch.tensor([json_matrix(m, 3, 3, path, f"K[{i}]") for i, m in enumerate(K)], dtype=torch.float64)
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        fail(path, "\"meta\" is not a JSON object.", "Make it an object ({}) or remove it.", item="meta")
    size = []
    for key in ("width", "height"):
        v = json_number(data[key], path, key)
        if v != int(v) or v < 1:
            fail(path, f"\"{key}\" is {data[key]!r}, not a positive whole number of pixels.",
                 "Give the image size the intrinsics refer to.", item=key)
        size.append(int(v))
    fps = json_number(data["fps"], path, "fps")
    try:
        return CameraTrajectory(c2w=c2w_t, K=K_t, width=size[0], height=size[1], fps=fps, meta=meta)
    except TrajectoryError as e:  # CameraTrajectory's own checks (rigidity, focal, fps): add the file name
        raise TrajectoryError(f"{path}: {e.message}", e.hint) from None


def dumps_lavr_json(traj: CameraTrajectory) -> str:
    """The ``lavr_trajectory`` text of ``traj``: one frame per line so diffs stay readable."""
    try:
        meta = json.dumps(traj.meta, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise TrajectoryError(f"The trajectory's meta cannot be written as JSON ({e}).",
                              "Keep meta to strings, numbers, lists and dicts.") from None
    c2w = ",\n  ".join(json.dumps(m) for m in traj.c2w.tolist())
    K = ",\n  ".join(json.dumps(m) for m in traj.K.tolist())
    return (f'{{\n "format": "{FORMAT_NAME}",\n "version": {VERSION},\n'
            f' "conventions": {json.dumps(_CONVENTIONS)},\n'
            f' "num_frames": {traj.num_frames},\n "width": {traj.width},\n "height": {traj.height},\n'
            f' "fps": {json.dumps(traj.fps)},\n'
            f' "c2w": [\n  {c2w}\n ],\n "K": [\n  {K}\n ],\n "meta": {meta}\n}}\n')


def write_lavr_json(traj: CameraTrajectory, path, **_unused) -> Path:
    """Write ``traj`` losslessly (atomic). Returns the path written."""
    return atomic_write_text(Path(path), dumps_lavr_json(traj))
