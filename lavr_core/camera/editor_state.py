"""The camera editor's saved state: the JSON the browser editor stores in the workflow, validated
again here, and turned into a ``CameraTrajectory``.

Schema version 1::

    {"version": 1,
     "mode": "preset" | "keyframes",
     "keyframes": [{"frame": 0, "position": [x, y, z], "look_at": [x, y, z], "fov_deg": 60.0},
                   {"frame": 40, "position": [x, y, z], "rotation": [w, x, y, z]}, ...],
     "position_interpolation": "catmull_rom" | "linear",
     "rotation_interpolation": "squad" | "slerp",
     "view": {...}}

* Coordinates are in the frame of the **first camera of the source** (the identity camera when there
  is no source): origin at that camera, OpenCV axes (+x right, +y down, +z forward), scene units.
* Each keyframe has a ``position`` and exactly one of ``look_at`` (a point the camera faces, image up
  = world -y) or ``rotation`` (camera-to-world, wxyz). ``fov_deg`` (horizontal, degrees) is optional;
  keyframes without it use the node's field of view. ``null`` counts as absent.
* Frames are whole numbers, strictly increasing, and lie inside the output's frame range.
* ``view`` is the editor's own free-form state (orbit camera, selection, ...); the backend ignores it.
  Any other key is rejected so that a typo is not silently ignored.

An empty string or ``{}`` is the default state: preset mode with no keyframes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..conventions import MAX_FRAMES
from ..errors import TrajectoryError
from .builder import (DEFAULT_FOV_DEG, DEFAULT_FPS, DEFAULT_TARGET_DEPTH, apply_focal_scale, check_fps, get_preset,
                      preset_motion, starting_intrinsics)
from .interpolate import POSITION_MODES, ROTATION_MODES, interpolate_poses, linear_positions
from .trajectory import CameraTrajectory, check_frame_count
from .transforms import look_at, make_pose, matrix_to_quat, quat_to_matrix

SCHEMA_VERSION = 1
MODES = ("preset", "keyframes")
_TOP_KEYS = ("version", "mode", "keyframes", "position_interpolation", "rotation_interpolation", "view")
_KEY_KEYS = ("frame", "position", "look_at", "rotation", "fov_deg")
_F64 = torch.float64


@dataclass(frozen=True)
class Keyframe:
    """One editor keyframe (coordinates in the first source camera's frame, OpenCV axes).

    Attributes:
        frame: output frame index (0-based).
        position: camera centre ``(x, y, z)`` in scene units.
        look_at: point the camera faces, or None when ``rotation`` is given.
        rotation: camera-to-world unit quaternion ``(w, x, y, z)``, or None when ``look_at`` is given.
        fov_deg: horizontal field of view in degrees, or None to use the node's.
    """

    frame: int
    position: tuple[float, float, float]
    look_at: tuple[float, float, float] | None = None
    rotation: tuple[float, float, float, float] | None = None
    fov_deg: float | None = None

    def c2w(self) -> torch.Tensor:
        """This keyframe's ``[4, 4]`` camera-to-world pose (OpenCV)."""
        eye = torch.tensor(self.position, dtype=_F64)
        if self.rotation is not None:
            return make_pose(quat_to_matrix(torch.tensor(self.rotation, dtype=_F64)), eye)
        return look_at(eye, torch.tensor(self.look_at, dtype=_F64))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"frame": self.frame, "position": list(self.position)}
        if self.rotation is not None:
            d["rotation"] = list(self.rotation)
        else:
            d["look_at"] = list(self.look_at)
        if self.fov_deg is not None:
            d["fov_deg"] = self.fov_deg
        return d


@dataclass(frozen=True)
class EditorState:
    """A validated editor state (see the module docstring for the JSON it comes from)."""

    version: int = SCHEMA_VERSION
    mode: str = "preset"
    keyframes: tuple[Keyframe, ...] = ()
    position_interpolation: str = "catmull_rom"
    rotation_interpolation: str = "squad"
    view: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- parsing

def _err(message: str, hint: str) -> TrajectoryError:
    return TrajectoryError(f"Camera editor state: {message}", hint)


