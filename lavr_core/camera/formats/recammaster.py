"""ReCamMaster / MultiCamVideo camera files (``camera_extrinsics.json``) and the model's ``cam_emb``.

File layout (Unreal Engine export)::

    {"frame0": {"cam01": "[r00 r01 r02 0] [r10 r11 r12 0] [r20 r21 r22 0] [tx ty tz 1] ", ..., "cam10": ...},
     "frame1": {...}, ...}

Each string is a 4x4 matrix in Unreal's **row-vector** layout (rows = the camera's UE X-forward,
Y-right, Z-up axes in world coordinates, translation in the last row), in **centimetres**, in
Unreal's left-handed world (X forward, Y right, Z up). ReCamMaster turns it into an OpenCV-axes
camera-to-world matrix in metres with four steps (``unreal_to_opencv``):

1. transpose (column-vector layout, translation in the last column);
2. reorder the columns ``[1, 2, 0, 3]`` (camera x = UE right, y = UE up, z = UE forward);
3. negate column 1 (y up -> y down): OpenCV camera axes x right, y down, z forward;
4. divide the translation by 100 (cm -> m).

The result still has rows in Unreal's *left-handed* world, so its 3x3 block has determinant -1.
A ``CameraTrajectory`` needs a right-handed world, so the reader also re-expresses the *world* the
way step 2-3 re-express the camera (``WORLD_FROM_UNREAL``: world x = Unreal right, y = Unreal down,
z = Unreal forward). That map is a reflection, which makes every pose a proper rigid transform, and
a camera with Unreal's identity rotation gets the identity rotation. A world map applied to every
frame cancels in ``inv(c2w_0) @ c2w_i``, so the relative poses the model sees are exactly
ReCamMaster's. The writer undoes both.

The model input ``cam_emb`` (``recammaster_cam_emb``) is ``[T_latent, 12]``: for raw frames
0, 4, 8, ... the relative pose ``inv(c2w_0) @ c2w_i``, top 3x4, flattened row-major.

The file has no intrinsics. The MultiCamVideo renders are 1280x1280 on a 23.76 mm square sensor
with 18/24/35/50 mm lenses; ReCamMaster resizes them to cover 832x480 and centre-crops.
``recammaster_intrinsics`` builds that K (24 mm unless told otherwise) and the reader records the
assumption in ``meta``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ...errors import TrajectoryError
from ..trajectory import CameraTrajectory
from ..transforms import invert_pose
from ._common import atomic_write_text, check_rotation, fail, fmt, parse_numbers
from .lavr_json import load_json

FORMAT_NAME = "recammaster"

#: MultiCamVideo render: square images and sensor (README of the dataset).
RENDER_SIZE = 1280
SENSOR_MM = 23.76
#: Size ReCamMaster works at (videos resized to cover, then centre-cropped).
MODEL_WIDTH, MODEL_HEIGHT = 832, 480
#: Frame rate of the MultiCamVideo renders.
DATASET_FPS = 15.0
#: ``cam_emb`` samples one raw frame per Wan latent frame.
LATENT_STRIDE = 4

#: World axes of a LaVR pose read from Unreal: x = Unreal +Y (right), y = -Unreal Z (down),
#: z = Unreal +X (forward); applied on the world side after ReCamMaster's four steps (see module doc).
WORLD_FROM_UNREAL = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0],
                                  [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)

_ROW = re.compile(r"\[([^\[\]]*)\]")
_CAM = re.compile(r"^cam(\d+)$")
_FRAME = re.compile(r"^frame(\d+)$")


# ------------------------------------------------------------------------------ matrix layout

def parse_unreal_matrix(text: str, path="<string>", item: str | None = None) -> torch.Tensor:
    """The ``[4, 4]`` float64 matrix of one ``"[a b c d] [e f g h] [i j k l] [x y z 1]"`` string, as written
    (row-vector layout: translation in the last row)."""
    if not isinstance(text, str):
        fail(path, f"Expected a matrix string, got {type(text).__name__}.",
             "Each camera entry is a string of four bracketed rows of four numbers.", item=item)
    rows = _ROW.findall(text)
    if len(rows) != 4 or _ROW.sub("", text).strip():
        fail(path, f"Expected four bracketed rows like \"[1 0 0 0] [0 1 0 0] [0 0 1 0] [x y z 1]\", got {text[:80]!r}.",
             "The file may be truncated or hand-edited; re-export it.", item=item)
    M = []
    for r in rows:
        tok = r.replace(",", " ").split()
        if len(tok) != 4:
            fail(path, f"A row has {len(tok)} numbers instead of 4: [{r}].", "Each of the four rows holds 4 numbers.",
                 item=item)
        M.append(parse_numbers(tok, path, None, f"matrix of {item or 'the camera'}"))
    M = torch.tensor(M, dtype=torch.float64)
    if (M[:, 3] - torch.tensor([0, 0, 0, 1.0], dtype=torch.float64)).abs().max() > 1e-6:
        fail(path, f"The last column is {M[:, 3].tolist()}, not [0, 0, 0, 1]: not an Unreal row-vector transform.",
             "Translation belongs in the last row; check the file comes from the MultiCamVideo/ReCamMaster export.",
             item=item)
    return M


def format_unreal_matrix(M: torch.Tensor) -> str:
    """The string form of one ``[4, 4]`` row-vector matrix (full float precision)."""
    return "".join("[" + " ".join(fmt(x) for x in row) + "] " for row in M.tolist())


def unreal_to_opencv(M: torch.Tensor) -> torch.Tensor:
    """ReCamMaster's four steps: Unreal row-vector matrices ``[..., 4, 4]`` (cm) -> OpenCV-axes c2w (m),
    rows still in Unreal's left-handed world (det of the 3x3 block is -1)."""
    C = M.transpose(-1, -2)[..., [1, 2, 0, 3]].clone()
    C[..., :, 1] = -C[..., :, 1]
    C[..., :3, 3] = C[..., :3, 3] / 100.0
    return C


