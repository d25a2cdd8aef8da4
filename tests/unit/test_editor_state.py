"""Camera editor JSON: validation (every bad input), round trip, keyframe paths, preset seeding."""

import json
import math

import pytest
import torch

from lavr_core.camera.builder import DEFAULT_FOV_DEG, build_preset
from lavr_core.camera.editor_state import (
    EditorState, Keyframe, build_from_keyframes, default_keyframes_for_preset, editor_state_to_json,
    parse_editor_state,
)
from lavr_core.camera.interpolate import angle_between
from lavr_core.camera.trajectory import CameraTrajectory
from lavr_core.camera.transforms import axis_angle_to_matrix, intrinsics_from_fov, make_pose, matrix_to_quat
from lavr_core.errors import TrajectoryError

F64 = torch.float64


def _state(**over):
    d = {"version": 1, "mode": "keyframes",
         "keyframes": [{"frame": 0, "position": [0, 0, 0], "rotation": [1, 0, 0, 0]},
                       {"frame": 10, "position": [1, 0, 0.5], "look_at": [0, 0, 4]},
                       {"frame": 30, "position": [2, -0.5, 1], "rotation": [0.9659258, 0.0, 0.258819, 0.0],
                        "fov_deg": 40.0}],
         "position_interpolation": "catmull_rom", "rotation_interpolation": "squad",
         "view": {"orbit": {"yaw": 0.3}, "selected": 1}}
    d.update(over)
    return d


def _kf(i, **over):
    d = _state()
    d["keyframes"][i].update(over)
    return d


# ---------------------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("text", ["", "   \n", "{}", None])
def test_empty_is_default_preset_state(text):
    s = parse_editor_state(text)
    assert s == EditorState() and s.mode == "preset" and s.keyframes == ()


def test_parse_valid_state_and_round_trip():
    s = parse_editor_state(json.dumps(_state()), num_frames=31)
    assert s.mode == "keyframes" and len(s.keyframes) == 3
    assert s.keyframes[1] == Keyframe(frame=10, position=(1.0, 0.0, 0.5), look_at=(0.0, 0.0, 4.0))
    assert s.keyframes[2].fov_deg == 40.0 and s.view == {"orbit": {"yaw": 0.3}, "selected": 1}
    assert sum(c * c for c in s.keyframes[2].rotation) == pytest.approx(1.0, abs=1e-15)
    text = editor_state_to_json(s)
    assert parse_editor_state(text) == s
    assert json.loads(text)["version"] == 1
    # A dict is accepted as well as text; null optional fields count as absent.
    d = _state()
    d["keyframes"][0]["look_at"] = None
    d["keyframes"][0]["fov_deg"] = None
    d["view"] = None
    s2 = parse_editor_state(d)
    assert s2.keyframes[0].fov_deg is None and s2.view == {}


def test_preset_mode_may_hold_fewer_keyframes():
    s = parse_editor_state('{"version": 1, "mode": "preset", "keyframes": []}')
    assert s.mode == "preset"
    assert parse_editor_state('{"version": 1}').mode == "preset"


def test_non_unit_quaternion_is_normalised():
    s = parse_editor_state(_kf(0, rotation=[2, 0, 0, 0]))
    assert s.keyframes[0].rotation == (1.0, 0.0, 0.0, 0.0)


BAD = [
    ("{not json", "not valid JSON.*line 1"),
    ("[1, 2]", "is a list, not an object"),
    (_state(version=2), "unknown version 2"),
    (_state(version="1"), "unknown version '1'"),
    ({"mode": "keyframes"}, 'no "version"'),
    (_state(mode="spline"), "unknown mode 'spline'"),
    (_state(position_interpolation="bezier"), "position_interpolation 'bezier'"),
    (_state(rotation_interpolation="lerp"), "rotation_interpolation 'lerp'"),
    (_state(view=[1]), '"view" is a list'),
    (_state(keyframes={"a": 1}), '"keyframes" is a dict'),
    (_state(extra=1), "unknown field.*'extra'.*view"),
    (_state(keyframes=[{"frame": 0, "position": [0, 0, 0], "rotation": [1, 0, 0, 0]}]),
     "needs at least 2 keyframes, got 1"),
    (_state(keyframes=[]), "needs at least 2 keyframes, got 0"),
    (_kf(1, frame=0), "keyframe 1 is at frame 0, not after keyframe 0"),
    (_kf(2, frame=5), "keyframe 2 is at frame 5, not after keyframe 1 \\(frame 10\\)"),
    (_kf(0, frame=-1), "keyframe 0 is at frame -1"),
    (_kf(1, frame=2.5), "keyframe 1 has frame 2.5, not a whole number"),
    (_kf(1, frame=True), "keyframe 1 has frame True"),
    (_kf(1, frame="10"), "keyframe 1 has frame '10'"),
    (_kf(2, frame=999999), "keyframe 2 is at frame 999999, outside"),
    (_kf(1, position=[1, 2]), "keyframe 1 \\(frame 10\\) position is \\[1, 2\\], not a list of 3"),
    (_kf(1, position=[1, "2", 3]), "keyframe 1 \\(frame 10\\) position\\[1\\] is '2', not a number"),
    (_kf(1, position=[1, float("nan"), 3]), "keyframe 1 \\(frame 10\\) position\\[1\\] is nan"),
    (_kf(2, rotation=[0, 0, 0, 0]), "keyframe 2 \\(frame 30\\) rotation .* zero quaternion"),
    (_kf(2, rotation=[1, 0, 0]), "keyframe 2 \\(frame 30\\) rotation is"),
    (_kf(1, look_at=[1, 0, 0.5]), "keyframe 1 \\(frame 10\\) looks at .* its own position"),
    (_kf(1, look_at=[1, 5, 0.5]), "keyframe 1 \\(frame 10\\) looks straight up or down"),
    (_kf(1, rotation=[1, 0, 0, 0]), "keyframe 1 \\(frame 10\\) has both"),
    (_kf(0, rotation=None), "keyframe 0 \\(frame 0\\) has neither"),
    (_kf(2, fov_deg=0), "keyframe 2 \\(frame 30\\) has fov_deg 0"),
    (_kf(2, fov_deg=200), "fov_deg 200"),
    (_kf(2, fov_deg=float("inf")), "fov_deg is inf"),
    (_kf(0, selected=True), "keyframe 0 has unknown field.*'selected'"),
    (_state(keyframes=[[0, 1, 2], {}]), "keyframe 0 is list, not an object"),
    (_state(keyframes=[{"position": [0, 0, 0], "rotation": [1, 0, 0, 0]}, {}]), 'keyframe 0 has no "frame"'),
    (_state(keyframes=[{"frame": 0, "rotation": [1, 0, 0, 0]}, {}]), 'keyframe 0 \\(frame 0\\) has no "position"'),
    (42, "got a int"),
]