def _number(value, where: str, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(f"{where} is {value!r}, not a number.", hint)
    v = float(value)
    if not math.isfinite(v):
        raise _err(f"{where} is {value!r}.", "Every number must be finite. " + hint)
    return v


def _vector(value, n: int, where: str, hint: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != n:
        raise _err(f"{where} is {value!r}, not a list of {n} numbers.", hint)
    return tuple(_number(v, f"{where}[{i}]", hint) for i, v in enumerate(value))


def _parse_keyframe(i: int, raw) -> Keyframe:
    where = f"keyframe {i}"
    if not isinstance(raw, dict):
        raise _err(f"{where} is {type(raw).__name__}, not an object.",
                   'Write each keyframe as {"frame": ..., "position": [x, y, z], "look_at": [x, y, z]}.')
    unknown = sorted(set(raw) - set(_KEY_KEYS))
    if unknown:
        raise _err(f"{where} has unknown field(s) {', '.join(map(repr, unknown))}.",
                   f"Keyframe fields are {', '.join(_KEY_KEYS)}; keep editor-only data under \"view\".")
    if "frame" not in raw:
        raise _err(f"{where} has no \"frame\".", "Give the output frame index (0-based) of every keyframe.")
    f = raw["frame"]
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or int(f) != f:
        raise _err(f"{where} has frame {f!r}, not a whole number.", "Give a 0-based frame index such as 0, 24, 80.")
    frame = int(f)
    if frame < 0 or frame >= MAX_FRAMES:
        raise _err(f"{where} is at frame {frame}, outside 0 .. {MAX_FRAMES - 1}.",
                   "Move the keyframe to a frame inside the clip.")
    where = f"keyframe {i} (frame {frame})"
    if "position" not in raw or raw["position"] is None:
        raise _err(f"{where} has no \"position\".", "Give the camera centre as [x, y, z].")
    pos = _vector(raw["position"], 3, f"{where} position", "Give the camera centre as [x, y, z].")

    target = raw.get("look_at")
    rot = raw.get("rotation")
    if (target is None) == (rot is None):
        raise _err(f"{where} has {'both' if target is not None else 'neither'} \"look_at\" and \"rotation\".",
                   "Give exactly one: a look-at point [x, y, z] or a rotation quaternion [w, x, y, z].")
    look = quat = None
    if rot is not None:
        q = _vector(rot, 4, f"{where} rotation", "Give a unit quaternion [w, x, y, z], e.g. [1, 0, 0, 0].")
        norm = math.sqrt(sum(c * c for c in q))
        if norm < 1e-8:
            raise _err(f"{where} rotation {list(q)} is a zero quaternion, which is no rotation at all.",
                       "Give a unit quaternion [w, x, y, z]; [1, 0, 0, 0] looks straight ahead (+z).")
        # Unit to float precision is kept bit for bit, so that saving a state again does not drift.
        quat = q if abs(norm - 1.0) <= 1e-9 else tuple(c / norm for c in q)
    else:
        look = _vector(target, 3, f"{where} look_at", "Give the point the camera faces as [x, y, z].")
        d = math.dist(pos, look)
        if d <= 1e-9 * max(1.0, max(abs(c) for c in pos)):
            raise _err(f"{where} looks at {list(look)}, its own position.",
                       "Move the look-at point away from the camera (e.g. 1 unit ahead along +z).")
        horiz = math.hypot(look[0] - pos[0], look[2] - pos[2])
        if horiz <= 1e-9 * d:
            raise _err(f"{where} looks straight up or down (look_at is right above or below the camera), "
                       "so which way is 'up' in the picture is undefined.",
                       "Offset the look-at point a little horizontally, or give a \"rotation\" instead.")

    fov = raw.get("fov_deg")
    if fov is not None:
        fov = _number(fov, f"{where} fov_deg", "Give the horizontal field of view in degrees, e.g. 60.")
        if not 0.0 < fov < 180.0:
            raise _err(f"{where} has fov_deg {fov:g}, outside (0, 180).",
                       "Give the horizontal field of view in degrees, e.g. 60.")
    return Keyframe(frame=frame, position=pos, look_at=look, rotation=quat, fov_deg=fov)


def _check_frames_in_range(keyframes, num_frames: int) -> None:
    for i, kf in enumerate(keyframes):
        if kf.frame >= num_frames:
            raise _err(f"keyframe {i} is at frame {kf.frame}, past the last frame ({num_frames - 1}) of a "
                       f"{num_frames}-frame output.",
                       f"Move the keyframe to frame {num_frames - 1} or earlier, or raise the frame count.")


def parse_editor_state(text: str | dict | None, num_frames: int | None = None) -> EditorState:
    """Validate the editor's JSON (a string, or an already decoded dict) into an ``EditorState``.

    An empty string, None or ``{}`` is the default state. With ``num_frames``, keyframes must also
    lie inside ``0 .. num_frames - 1`` (checked in keyframes mode). Raises ``TrajectoryError`` naming
    the keyframe and what to fix.
    """
    if text is None:
        return EditorState()
    if isinstance(text, str):
        if not text.strip():
            return EditorState()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise _err(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}).",
                       "Reset the camera editor, or fix the text by hand.") from None
    elif isinstance(text, dict):
        raw = text
    else:
        raise _err(f"got a {type(text).__name__}, not JSON text.", "Pass the editor's JSON string.")
    if not isinstance(raw, dict):
        raise _err(f"the JSON is a {type(raw).__name__}, not an object.",
                   'Expected {"version": 1, "mode": ..., "keyframes": [...]}.')
    if not raw:
        return EditorState()

    unknown = sorted(set(raw) - set(_TOP_KEYS))
    if unknown:
        raise _err(f"unknown field(s) {', '.join(map(repr, unknown))}.",
                   f"Top-level fields are {', '.join(_TOP_KEYS)}; editor-only data belongs under \"view\".")
    if "version" not in raw:
        raise _err("no \"version\".", f"Add \"version\": {SCHEMA_VERSION}.")
    version = raw["version"]
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise _err(f"unknown version {version!r}; this ComfyUI-LaVR reads version {SCHEMA_VERSION}.",
                   "Update ComfyUI-LaVR if the workflow was saved by a newer one, or reset the camera editor.")
    mode = raw.get("mode", "preset")
    if mode not in MODES:
        raise _err(f"unknown mode {mode!r}.", f"Use one of {', '.join(MODES)}.")
    pos_mode = raw.get("position_interpolation", "catmull_rom")
    if pos_mode not in POSITION_MODES:
        raise _err(f"unknown position_interpolation {pos_mode!r}.", f"Use one of {', '.join(POSITION_MODES)}.")
    rot_mode = raw.get("rotation_interpolation", "squad")
    if rot_mode not in ROTATION_MODES:
        raise _err(f"unknown rotation_interpolation {rot_mode!r}.", f"Use one of {', '.join(ROTATION_MODES)}.")
    view = raw.get("view")
    if view is None:
        view = {}
    if not isinstance(view, dict):
        raise _err(f"\"view\" is a {type(view).__name__}, not an object.",
                   "Store the editor's view state as an object.")

    raw_keys = raw.get("keyframes")
    if raw_keys is None:
        raw_keys = []
    if not isinstance(raw_keys, list):
        raise _err(f"\"keyframes\" is a {type(raw_keys).__name__}, not a list.", "Store the keyframes as a JSON list.")
    keyframes = tuple(_parse_keyframe(i, k) for i, k in enumerate(raw_keys))
    for i in range(1, len(keyframes)):
        if keyframes[i].frame <= keyframes[i - 1].frame:
            raise _err(f"keyframe {i} is at frame {keyframes[i].frame}, not after keyframe {i - 1} "
                       f"(frame {keyframes[i - 1].frame}).",
                       "Keyframes must be sorted by frame with no two on the same frame; move or delete one.")
    if mode == "keyframes":
        if len(keyframes) < 2:
            raise _err(f"keyframes mode needs at least 2 keyframes, got {len(keyframes)}.",
                       "Add keyframes in the camera editor, or switch it to preset mode.")
        if num_frames is not None:
            _check_frames_in_range(keyframes, check_frame_count(num_frames, "camera editor output"))
    return EditorState(version=SCHEMA_VERSION, mode=mode, keyframes=keyframes, position_interpolation=pos_mode,
                       rotation_interpolation=rot_mode, view=dict(view))


