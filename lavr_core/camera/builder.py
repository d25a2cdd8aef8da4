"""Camera presets: named camera moves (orbit, dolly, pan, zoom, ...) as trajectories.

A preset's *motion* is a pure function of ``(num_frames, amount, easing, target_depth)`` giving
per-frame poses **relative to the first camera** (the identity at frame 0, OpenCV camera axes:
+x right, +y down, +z forward) and a per-frame focal-length factor (1 except for zooms).
``build_preset`` places that motion on a starting camera: the identity camera, or a source
trajectory's cameras (``follow``: on top of the source's own motion, in each source camera's local
frame; ``first_camera``: from the source's first camera only, as ReCamMaster does).

Directions, from the camera operator's point of view (conventions: ``lavr_core.conventions``):
  * orbit/arc left: the camera moves to its left around a target ``target_depth`` ahead and turns
    right to keep the target centred (ReCamMaster's "arc left" is this at 30 degrees, 4 m).
  * pan right / tilt up / roll cw: the view turns right / up / the camera turns clockwise (the
    picture then turns counter-clockwise).
  * pedestal up moves towards -y (OpenCV y points down).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import TrajectoryError
from .interpolate import check_easing, ease, interpolate_poses, quat_power, resample_trajectory
from .trajectory import CameraTrajectory, check_frame_count
from .transforms import axis_angle_to_matrix, intrinsics_from_fov, make_pose, matrix_to_quat, quat_to_matrix

_F64 = torch.float64

#: The starting camera when there is no source: Wan / ReCamMaster's 832 x 480 frame, a 60 degree
#: horizontal field of view, Wan's 16 fps.
DEFAULT_WIDTH = 832
DEFAULT_HEIGHT = 480
DEFAULT_FOV_DEG = 60.0
DEFAULT_FPS = 16.0
#: Orbit target distance when none is given: ReCamMaster's arcs turn about a point 4 m ahead.
DEFAULT_TARGET_DEPTH = 4.0

SOURCE_MODES = ("follow", "first_camera")


@dataclass(frozen=True)
class PresetMotion:
    """Per-frame motion relative to the first camera.

    Attributes:
        c2w: ``[T, 4, 4]`` float64 poses in the first camera's frame (``c2w[0]`` is the identity).
        focal_scale: ``[T]`` factor on the focal length (fx, fy) of the starting intrinsics.
        freeze_time: the scene should be frozen while the camera moves (bullet time).
    """

    c2w: torch.Tensor
    focal_scale: torch.Tensor
    freeze_time: bool = False


@dataclass(frozen=True)
class PresetSpec:
    """What a preset is, for the node's menu and tooltips.

    ``unit`` is the unit of ``amount``: "deg" (degrees of rotation), "units" (scene units of
    translation) or "factor" (a dimensionless multiplier). ``uses_amount`` / ``uses_target_depth``
    say whether those inputs change the result; ``editor_keyframes`` is how many keyframes
    ``editor_state.default_keyframes_for_preset`` samples from it by default.
    """

    name: str
    unit: str
    default_amount: float
    description: str
    motion: Callable[..., PresetMotion]
    uses_amount: bool = True
    uses_target_depth: bool = False
    #: Keyframes the editor seeds when switching from this preset to keyframes (enough to follow it).
    editor_keyframes: int = 4


# --------------------------------------------------------------------------------------- motions

def _progress(num_frames: int, easing: str) -> torch.Tensor:
    """Eased progress ``[T]`` in [0, 1]: 0 at the first frame, 1 at the last."""
    s = torch.linspace(0.0, 1.0, num_frames, dtype=_F64) if num_frames > 1 else torch.zeros(1, dtype=_F64)
    return ease(easing, s)


def _axis(i: int, n: int) -> torch.Tensor:
    a = torch.zeros(n, 3, dtype=_F64)
    a[:, i] = 1.0
    return a


def _rotation(axis: int, angles: torch.Tensor) -> torch.Tensor:
    return axis_angle_to_matrix(_axis(axis, angles.numel()), angles)


def _still(T: int) -> torch.Tensor:
    return torch.ones(T, dtype=_F64)


def _rotate(axis: int, sign: float):
    def motion(num_frames, amount, easing, target_depth=DEFAULT_TARGET_DEPTH) -> PresetMotion:
        s = _progress(num_frames, easing)
        R = _rotation(axis, sign * math.radians(amount) * s)
        return PresetMotion(make_pose(R, torch.zeros(num_frames, 3, dtype=_F64)), _still(num_frames))
    return motion


def _translate(direction: tuple[float, float, float]):
    def motion(num_frames, amount, easing, target_depth=DEFAULT_TARGET_DEPTH) -> PresetMotion:
        s = _progress(num_frames, easing)
        t = torch.tensor(direction, dtype=_F64) * (amount * s)[:, None]
        return PresetMotion(make_pose(torch.eye(3, dtype=_F64).expand(num_frames, 3, 3), t), _still(num_frames))
    return motion


def orbit_motion(num_frames: int, angle_deg: float, easing: str, target_depth: float,
                 freeze_time: bool = False) -> PresetMotion:
    """Turn the camera by ``angle_deg * eased progress`` about the vertical (camera y) axis through the
    point ``target_depth`` ahead on the optical axis; positive angles move the camera left.

    Distance to the target and the target's place in the image (centre) stay fixed.
    """
    s = _progress(num_frames, easing)
    R = _rotation(1, math.radians(angle_deg) * s)
    c = torch.tensor([0.0, 0.0, target_depth], dtype=_F64)
    # Rotating the whole rig about the target: x -> c + R (x - c), so the camera centre is c - R c.
    return PresetMotion(make_pose(R, c - R @ c), _still(num_frames), freeze_time)


def _orbit(sign: float, freeze_time: bool = False):
    def motion(num_frames, amount, easing, target_depth=DEFAULT_TARGET_DEPTH) -> PresetMotion:
        return orbit_motion(num_frames, sign * amount, easing, target_depth, freeze_time)
    return motion


def _zoom(inward: bool):
    def motion(num_frames, amount, easing, target_depth=DEFAULT_TARGET_DEPTH) -> PresetMotion:
        if not amount > 0:
            raise TrajectoryError(f"Zoom factor {amount:g} is not positive.",
                                  "Give the focal-length factor at the last frame, e.g. 1.5 or 2.")
        s = _progress(num_frames, easing)
        # Geometric in the focal length so the zoom looks equally fast throughout.
        scale = (amount if inward else 1.0 / amount) ** s
        eye = make_pose(torch.eye(3, dtype=_F64).expand(num_frames, 3, 3), torch.zeros(num_frames, 3, dtype=_F64))
        return PresetMotion(eye, scale)
    return motion


def spiral_motion(num_frames: int, amount: float, easing: str, target_depth: float = DEFAULT_TARGET_DEPTH,
                  radius: float | None = None, turns: float = 1.0) -> PresetMotion:
    """Fly ``amount`` units forward while circling the optical axis ``turns`` times on a radius that
    widens from 0 to ``radius`` (default a quarter of ``|amount|``); the view direction stays fixed."""
    s = _progress(num_frames, easing)
    r = 0.25 * abs(amount) if radius is None else radius
    phi = 2 * math.pi * turns * s
    t = torch.stack([r * s * torch.cos(phi), r * s * torch.sin(phi), amount * s], dim=-1)
    return PresetMotion(make_pose(torch.eye(3, dtype=_F64).expand(num_frames, 3, 3), t), _still(num_frames))


def static_motion(num_frames, amount=0.0, easing="linear", target_depth=DEFAULT_TARGET_DEPTH) -> PresetMotion:
    eye = make_pose(torch.eye(3, dtype=_F64).expand(num_frames, 3, 3), torch.zeros(num_frames, 3, dtype=_F64))
    return PresetMotion(eye, _still(num_frames))


# ---------------------------------------------------------------------------- ReCamMaster presets

#: ReCamMaster's ten test trajectories (``cam_type`` 1..10), in their order.
RECAMMASTER_NAMES = ("pan_right", "pan_left", "tilt_up", "tilt_down", "zoom_in", "zoom_out",
                     "translate_up", "translate_down", "arc_left", "arc_right")
_RECAMMASTER_TEXT = {
    "pan_right": "pans right by 20 degrees",
    "pan_left": "pans left by 20 degrees",
    "tilt_up": "tilts up by 10 degrees",
    "tilt_down": "tilts down by 10 degrees",
    "zoom_in": "moves 2 m forward (a dolly, despite the name)",
    "zoom_out": "moves 2 m back (a dolly, despite the name)",
    "translate_up": "rises 1 m while tilting down 14 degrees",
    "translate_down": "sinks 1 m while tilting up 14 degrees",
    "arc_left": "orbits 30 degrees left around a point 4 m ahead",
    "arc_right": "orbits 30 degrees right around a point 4 m ahead",
}


def _recammaster_preset_fn():
    """``recammaster_preset(name_or_index, num_frames)`` from the formats package, imported on first
    use so that loading the builder never pays for (or fails on) the file formats."""
    import importlib

    for module in ("lavr_core.camera.formats.recammaster_presets", "lavr_core.camera.formats.recammaster"):
        try:
            fn = getattr(importlib.import_module(module), "recammaster_preset", None)
        except ModuleNotFoundError as e:
            if e.name is None or not module.startswith(e.name):
                raise  # a real import error inside the module must surface
            continue
        if fn is not None:
            return fn
    raise TrajectoryError("The ReCamMaster preset table (lavr_core.camera.formats) is missing.",
                          "Reinstall ComfyUI-LaVR; the package is incomplete.")


def _recammaster_poses(name: str, num_frames: int) -> torch.Tensor:
    """Relative poses ``[T, 4, 4]`` of a ReCamMaster test trajectory from the formats module."""
    out = _recammaster_preset_fn()(name, num_frames)
    c2w = out.c2w if isinstance(out, CameraTrajectory) else torch.as_tensor(out, dtype=_F64)
    c2w = c2w.to(_F64)
    if c2w.shape[-2] == 3:
        c2w = torch.cat([c2w, torch.tensor([0, 0, 0, 1.0], dtype=_F64).expand(c2w.shape[0], 1, 4)], dim=1)
    # Relative to its own first camera, whatever the table's world frame is.
    first = c2w[:1]
    R0t = first[:, :3, :3].transpose(-1, -2)
    rel = c2w.clone()
    rel[:, :3, :3] = R0t @ c2w[:, :3, :3]
    rel[:, :3, 3:] = R0t @ (c2w[:, :3, 3:] - first[:, :3, 3:])
    return rel


def _recammaster(name: str):
    def motion(num_frames, amount, easing, target_depth=DEFAULT_TARGET_DEPTH) -> PresetMotion:
        rel = _recammaster_poses(name, num_frames)
        if rel.shape[0] != num_frames:
            raise TrajectoryError(f"The ReCamMaster table gave {rel.shape[0]} poses for {num_frames} frames.",
                                  "This is a bug in lavr_core.camera.formats.recammaster; please report it.")
        if easing != "linear" and num_frames > 1:
            # Re-time the recorded path: frame i shows the path at eased progress.
            t = torch.arange(num_frames, dtype=_F64)
            rel = interpolate_poses(t, rel, _progress(num_frames, easing) * (num_frames - 1))
        if amount != 1.0:
            # Scale the move: amount times the translation and amount times each rotation angle.
            q = quat_power(matrix_to_quat(rel[:, :3, :3]), amount)
            rel = make_pose(quat_to_matrix(q), rel[:, :3, 3] * amount)
        return PresetMotion(rel, _still(num_frames))
    return motion


# --------------------------------------------------------------------------------------- registry

def _specs() -> dict[str, PresetSpec]:
    P = PresetSpec
    specs = [
        P("static", "units", 0.0, "The camera does not move.", static_motion, uses_amount=False),
        P("orbit_left", "deg", 60.0, "Circle left around the point target_depth ahead, keeping it centred.",
          _orbit(+1), uses_target_depth=True),
        P("orbit_right", "deg", 60.0, "Circle right around the point target_depth ahead, keeping it centred.",
          _orbit(-1), uses_target_depth=True),
        P("arc_left", "deg", 30.0, "A short orbit to the left around the point target_depth ahead.",
          _orbit(+1), uses_target_depth=True),
        P("arc_right", "deg", 30.0, "A short orbit to the right around the point target_depth ahead.",
          _orbit(-1), uses_target_depth=True),
        P("dolly_in", "units", 1.0, "Move forward along the viewing direction.", _translate((0, 0, 1))),
        P("dolly_out", "units", 1.0, "Move backward along the viewing direction.", _translate((0, 0, -1))),
        P("truck_left", "units", 0.5, "Slide sideways to the left without turning.", _translate((-1, 0, 0))),
        P("truck_right", "units", 0.5, "Slide sideways to the right without turning.", _translate((1, 0, 0))),
        P("pedestal_up", "units", 0.5, "Rise straight up without turning.", _translate((0, -1, 0))),
        P("pedestal_down", "units", 0.5, "Sink straight down without turning.", _translate((0, 1, 0))),
        P("pan_left", "deg", 20.0, "Turn the view left in place.", _rotate(1, -1.0)),
        P("pan_right", "deg", 20.0, "Turn the view right in place.", _rotate(1, +1.0)),
        P("tilt_up", "deg", 10.0, "Turn the view up in place.", _rotate(0, +1.0)),
        P("tilt_down", "deg", 10.0, "Turn the view down in place.", _rotate(0, -1.0)),
        P("roll_cw", "deg", 15.0, "Roll the camera clockwise (the picture turns counter-clockwise).",
          _rotate(2, +1.0)),
        P("roll_ccw", "deg", 15.0, "Roll the camera counter-clockwise (the picture turns clockwise).",
          _rotate(2, -1.0)),
        P("zoom_in", "factor", 1.5, "Narrow the field of view: focal length times amount; the camera stays put.",
          _zoom(True)),
        P("zoom_out", "factor", 1.5, "Widen the field of view: focal length divided by amount; the camera stays put.",
          _zoom(False)),
        P("spiral", "units", 1.0, "Fly forward by amount while circling the viewing axis once.", spiral_motion,
          editor_keyframes=9),
        P("bullet_time", "deg", 90.0, "Frozen moment: time stops while the camera orbits the point "
          "target_depth ahead.", _orbit(+1, freeze_time=True), uses_target_depth=True),
    ]
    for name in RECAMMASTER_NAMES:
        specs.append(P(f"recammaster_{name}", "factor", 1.0,
                       f"ReCamMaster test path: {_RECAMMASTER_TEXT[name]}; amount scales the move.",
                       _recammaster(name)))
    return {s.name: s for s in specs}


#: Every preset by name, in menu order.
PRESETS: dict[str, PresetSpec] = _specs()


def get_preset(name: str) -> PresetSpec:
    spec = PRESETS.get(name)
    if spec is None:
        raise TrajectoryError(f"Unknown camera preset {name!r}.", f"Use one of: {', '.join(PRESETS)}.")
    return spec


def _finite(value, what: str, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TrajectoryError(f"The {what} {value!r} is not a finite number.", hint)
    return float(value)


def preset_motion(name: str, num_frames: int, amount: float | None = None, easing: str = "linear",
                  target_depth: float = DEFAULT_TARGET_DEPTH) -> PresetMotion:
    """The validated motion of preset ``name`` (``amount`` None = the preset's default)."""
    spec = get_preset(name)
    n = check_frame_count(num_frames, "camera preset")
    check_easing(easing)
    amount = spec.default_amount if amount is None else _finite(
        amount, f"amount of preset {name}", f"Give a number in {spec.unit}.")
    depth = _finite(target_depth, "target depth", "Give the distance to the orbit target in scene units, e.g. 4.")
    if depth <= 0:
        raise TrajectoryError(f"The target depth {depth:g} is not positive.",
                              "Give the distance in front of the camera to orbit around, e.g. 4 scene units.")
    return spec.motion(n, amount, easing, depth)


# ------------------------------------------------------------------------------- starting camera

def starting_intrinsics(num_frames: int, source: CameraTrajectory | None, width: int | None,
                        height: int | None, fov_deg: float | None,
                        source_K: torch.Tensor | None = None) -> tuple[torch.Tensor, int, int]:
    """Intrinsics ``[T, 3, 3]`` and image size before any zoom.

    No source: ``fov_deg`` (default 60) across ``width`` x ``height`` (default 832 x 480). With a
    source: its intrinsics (``source_K``, ``[T, 3, 3]``), rescaled to ``width`` x ``height`` when
    those are given, or replaced by a centred pinhole of ``fov_deg`` when that is given.
    """
    for name, v in (("width", width), ("height", height)):
        if v is not None and (isinstance(v, bool) or int(v) != v or int(v) < 1):
            raise TrajectoryError(f"Image {name} {v!r} is not a positive whole number of pixels.",
                                  "Give the output size in pixels, e.g. 832 x 480.")
    if fov_deg is not None:
        fov_deg = _finite(fov_deg, "field of view", "Give degrees between 0 and 180, e.g. 60.")
    if source is None:
        W, H = int(width or DEFAULT_WIDTH), int(height or DEFAULT_HEIGHT)
        K = intrinsics_from_fov(DEFAULT_FOV_DEG if fov_deg is None else fov_deg, W, H)
        return K.expand(num_frames, 3, 3).clone(), W, H
    W, H = int(width or source.width), int(height or source.height)
    if fov_deg is not None:
        return intrinsics_from_fov(fov_deg, W, H).expand(num_frames, 3, 3).clone(), W, H
    K = source.K if source_K is None else source_K
    S = torch.diag(torch.tensor([W / source.width, H / source.height, 1.0], dtype=_F64))
    return (S @ K).expand(num_frames, 3, 3).clone(), W, H


def check_fps(fps) -> float:
    """A finite, positive frame rate, or a ``TrajectoryError``."""
    v = _finite(fps, "frame rate", "Give frames per second, e.g. 16 (Wan) or 30.")
    if v <= 0:
        raise TrajectoryError(f"Frame rate {v:g} is not positive.", "Give frames per second, e.g. 16 (Wan) or 30.")
    return v


def apply_focal_scale(K: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Zoom about the principal point: focal lengths (and skew) times ``scale`` ``[T]``."""
    D = torch.diag_embed(torch.stack([scale, scale, torch.ones_like(scale)], dim=-1))
    return K @ D


def build_preset(name: str, num_frames: int, amount: float | None = None, easing: str = "linear",
                 target_depth: float = DEFAULT_TARGET_DEPTH, width: int | None = None, height: int | None = None,
                 fov_deg: float | None = None, fps: float | None = None,
                 source: CameraTrajectory | None = None, source_mode: str = "follow") -> CameraTrajectory:
    """A ``CameraTrajectory`` of ``num_frames`` following preset ``name``.

    Args:
        amount: size of the move in the preset's unit (``PRESETS[name].unit``); None = its default.
        easing: name in ``interpolate.EASINGS``; shapes the speed over time.
        target_depth: distance ahead of the camera (scene units) that orbits turn around.
        width, height, fov_deg, fps: override the output's image size, horizontal field of view
            and frame rate (defaults: the source's, else 832 x 480, 60 degrees, 16 fps).
        source: the input video's camera path, or None to start from the identity camera.
        source_mode: ``"follow"``: frame i is ``source_i @ motion_i`` (the preset rides on the source
            camera's own motion, in its local frame; the source is resampled to ``num_frames`` when
            its length differs). ``"first_camera"``: frame i is ``source_0 @ motion_i`` (the source's
            motion is ignored, as ReCamMaster does).

    Zoom presets change only the intrinsics. ``meta`` records the preset, amount, easing, depth,
    source mode and ``freeze_time`` (True for bullet time: the scene should not move).
    """
    spec = get_preset(name)
    n = check_frame_count(num_frames, "camera preset")
    if source_mode not in SOURCE_MODES:
        raise TrajectoryError(f"Unknown source mode {source_mode!r}.", f"Use one of {', '.join(SOURCE_MODES)}.")
    if source is not None and not isinstance(source, CameraTrajectory):
        raise TrajectoryError(f"The source camera path is a {type(source).__name__}, not a camera trajectory.",
                              "Connect a LAVR_CAMERA_TRAJECTORY output (or nothing).")
    motion = preset_motion(name, n, amount, easing, target_depth)
    amount_used = spec.default_amount if amount is None else float(amount)

    if source is None:
        base = torch.eye(4, dtype=_F64).expand(n, 4, 4)
        K, W, H = starting_intrinsics(n, None, width, height, fov_deg)
        out_fps = DEFAULT_FPS if fps is None else fps
    elif source_mode == "follow":
        src = source if source.num_frames == n else resample_trajectory(source, n)
        base = src.c2w
        K, W, H = starting_intrinsics(n, source, width, height, fov_deg, source_K=src.K)
        out_fps = src.fps if fps is None else fps
    else:
        base = source.c2w[:1].expand(n, 4, 4)
        K, W, H = starting_intrinsics(n, source, width, height, fov_deg, source_K=source.K[:1])
        out_fps = source.fps if fps is None else fps

    meta = {"generator": "lavr.camera.builder", "preset": name, "amount": amount_used, "unit": spec.unit,
            "easing": easing, "target_depth": float(target_depth), "freeze_time": bool(motion.freeze_time),
            "source_mode": None if source is None else source_mode}
    if source is not None:
        meta["source_frames"] = source.num_frames
    return CameraTrajectory(c2w=base @ motion.c2w, K=apply_focal_scale(K, motion.focal_scale), width=W,
                            height=H, fps=check_fps(out_fps), meta=meta)


def preset_names() -> list[str]:
    return list(PRESETS)


__all__ = [
    "DEFAULT_FOV_DEG", "DEFAULT_FPS", "DEFAULT_HEIGHT", "DEFAULT_TARGET_DEPTH", "DEFAULT_WIDTH", "PRESETS",
    "PresetMotion", "PresetSpec", "RECAMMASTER_NAMES", "SOURCE_MODES", "apply_focal_scale", "build_preset", "check_fps",
    "get_preset", "orbit_motion", "preset_motion", "preset_names", "spiral_motion", "starting_intrinsics",
]