@pytest.mark.parametrize("raw,match", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_states_raise_clear_errors(raw, match):
    text = raw if isinstance(raw, (str, int)) else json.dumps(raw)
    with pytest.raises(TrajectoryError, match=match) as e:
        parse_editor_state(text)
    assert e.value.hint  # every error says what to do
    assert str(e.value).startswith("Camera editor state:")


def test_json_nan_token_rejected():
    text = json.dumps(_state()).replace("[2, -0.5, 1]", "[2, NaN, 1]")
    with pytest.raises(TrajectoryError, match="keyframe 2 \\(frame 30\\) position\\[1\\] is nan"):
        parse_editor_state(text)


def test_keyframe_past_the_output_is_rejected_with_num_frames():
    with pytest.raises(TrajectoryError, match="keyframe 2 is at frame 30, past the last frame \\(20\\)"):
        parse_editor_state(json.dumps(_state()), num_frames=21)
    s = parse_editor_state(json.dumps(_state()))
    with pytest.raises(TrajectoryError, match="past the last frame"):
        build_from_keyframes(s, 21)


# --------------------------------------------------------------------------------------- building

@pytest.mark.parametrize("pos,rot", [("catmull_rom", "squad"), ("linear", "slerp")])
def test_build_is_exact_at_keyframes_and_holds_ends(pos, rot):
    d = _state(position_interpolation=pos, rotation_interpolation=rot)
    d["keyframes"][0]["frame"] = 4
    s = parse_editor_state(d)
    traj = build_from_keyframes(s, 40)
    assert isinstance(traj, CameraTrajectory) and traj.num_frames == 40
    for kf in s.keyframes:
        assert traj.centers[kf.frame].tolist() == pytest.approx(list(kf.position), abs=1e-12)
    assert torch.allclose(traj.c2w[10], s.keyframes[1].c2w(), atol=1e-12)
    # The look-at keyframe faces its point: the target projects to the image centre.
    fwd = traj.c2w[10, :3, 2]
    to_target = torch.tensor([0.0, 0, 4]) - torch.tensor([1.0, 0, 0.5])
    assert torch.allclose(fwd, (to_target / to_target.norm()).to(F64), atol=1e-12)
    assert torch.allclose(traj.c2w[:4], traj.c2w[4].expand(4, 4, 4), atol=1e-12)      # before the first key
    assert torch.allclose(traj.c2w[30:], traj.c2w[30].expand(10, 4, 4), atol=1e-12)   # after the last key
    q = matrix_to_quat(traj.c2w[30, :3, :3])
    assert (q * torch.tensor(s.keyframes[2].rotation, dtype=F64)).sum().abs() == pytest.approx(1.0, abs=1e-12)
    assert traj.meta["position_interpolation"] == pos


def test_fov_is_interpolated_between_keyframes():
    s = parse_editor_state(json.dumps(_state()))
    traj = build_from_keyframes(s, 31, width=640, height=360, fov_deg=60.0, fps=12)
    fov = torch.rad2deg(2 * torch.atan(640 / (2 * traj.K[:, 0, 0])))
    # Keyframes 0 and 1 have no fov: they use the node's 60 degrees; keyframe 2 (frame 30) 40 degrees.
    assert fov[0].item() == pytest.approx(60.0) and fov[10].item() == pytest.approx(60.0)
    assert fov[20].item() == pytest.approx(50.0) and fov[30].item() == pytest.approx(40.0)
    assert torch.allclose(traj.K[:, :2, 2], torch.tensor([320.0, 180.0], dtype=F64).expand(31, 2))
    assert (traj.width, traj.height, traj.fps) == (640, 360, 12.0)
    d = _state()
    del d["keyframes"][2]["fov_deg"]
    plain = build_from_keyframes(parse_editor_state(d), 31, width=640, height=360, fov_deg=60.0)
    assert torch.allclose(plain.K, intrinsics_from_fov(60.0, 640, 360).expand(31, 3, 3))


def test_build_with_source_starts_at_its_first_camera():
    n = 7
    R = axis_angle_to_matrix(torch.tensor([0.3, 1.0, 0.0], dtype=F64).expand(n, 3),
                             torch.linspace(0, 0.6, n, dtype=F64))
    src = CameraTrajectory(c2w=make_pose(R, torch.randn(n, 3, generator=torch.Generator().manual_seed(0), dtype=F64)),
                           K=torch.tensor([[300.0, 0, 160], [0, 300, 120], [0, 0, 1]], dtype=F64),
                           width=320, height=240, fps=25.0)
    s = parse_editor_state(json.dumps(_state()))
    rel = build_from_keyframes(s, 31)
    traj = build_from_keyframes(s, 31, source=src)
    assert torch.allclose(traj.c2w, src.c2w[0] @ rel.c2w, atol=1e-12)
    assert (traj.width, traj.height, traj.fps) == (320, 240, 25.0)
    fov = torch.rad2deg(2 * torch.atan(320 / (2 * traj.K[:, 0, 0])))
    src_fov = math.degrees(2 * math.atan(320 / 600))
    assert fov[0].item() == pytest.approx(src_fov) and fov[30].item() == pytest.approx(40.0)
    assert traj.meta["source_mode"] == "first_camera"


def test_build_refuses_preset_mode_and_bad_input():
    with pytest.raises(TrajectoryError, match="preset mode"):
        build_from_keyframes(parse_editor_state(""), 10)
    with pytest.raises(TrajectoryError, match="not an EditorState"):
        build_from_keyframes(json.dumps(_state()), 31)
    with pytest.raises(TrajectoryError, match="1 to"):
        build_from_keyframes(parse_editor_state(json.dumps(_state())), 0)
    # A hand-made state with a degenerate look-at is caught at build time too, naming the keyframe.
    bad = EditorState(mode="keyframes", keyframes=(Keyframe(0, (0, 0, 0), rotation=(1, 0, 0, 0)),
                                                   Keyframe(5, (1, 1, 1), look_at=(1, 1, 1))))
    with pytest.raises(TrajectoryError, match="keyframe 1 \\(frame 5\\).*sits exactly on its target"):
        build_from_keyframes(bad, 10)
    with pytest.raises(TrajectoryError, match="keyframe 1 \\(frame 5\\) looks at"):
        editor_state_to_json(bad)


# ---------------------------------------------------------------------------------- preset seeding

@pytest.mark.parametrize("name", ["orbit_left", "pan_right", "dolly_in", "spiral", "zoom_in", "static"])
def test_default_keyframes_follow_the_preset(name):
    n = 49
    s = default_keyframes_for_preset(name, n, easing="linear")
    frames = [0, 6, 12, 18, 24, 30, 36, 42, 48] if name == "spiral" else [0, 16, 32, 48]
    assert s.mode == "keyframes" and [k.frame for k in s.keyframes] == frames
    assert parse_editor_state(editor_state_to_json(s), num_frames=n) == s
    preset = build_preset(name, n)
    traj = build_from_keyframes(s, n)
    for kf in s.keyframes:
        assert torch.allclose(traj.c2w[kf.frame], preset.c2w[kf.frame], atol=1e-9)
    # Between the keys the spline stays close to the preset path (a 4-unit-radius orbit, a 0.25
    # radius spiral: within 0.05 units).
    assert (traj.centers - preset.centers).norm(dim=-1).max() < 0.05
    assert angle_between(traj.c2w[:, :3, :3], preset.c2w[:, :3, :3]).max() < math.radians(0.5)
    has_fov = [k.fov_deg is not None for k in s.keyframes]
    assert all(has_fov) if name == "zoom_in" else not any(has_fov)
    if name == "zoom_in":
        assert s.keyframes[0].fov_deg == pytest.approx(DEFAULT_FOV_DEG)
        assert torch.allclose(traj.K[48], preset.K[48])


def test_default_keyframes_count_and_errors():
    s = default_keyframes_for_preset("dolly_in", 3, count=6)
    assert [k.frame for k in s.keyframes] == [0, 1, 2]
    assert len(default_keyframes_for_preset("dolly_in", 81, count=2).keyframes) == 2
    with pytest.raises(TrajectoryError, match="1-frame output"):
        default_keyframes_for_preset("dolly_in", 1)
    with pytest.raises(TrajectoryError, match="keyframe count 1"):
        default_keyframes_for_preset("dolly_in", 10, count=1)
    with pytest.raises(TrajectoryError, match="Unknown camera preset"):
        default_keyframes_for_preset("nope", 10)