def opencv_to_unreal(C: torch.Tensor) -> torch.Tensor:
    """Inverse of ``unreal_to_opencv``."""
    C = C.clone()
    C[..., :3, 3] = C[..., :3, 3] * 100.0
    C[..., :, 1] = -C[..., :, 1]
    M = torch.empty_like(C)
    M[..., [1, 2, 0, 3]] = C
    return M.transpose(-1, -2)


def unreal_to_c2w(M: torch.Tensor) -> torch.Tensor:
    """Unreal matrices -> LaVR c2w (OpenCV axes, metres, right-handed world: ``WORLD_FROM_UNREAL`` applied)."""
    return WORLD_FROM_UNREAL.to(M.dtype) @ unreal_to_opencv(M)


def c2w_to_unreal(c2w: torch.Tensor) -> torch.Tensor:
    """LaVR c2w -> Unreal row-vector matrices in cm (inverse of ``unreal_to_c2w``)."""
    return opencv_to_unreal(WORLD_FROM_UNREAL.T.to(c2w.dtype) @ c2w)


#: The name ``lavr_core.wan.recammaster`` uses for the same conversion.
unreal_to_opencv_c2w = unreal_to_c2w


# --------------------------------------------------------------------------------- intrinsics

def recammaster_intrinsics(width: int = MODEL_WIDTH, height: int = MODEL_HEIGHT,
                           focal_mm: float = 24.0) -> torch.Tensor:
    """``[3, 3]`` K (pixels) of a MultiCamVideo camera (1280x1280 render, 23.76 mm sensor, ``focal_mm`` lens)
    after ReCamMaster's resize-to-cover and centre crop to ``width`` x ``height``."""
    if not focal_mm > 0:
        raise TrajectoryError(f"Lens focal length {focal_mm!r} mm is not positive.",
                              "The dataset uses 18, 24, 35 or 50 mm.")
    scale = max(width, height) / RENDER_SIZE  # covering a square render: the longer side fits
    f = focal_mm / SENSOR_MM * RENDER_SIZE * scale
    return torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float64)


# ------------------------------------------------------------------------------------ reading