def editor_state_to_json(state: EditorState) -> str:
    """The JSON text of ``state`` (what the editor saves); round-trips through ``parse_editor_state``."""
    d = {"version": state.version, "mode": state.mode, "keyframes": [k.to_json() for k in state.keyframes],
         "position_interpolation": state.position_interpolation,
         "rotation_interpolation": state.rotation_interpolation, "view": state.view}
    try:
        text = json.dumps(d, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise _err(f"cannot be written as JSON ({e}).",
                   "Keep only finite numbers, strings, lists and objects.") from None
    parse_editor_state(text)  # never hand out a state the backend would refuse
    return text


# ---------------------------------------------------------------------------------------- building

def build_from_keyframes(state: EditorState, num_frames: int, width: int | None = None, height: int | None = None,
                         fov_deg: float | None = None, fps: float | None = None,
                         source: CameraTrajectory | None = None) -> CameraTrajectory:
    """The ``num_frames`` camera path through the state's keyframes.

    Poses are interpolated (``state.position_interpolation`` / ``rotation_interpolation``) at every
    frame, holding the first keyframe before it and the last after it, then placed on the first
    camera of ``source`` (identity without one). The horizontal field of view is interpolated
    linearly between keyframes (keyframes without ``fov_deg`` use the starting one: ``fov_deg``, else
    the source's first camera, else 60 degrees) and applied as a zoom about the principal point.
    Size and fps: as ``builder.build_preset``.
    """
    if not isinstance(state, EditorState):
        raise _err(f"got a {type(state).__name__}, not an EditorState.",
                   "Parse the JSON with parse_editor_state first.")
    n = check_frame_count(num_frames, "camera editor output")
    if state.mode != "keyframes":
        raise _err("the editor is in preset mode, so it holds no keyframe path.",
                   "Switch the camera editor to keyframes, or build the preset instead.")
    keys = state.keyframes
    if len(keys) < 2:
        raise _err(f"keyframes mode needs at least 2 keyframes, got {len(keys)}.",
                   "Add keyframes in the camera editor.")
    _check_frames_in_range(keys, n)

    poses = []
    for i, kf in enumerate(keys):
        try:
            poses.append(kf.c2w())
        except TrajectoryError as e:
            raise _err(f"keyframe {i} (frame {kf.frame}): {e.message}", e.hint or "") from None
    times = torch.tensor([float(k.frame) for k in keys], dtype=_F64)
    frames = torch.arange(n, dtype=_F64)
    rel = interpolate_poses(times, torch.stack(poses), frames, state.position_interpolation,
                            state.rotation_interpolation)

    if source is None:
        base = torch.eye(4, dtype=_F64)
        out_fps = DEFAULT_FPS if fps is None else fps
    else:
        base = source.c2w[0]
        out_fps = source.fps if fps is None else fps
    K, W, H = starting_intrinsics(n, source, width, height, fov_deg,
                                  source_K=None if source is None else source.K[:1])

    if any(k.fov_deg is not None for k in keys):
        # Starting horizontal fov from the base focal; per-frame fov -> focal factor about it.
        base_fov = math.degrees(2 * math.atan(W / (2 * float(K[0, 0, 0]))))
        fovs = torch.tensor([base_fov if k.fov_deg is None else k.fov_deg for k in keys], dtype=_F64)
        fov_t = linear_positions(times, fovs[:, None], frames)[:, 0]
        scale = math.tan(math.radians(base_fov) / 2) / torch.tan(torch.deg2rad(fov_t) / 2)
        K = apply_focal_scale(K, scale)

    meta = {"generator": "lavr.camera.editor", "mode": "keyframes", "keyframes": len(keys),
            "position_interpolation": state.position_interpolation,
            "rotation_interpolation": state.rotation_interpolation,
            "source_mode": None if source is None else "first_camera"}
    return CameraTrajectory(c2w=base @ rel, K=K, width=W, height=H, fps=check_fps(out_fps), meta=meta)


def default_keyframes_for_preset(name: str, num_frames: int, amount: float | None = None, easing: str = "linear",
                                 target_depth: float = DEFAULT_TARGET_DEPTH, fov_deg: float | None = None,
                                 count: int | None = None, view: dict | None = None) -> EditorState:
    """A keyframes-mode state that follows preset ``name``: ``count`` keyframes (default
    ``PRESETS[name].editor_keyframes``, 4 for most, more for the spiral; at evenly spaced
    frames, the first and last included) sampled from the preset path, with exact rotations, and
    ``fov_deg`` on each keyframe when the preset zooms (relative to ``fov_deg``, default ``DEFAULT_FOV_DEG``).

    Seeds the editor when the user switches from a preset to keyframes.
    """
    spec = get_preset(name)
    count = spec.editor_keyframes if count is None else count
    n = check_frame_count(num_frames, "camera editor output")
    if n < 2:
        raise _err("a 1-frame output cannot hold 2 keyframes.", "Raise the frame count to 2 or more.")
    if isinstance(count, bool) or int(count) != count or count < 2:
        raise _err(f"keyframe count {count!r} is not a whole number of at least 2.", "Ask for 2 or more keyframes.")
    motion = preset_motion(name, n, amount, easing, target_depth)
    frames = sorted({round(i * (n - 1) / (min(int(count), n) - 1)) for i in range(min(int(count), n))})
    base_fov = DEFAULT_FOV_DEG if fov_deg is None else float(fov_deg)
    zooms = bool((motion.focal_scale != 1).any())
    quats = matrix_to_quat(motion.c2w[frames, :3, :3])
    keyframes = []
    for j, f in enumerate(frames):
        fov = None
        if zooms:
            fov = math.degrees(2 * math.atan(math.tan(math.radians(base_fov) / 2) / float(motion.focal_scale[f])))
        keyframes.append(Keyframe(frame=f, position=tuple(motion.c2w[f, :3, 3].tolist()),
                                  rotation=tuple(quats[j].tolist()), fov_deg=fov))
    return EditorState(mode="keyframes", keyframes=tuple(keyframes), view=dict(view or {}))


__all__ = ["EditorState", "Keyframe", "MODES", "SCHEMA_VERSION", "build_from_keyframes", "default_keyframes_for_preset",
           "editor_state_to_json", "parse_editor_state"]
