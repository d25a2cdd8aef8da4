"""ReCamMaster's ten preset target trajectories (``--cam_type 1..10``), rebuilt from a formula.

What the official ``camera_extrinsics.json`` (MultiCamVideo ``val/10basic_trajectories``) holds, read
off its 81 frames (see ``tests/unit/test_recammaster_presets.py``, which checks every frame this
module makes against the reference data to 1e-4):

* every camera starts at the same pose (Unreal identity rotation at (3390, 1380, 240) cm);
* the motion is linear in time and its nominal amount is reached at raw frame **80.5**, so raw
  frame ``f`` shows the fraction ``u = f / 80.5`` of it (frame 80 shows 80/80.5 = 99.38 %:
  19.876 degrees of a 20 degree pan, 1.9876 m of a 2 m dolly);
* pans and tilts turn about the camera's own y / x axis by ``u`` times 20 / 10 degrees;
* zooms dolly 2 m along the view axis (focal length unchanged);
* "translate up/down" move 1 m along the camera's y axis while the view stays locked on a point
  4 m straight ahead of the start, so the camera tilts as it moves (13.95 degrees at frame 80);
* arcs move in a straight line (a chord, not a circle) from the start to the point 30 degrees round
  the 4 m circle about that same target, with the view locked on the target.

Poses are in LaVR's convention (OpenCV camera axes, metres) relative to the first frame, which is
the identity: exactly what ReCamMaster's relative poses ``inv(c2w_0) @ c2w_i`` are. With
``num_frames`` other than 81 the same path is sampled evenly (frame 0 = raw frame 0, the last frame
= raw frame 80).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...errors import TrajectoryError
from ..trajectory import CameraTrajectory, check_frame_count
from ..transforms import axis_angle_to_matrix, look_at, make_pose
from .recammaster import DATASET_FPS, MODEL_HEIGHT, MODEL_WIDTH, recammaster_intrinsics

#: Raw frame at which a preset's nominal motion completes (the files stop at frame 80).
FULL_MOTION_AT_FRAME = 80.5
#: Frames of a ReCamMaster preset file.
RAW_FRAMES = 81
#: Distance (m) of the point the "translate" and "arc" presets keep looking at.
TARGET_DISTANCE = 4.0
#: Where every preset camera starts in Unreal (cm), with Unreal's identity rotation.
START_UE_CM = (3390.0, 1380.0, 240.0)


@dataclass(frozen=True)
class PresetMotion:
    """One preset, in LaVR camera axes (x right, y down, z forward), all at full motion ``u = 1``.

    Attributes:
        label: the name ReCamMaster's README gives it.
        axis, degrees: rotation about a camera axis (pan/tilt); ``None`` for look-at presets.
        offset: camera displacement in metres (translations/dolly); arcs use ``arc_degrees`` instead.
        arc_degrees: signed angle round the ``TARGET_DISTANCE`` circle about the target (+ = right).
        look_at_target: keep the view locked on the point ``TARGET_DISTANCE`` ahead of the start.
    """

    label: str
    axis: tuple[float, float, float] | None = None
    degrees: float = 0.0
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    arc_degrees: float = 0.0
    look_at_target: bool = False

    def end_offset(self) -> tuple[float, float, float]:
        if not self.arc_degrees:
            return self.offset
        a = math.radians(self.arc_degrees)
        return (TARGET_DISTANCE * math.sin(a), 0.0, TARGET_DISTANCE * (1.0 - math.cos(a)))


#: ``cam_type`` 1..10 in ReCamMaster's order.
PRESETS: dict[str, PresetMotion] = {
    "pan_right": PresetMotion("Pan Right", axis=(0, 1, 0), degrees=20.0),
    "pan_left": PresetMotion("Pan Left", axis=(0, 1, 0), degrees=-20.0),
    "tilt_up": PresetMotion("Tilt Up", axis=(1, 0, 0), degrees=10.0),
    "tilt_down": PresetMotion("Tilt Down", axis=(1, 0, 0), degrees=-10.0),
    "zoom_in": PresetMotion("Zoom In", offset=(0.0, 0.0, 2.0)),
    "zoom_out": PresetMotion("Zoom Out", offset=(0.0, 0.0, -2.0)),
    "translate_up": PresetMotion("Translate Up (with rotation)", offset=(0.0, -1.0, 0.0), look_at_target=True),
    "translate_down": PresetMotion("Translate Down (with rotation)", offset=(0.0, 1.0, 0.0), look_at_target=True),
    "arc_left": PresetMotion("Arc Left (with rotation)", arc_degrees=-30.0, look_at_target=True),
    "arc_right": PresetMotion("Arc Right (with rotation)", arc_degrees=30.0, look_at_target=True),
}
PRESET_NAMES = tuple(PRESETS)


def preset_name(name_or_index) -> str:
    """Canonical preset name from a name (``"pan_right"``, ``"Pan Right"``, ``"pan-right"``) or a
    ReCamMaster ``cam_type`` 1..10."""
    if isinstance(name_or_index, bool):
        name_or_index = str(name_or_index)
    if isinstance(name_or_index, int) or (isinstance(name_or_index, str) and name_or_index.strip().isdigit()):
        k = int(name_or_index)
        if 1 <= k <= len(PRESET_NAMES):
            return PRESET_NAMES[k - 1]
        raise TrajectoryError(f"ReCamMaster cam_type {k} does not exist.",
                              f"Use 1..{len(PRESET_NAMES)}: "
                              + ", ".join(f"{i + 1}={n}" for i, n in enumerate(PRESET_NAMES)))
    key = str(name_or_index).split("(")[0].strip().lower().replace("-", "_").replace(" ", "_")
    if key in PRESETS:
        return key
    raise TrajectoryError(f"Unknown ReCamMaster preset {name_or_index!r}.",
                          f"Use one of {', '.join(PRESET_NAMES)} or a cam_type 1..{len(PRESET_NAMES)}.")


def preset_poses(name_or_index, num_frames: int = RAW_FRAMES) -> torch.Tensor:
    """``[num_frames, 4, 4]`` float64 relative c2w poses (frame 0 = identity) of a preset."""
    name = preset_name(name_or_index)
    n = check_frame_count(num_frames, "preset")
    p = PRESETS[name]
    raw = torch.linspace(0.0, RAW_FRAMES - 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    u = raw / FULL_MOTION_AT_FRAME
    eye = u[:, None] * torch.tensor(p.end_offset(), dtype=torch.float64)
    if p.look_at_target:
        target = torch.tensor([0.0, 0.0, TARGET_DISTANCE], dtype=torch.float64).expand(n, 3)
        return look_at(eye, target)
    if p.axis is not None:
        R = axis_angle_to_matrix(torch.tensor(p.axis, dtype=torch.float64).expand(n, 3), torch.deg2rad(u * p.degrees))
    else:
        R = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
    return make_pose(R, eye)


def recammaster_preset(name_or_index, num_frames: int = RAW_FRAMES, width: int = MODEL_WIDTH,
                       height: int = MODEL_HEIGHT, fps: float = DATASET_FPS,
                       focal_mm: float = 24.0) -> CameraTrajectory:
    """A ReCamMaster preset (``"pan_right"`` ... ``"arc_right"`` or ``cam_type`` 1..10) as a trajectory.

    Poses are relative to the first frame (identity), OpenCV axes, metres (see the module doc).
    Intrinsics are not part of the presets (the model never sees them); ``focal_mm`` picks the lens
    of ``recammaster_intrinsics`` at ``width`` x ``height``.
    """
    name = preset_name(name_or_index)
    return CameraTrajectory(
        c2w=preset_poses(name, num_frames), K=recammaster_intrinsics(width, height, focal_mm),
        width=width, height=height, fps=fps,
        meta={"source": "recammaster_preset", "preset": name, "cam_type": PRESET_NAMES.index(name) + 1,
              "label": PRESETS[name].label, "start_ue_cm": list(START_UE_CM),
              "intrinsics_note": f"presets carry no intrinsics: {focal_mm:g} mm lens assumed"})