def _cam_key(cam, available: list[str], path) -> str:
    if cam is None:
        if len(available) == 1:
            return available[0]
        raise TrajectoryError(f"{path} holds {len(available)} cameras ({', '.join(available)}).",
                              "Pick one with cam=1 .. cam=N (or cam='cam01').")
    key = f"cam{int(cam):02d}" if isinstance(cam, int) or str(cam).isdigit() else str(cam)
    if key not in available:
        raise TrajectoryError(f"{path} has no camera {key!r}; it has {', '.join(available)}.",
                              "Pick one of those.")
    return key


def read_recammaster_matrices(path) -> dict[str, torch.Tensor]:
    """Every camera of a ``camera_extrinsics.json`` as raw Unreal matrices: ``{"cam01": [F, 4, 4], ...}``."""
    path = Path(path)
    data = load_json(path, "ReCamMaster camera_extrinsics.json")
    if not isinstance(data, dict) or not data:
        fail(path, "Expected an object {\"frame0\": {\"cam01\": \"[..] [..] [..] [..]\", ...}, ...}.",
             "Pass the camera_extrinsics.json of a MultiCamVideo scene.")
    frames = {}
    for key in data:
        m = _FRAME.match(key)
        if not m:
            fail(path, f"Unexpected key {key!r}.", "Top-level keys are frame0, frame1, ...", item=key)
        frames[int(m.group(1))] = key
    order = sorted(frames)
    if order != list(range(len(order))):
        gap = next(i for i, f in enumerate(order) if f != i)
        fail(path, f"frame{gap} is missing (frames must run 0, 1, 2, ... without gaps).",
             "The file may be truncated; re-export it.")
    cams = data[frames[0]]
    if not isinstance(cams, dict) or not cams:
        fail(path, "frame0 holds no cameras.", "Each frame maps cam01, cam02, ... to matrix strings.", item="frame0")
    names = sorted(cams, key=lambda c: (int(_CAM.match(c).group(1)) if _CAM.match(c) else 10**9, c))
    out = {}
    for cam in names:
        mats = []
        for i in order:
            entry = data[frames[i]]
            if not isinstance(entry, dict) or cam not in entry:
                fail(path, f"{cam} is missing in frame{i}.", "Every frame must list the same cameras.",
                     item=f"frame{i}")
            mats.append(parse_unreal_matrix(entry[cam], path, f"frame{i}.{cam}"))
        out[cam] = torch.stack(mats)
    return out


def read_recammaster(path, cam=None, width: int = MODEL_WIDTH, height: int = MODEL_HEIGHT,
                     focal_mm: float = 24.0, fps: float = DATASET_FPS, K: torch.Tensor | None = None,
                     **_unused) -> CameraTrajectory:
    """One camera of a ReCamMaster/MultiCamVideo ``camera_extrinsics.json`` as a trajectory.

    Args:
        cam: which camera (1-based index or ``"cam07"``); may be omitted when the file has one.
        width, height, focal_mm: intrinsics, which the file does not hold (see
            ``recammaster_intrinsics``); or pass ``K`` ([3, 3] or [T, 3, 3] pixels) directly.
        fps: frame rate (the dataset renders at 15).

    Poses are absolute (metres, world axes ``WORLD_FROM_UNREAL``); ``meta`` keeps the camera name.
    """
    path = Path(path)
    mats = read_recammaster_matrices(path)
    key = _cam_key(cam, list(mats), path)
    M = mats[key]
    c2w = unreal_to_c2w(M)
    for i in range(c2w.shape[0]):
        c2w[i, :3, :3] = check_rotation(c2w[i, :3, :3], path, item=f"frame{i}.{key}")
    meta = {"source": FORMAT_NAME, "cam": key}
    if K is None:
        K = recammaster_intrinsics(width, height, focal_mm)
        meta["intrinsics_note"] = (f"not in the file: assumed {focal_mm:g} mm lens on the 23.76 mm sensor of a "
                                   f"1280x1280 render, resized to cover and centre-cropped to {width}x{height}")
    try:
        return CameraTrajectory(c2w=c2w, K=K, width=width, height=height, fps=fps, meta=meta)
    except TrajectoryError as e:
        raise TrajectoryError(f"{path}: {e.message}", e.hint) from None


# ------------------------------------------------------------------------------------ writing

def _rebased(traj: CameraTrajectory, start_ue_cm) -> torch.Tensor:
    """Poses moved rigidly (one world transform) so frame 0 sits at Unreal's identity rotation at
    ``start_ue_cm``: where MultiCamVideo cameras start. Relative poses are unchanged."""
    M0 = torch.eye(4, dtype=torch.float64)
    M0[3, :3] = torch.as_tensor(start_ue_cm, dtype=torch.float64)
    G = unreal_to_c2w(M0) @ invert_pose(traj.c2w[:1])
    return G @ traj.c2w


def recammaster_json(cams: dict[str, CameraTrajectory], start_ue_cm=None) -> dict:
    """The ``{"frame{i}": {"cam01": "...", ...}}`` object for one or more equally long trajectories."""
    if not cams:
        raise TrajectoryError("No camera trajectories to write.", "Pass at least one trajectory.")
    lengths = {t.num_frames for t in cams.values()}
    if len(lengths) > 1:
        raise TrajectoryError(f"The cameras have different frame counts {sorted(lengths)}.",
                              "All cameras of one ReCamMaster file share the frames; resample them to one length.")
    out: dict = {f"frame{i}": {} for i in range(lengths.pop())}
    for name, traj in cams.items():
        c2w = traj.c2w if start_ue_cm is None else _rebased(traj, start_ue_cm)
        M = c2w_to_unreal(c2w)
        for i in range(M.shape[0]):
            out[f"frame{i}"][name] = format_unreal_matrix(M[i])
    return out


def write_recammaster(traj: CameraTrajectory | dict, path, cam: str | int = "cam01", start_ue_cm=None,
                      **_unused) -> Path:
    """Write a ``camera_extrinsics.json`` (atomic).

    Args:
        traj: one trajectory (written as ``cam``) or ``{"cam01": traj, "cam02": ...}``.
        start_ue_cm: ``None`` writes the poses as they are (exact round trip). ``(x, y, z)`` moves each
            trajectory rigidly so its frame 0 has Unreal's identity rotation at that position in cm, as
            the MultiCamVideo cameras do (the presets start at ``(3390, 1380, 240)``); relative poses,
            hence ReCamMaster's input, are unchanged.
    """
    if isinstance(traj, CameraTrajectory):
        traj = {f"cam{int(cam):02d}" if str(cam).isdigit() else str(cam): traj}
    return atomic_write_text(Path(path), json.dumps(recammaster_json(traj, start_ue_cm), indent=1) + "\n")


# ------------------------------------------------------------------------------------ cam_emb

def recammaster_cam_emb(traj: CameraTrajectory, stride: int = LATENT_STRIDE,
                        reference_c2w: torch.Tensor | None = None) -> torch.Tensor:
    """ReCamMaster's camera input ``[T_latent, 12]`` float32 for a trajectory of ``1 + stride * k`` frames.

    Row ``j`` is ``inv(ref) @ c2w[stride * j]``, top 3x4, flattened row-major, with ``ref`` the
    trajectory's first pose (inference) or ``reference_c2w`` ([4, 4], training uses the *source*
    camera's first pose). 81 frames give 21 rows. The model casts it to bf16 itself.
    """
    T = traj.num_frames
    if (T - 1) % stride:
        raise TrajectoryError(f"ReCamMaster needs 1 + {stride}*k frames (e.g. 81); this trajectory has {T}.",
                              f"Resample the trajectory to {1 + stride * round((T - 1) / stride)} frames.")
    ref = traj.c2w[0] if reference_c2w is None else torch.as_tensor(reference_c2w, dtype=torch.float64)
    rel = invert_pose(ref) @ traj.c2w[::stride]
    if reference_c2w is None:
        rel[0] = torch.eye(4, dtype=rel.dtype)  # exact, as the official code sets it (not inv(c) @ c)
    return rel[:, :3, :].reshape(-1, 12).to(torch.float32)
