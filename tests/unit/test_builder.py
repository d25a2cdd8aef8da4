"""Camera presets: geometry of every move, easing, sources (follow / first_camera), errors."""

import importlib
import math

import pytest
import torch

from lavr_core.camera.builder import (
    DEFAULT_FOV_DEG, DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_WIDTH, PRESETS, RECAMMASTER_NAMES, build_preset,
    preset_motion,
)
from lavr_core.camera.interpolate import angle_between
from lavr_core.camera.trajectory import CameraTrajectory
from lavr_core.camera.transforms import axis_angle_to_matrix, intrinsics_from_fov, invert_pose, make_pose
from lavr_core.errors import TrajectoryError

F64 = torch.float64
EYE3 = torch.eye(3, dtype=F64)


def _recammaster_available():
    for name in ("lavr_core.camera.formats.recammaster_presets", "lavr_core.camera.formats.recammaster"):
        try:
            if hasattr(importlib.import_module(name), "recammaster_preset"):
                return True
        except ModuleNotFoundError:
            pass
    return False


NEEDS_RCM = pytest.mark.skipif(not _recammaster_available(),
                               reason="lavr_core.camera.formats recammaster_preset not written yet")
OWN_PRESETS = [n for n in PRESETS if not n.startswith("recammaster_")]


def _forward(traj):
    return traj.c2w[:, :3, 2]


def _project(traj, X):
    """Pixel coordinates ``[T, 2]`` of world point ``X`` in every camera of ``traj``."""
    x_cam = (traj.w2c @ torch.cat([X, torch.ones(1, dtype=F64)]))[:, :3]
    uvw = (traj.K @ x_cam[..., None])[..., 0]
    return uvw[:, :2] / uvw[:, 2:]


# ----------------------------------------------------------------------------------- all presets

@pytest.mark.parametrize("name", OWN_PRESETS)
def test_every_preset_starts_at_identity_and_is_valid(name):
    traj = build_preset(name, 25, easing="ease_in_out")
    assert isinstance(traj, CameraTrajectory) and traj.num_frames == 25
    assert torch.allclose(traj.c2w[0], torch.eye(4, dtype=F64), atol=1e-12)
    assert (traj.width, traj.height, traj.fps) == (DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FPS)
    assert torch.allclose(traj.K[0], intrinsics_from_fov(DEFAULT_FOV_DEG, DEFAULT_WIDTH, DEFAULT_HEIGHT))
    spec = PRESETS[name]
    assert traj.meta["preset"] == name and traj.meta["amount"] == spec.default_amount
    assert traj.meta["unit"] == spec.unit and spec.unit in ("deg", "units", "factor")
    assert spec.description and "\n" not in spec.description
    assert traj.meta["freeze_time"] is (name == "bullet_time")
    if name != "static":  # every preset but static actually moves or zooms
        moved = (traj.c2w[-1] - traj.c2w[0]).abs().max() + (traj.K[-1] - traj.K[0]).abs().max()
        assert moved > 1e-3
    one = build_preset(name, 1)
    assert torch.allclose(one.c2w[0], torch.eye(4, dtype=F64), atol=1e-12)


def test_registry_lists_recammaster_presets():
    for n in RECAMMASTER_NAMES:
        spec = PRESETS[f"recammaster_{n}"]
        assert spec.unit == "factor" and spec.default_amount == 1.0
    assert len(RECAMMASTER_NAMES) == 10


# -------------------------------------------------------------------------------------- geometry

@pytest.mark.parametrize("name,sign,default", [("orbit_left", -1, 60.0), ("orbit_right", 1, 60.0),
                                               ("arc_left", -1, 30.0), ("arc_right", 1, 30.0),
                                               ("bullet_time", -1, 90.0)])
def test_orbit_keeps_distance_and_centres_target(name, sign, default):
    depth = 2.5
    traj = build_preset(name, 31, amount=None if name != "orbit_left" else 75.0, target_depth=depth)
    amount = 75.0 if name == "orbit_left" else default
    target = torch.tensor([0.0, 0.0, depth], dtype=F64)
    dist = (traj.centers - target).norm(dim=-1)
    assert torch.allclose(dist, torch.full_like(dist, depth), atol=1e-12)
    uv = _project(traj, target)  # target stays at the image centre
    assert torch.allclose(uv, torch.tensor([DEFAULT_WIDTH / 2, DEFAULT_HEIGHT / 2], dtype=F64).expand(31, 2), atol=1e-9)
    assert math.degrees(angle_between(traj.c2w[0, :3, :3], traj.c2w[-1, :3, :3])) == pytest.approx(amount, abs=1e-9)
    assert (torch.sign(traj.centers[1:, 0]) == sign).all()  # left = -x, right = +x
    assert torch.allclose(traj.centers[:, 1], torch.zeros(31, dtype=F64), atol=1e-12)  # stays level


def test_arc_matches_recammaster_arc_left_numbers():
    # ReCamMaster's "arc left" ends at t = (-1.99, 0, 0.53) m after a 29.8-degree turn: an orbit around 4 m.
    traj = build_preset("arc_left", 81, amount=29.8, target_depth=4.0)
    assert traj.centers[-1].tolist() == pytest.approx([-1.988, 0.0, 0.533], abs=5e-3)
    assert _forward(traj)[-1, 0] > 0  # turned right to keep looking at the target


@pytest.mark.parametrize("name,direction,amount", [
    ("dolly_in", (0, 0, 1), 1.3), ("dolly_out", (0, 0, -1), 1.3), ("truck_left", (-1, 0, 0), 0.7),
    ("truck_right", (1, 0, 0), 0.7), ("pedestal_up", (0, -1, 0), 0.4), ("pedestal_down", (0, 1, 0), 0.4)])
def test_translations(name, direction, amount):
    traj = build_preset(name, 11, amount=amount)
    assert torch.allclose(traj.c2w[:, :3, :3], EYE3.expand(11, 3, 3), atol=1e-12)
    assert torch.allclose(traj.centers[-1], amount * torch.tensor(direction, dtype=F64), atol=1e-12)
    steps = traj.centers[1:] - traj.centers[:-1]
    assert torch.allclose(steps, steps[:1].expand_as(steps), atol=1e-12)  # linear easing: even steps


@pytest.mark.parametrize("name,axis,check", [
    ("pan_right", 1, lambda f, r: f[0] > 0), ("pan_left", 1, lambda f, r: f[0] < 0),
    ("tilt_up", 0, lambda f, r: f[1] < 0), ("tilt_down", 0, lambda f, r: f[1] > 0),
    ("roll_cw", 2, lambda f, r: r[1] > 0), ("roll_ccw", 2, lambda f, r: r[1] < 0)])
def test_rotations_keep_centre_and_match_degrees(name, axis, check):
    amount = 23.0
    traj = build_preset(name, 9, amount=amount)
    assert torch.allclose(traj.centers, torch.zeros(9, 3, dtype=F64), atol=1e-12)
    R = traj.c2w[-1, :3, :3]
    assert math.degrees(angle_between(EYE3, R)) == pytest.approx(amount, abs=1e-9)
    assert torch.allclose(R[:, axis], EYE3[:, axis], atol=1e-12)  # rotation about that camera axis
    assert check(R[:, 2], R[:, 0])  # forward / right axis moved the right way (OpenCV: y down)
    assert torch.allclose(traj.K, traj.K[:1].expand_as(traj.K))


@pytest.mark.parametrize("name,factor", [("zoom_in", 2.0), ("zoom_out", 0.5)])
def test_zoom_changes_only_focal(name, factor):
    traj = build_preset(name, 17, amount=2.0)
    assert torch.allclose(traj.c2w, torch.eye(4, dtype=F64).expand(17, 4, 4), atol=0)
    K0 = traj.K[0]
    assert (traj.K[-1, 0, 0] / K0[0, 0]).item() == pytest.approx(factor)
    assert (traj.K[-1, 1, 1] / K0[1, 1]).item() == pytest.approx(factor)
    assert torch.allclose(traj.K[:, :2, 2], K0[:2, 2].expand(17, 2))  # principal point kept
    f = traj.K[:, 0, 0]
    assert ((f[1:] - f[:-1]) * (1 if factor > 1 else -1) > 0).all()
    ratio = f[1:] / f[:-1]  # geometric: the same zoom ratio every frame
    assert torch.allclose(ratio, ratio[:1].expand_as(ratio))


def test_spiral_moves_forward_and_circles():
    traj = build_preset("spiral", 41, amount=2.0)
    assert traj.centers[-1, 2].item() == pytest.approx(2.0)
    assert torch.allclose(traj.c2w[:, :3, :3], EYE3.expand(41, 3, 3), atol=1e-12)
    xy = traj.centers[:, :2]
    r = xy.norm(dim=-1)
    s = torch.linspace(0, 1, 41, dtype=F64)
    assert torch.allclose(r, 0.5 * s, atol=1e-12)  # radius widens to a quarter of the distance
    ang = torch.atan2(xy[1:, 1], xy[1:, 0])
    assert (ang > 0).any() and (ang < 0).any() and (xy[:, 0] < 0).any()  # goes all the way round


def test_static_never_moves():
    traj = build_preset("static", 5, amount=123.0)
    assert torch.equal(traj.c2w, torch.eye(4, dtype=F64).expand(5, 4, 4))


def test_easing_retimes_without_changing_the_end():
    lin = build_preset("pan_right", 21, amount=40.0)
    eio = build_preset("pan_right", 21, amount=40.0, easing="ease_in_out")
    ang = lambda t, i: math.degrees(angle_between(EYE3, t.c2w[i, :3, :3]))  # noqa: E731
    assert ang(lin, 5) == pytest.approx(10.0) and ang(eio, 5) == pytest.approx(40 * 0.0625)
    assert ang(lin, 10) == pytest.approx(ang(eio, 10)) and ang(lin, 20) == pytest.approx(ang(eio, 20))
    assert eio.meta["easing"] == "ease_in_out"


# ----------------------------------------------------------------------------------------- source

def _source(n=9, fps=24.0):
    t = torch.linspace(0, 1, n, dtype=F64)
    R = axis_angle_to_matrix(torch.tensor([0.2, 1.0, 0.1], dtype=F64).expand(n, 3), 0.5 * t)
    c = torch.stack([t, 0.3 * t ** 2, 2 + t], dim=-1)
    K = torch.tensor([[400.0, 0, 300], [0, 410, 200], [0, 0, 1]], dtype=F64).repeat(n, 1, 1)
    K[:, 0, 0] = torch.linspace(400, 480, n, dtype=F64)
    return CameraTrajectory(c2w=make_pose(R, c), K=K, width=640, height=400, fps=fps, meta={"source": "t"})


def test_follow_applies_motion_in_each_source_frame():
    src = _source(9)
    delta = preset_motion("orbit_left", 9, 40.0, "linear", 3.0).c2w
    traj = build_preset("orbit_left", 9, amount=40.0, target_depth=3.0, source=src, source_mode="follow")
    assert torch.allclose(traj.c2w, src.c2w @ delta, atol=1e-12)
    assert torch.allclose(traj.K, src.K) and (traj.width, traj.height, traj.fps) == (640, 400, 24.0)
    # Each camera keeps its own source camera's look-at point at depth 3 centred and 3 units away.
    targets = (src.c2w @ torch.tensor([0, 0, 3.0, 1], dtype=F64))[:, :3]
    assert torch.allclose((traj.centers - targets).norm(dim=-1), torch.full((9,), 3.0, dtype=F64), atol=1e-12)
    # Relative to the source camera, the motion is exactly the preset's.
    assert torch.allclose(invert_pose(src.c2w) @ traj.c2w, delta, atol=1e-12)
    assert traj.meta["source_mode"] == "follow" and traj.meta["source_frames"] == 9


def test_follow_resamples_a_source_of_another_length():
    src = _source(9)
    traj = build_preset("dolly_in", 33, amount=0.5, source=src, source_mode="follow")
    assert traj.num_frames == 33
    delta = preset_motion("dolly_in", 33, 0.5).c2w
    base = traj.c2w @ invert_pose(delta)  # the resampled source
    assert torch.allclose(base[::4], src.c2w, atol=1e-9)
    assert torch.allclose(base[0], src.c2w[0], atol=1e-12) and torch.allclose(base[-1], src.c2w[-1], atol=1e-12)
    assert traj.K[16, 0, 0].item() == pytest.approx(440.0)
    assert traj.duration == pytest.approx(src.duration)


def test_first_camera_ignores_source_motion():
    src = _source(9)
    traj = build_preset("pan_left", 12, amount=15.0, source=src, source_mode="first_camera")
    delta = preset_motion("pan_left", 12, 15.0).c2w
    assert torch.allclose(traj.c2w, src.c2w[0] @ delta, atol=1e-12)
    assert torch.allclose(traj.K, src.K[0].expand(12, 3, 3))
    assert traj.fps == 24.0 and traj.meta["source_mode"] == "first_camera"


def test_source_overrides_and_zoom_on_source():
    src = _source(9)
    traj = build_preset("zoom_in", 9, amount=2.0, source=src, width=320, height=200, fps=10)
    assert (traj.width, traj.height, traj.fps) == (320, 200, 10.0)
    assert traj.K[0, 0, 0].item() == pytest.approx(200.0) and traj.K[0, 0, 2].item() == pytest.approx(150.0)
    assert traj.K[-1, 0, 0].item() == pytest.approx(2 * 240.0)  # source focal 480 -> 240 at half size, x2 zoom
    assert torch.allclose(traj.c2w, src.c2w, atol=1e-12)  # zoom moves no camera
    fov = build_preset("static", 9, source=src, fov_deg=90.0)
    assert torch.allclose(fov.K, intrinsics_from_fov(90.0, 640, 400).expand(9, 3, 3))


def test_no_source_overrides():
    traj = build_preset("static", 3, width=512, height=512, fov_deg=45.0, fps=8)
    assert (traj.width, traj.height, traj.fps) == (512, 512, 8.0)
    assert torch.allclose(traj.K[0], intrinsics_from_fov(45.0, 512, 512))


# ------------------------------------------------------------------------------------------ errors

@pytest.mark.parametrize("kwargs,match", [
    ({"name": "orbit_sideways"}, "Unknown camera preset 'orbit_sideways'.*orbit_left"),
    ({"num_frames": 0}, "1 to"),
    ({"num_frames": 5000}, "1 to"),
    ({"num_frames": 4.5}, "whole number"),
    ({"easing": "bounce"}, "Unknown easing"),
    ({"amount": float("nan")}, "amount of preset orbit_left.*not a finite"),
    ({"amount": "30"}, "not a finite number"),
    ({"target_depth": 0.0}, "target depth 0 is not positive"),
    ({"target_depth": float("inf")}, "target depth"),
    ({"source_mode": "glue"}, "Unknown source mode 'glue'"),
    ({"fps": 0}, "Frame rate 0 is not positive"),
    ({"fov_deg": 190.0}, "Field of view 190"),
    ({"width": 0}, "width 0"),
    ({"source": torch.eye(4)}, "not a camera trajectory"),
])
def test_errors(kwargs, match):
    args = {"name": "orbit_left", "num_frames": 9}
    args.update(kwargs)
    with pytest.raises(TrajectoryError, match=match):
        build_preset(**args)


def test_zoom_factor_must_be_positive():
    with pytest.raises(TrajectoryError, match="Zoom factor 0 is not positive"):
        build_preset("zoom_out", 5, amount=0.0)


# ------------------------------------------------------------------------------------ ReCamMaster

@NEEDS_RCM
@pytest.mark.parametrize("name", RECAMMASTER_NAMES)
def test_recammaster_presets(name):
    traj = build_preset(f"recammaster_{name}", 21)
    assert traj.num_frames == 21
    assert torch.allclose(traj.c2w[0], torch.eye(4, dtype=F64), atol=1e-9)
    assert (traj.c2w[-1] - traj.c2w[0]).abs().max() > 0.05
    double = build_preset(f"recammaster_{name}", 21, amount=2.0)
    a1 = angle_between(EYE3, traj.c2w[-1, :3, :3])
    a2 = angle_between(EYE3, double.c2w[-1, :3, :3])
    assert a2.item() == pytest.approx(2 * a1.item(), abs=1e-9)
    assert torch.allclose(double.centers[-1], 2 * traj.centers[-1], atol=1e-9)
    # Easing re-times the recorded path but keeps both ends.
    eased = build_preset(f"recammaster_{name}", 21, easing="ease_in_out")
    assert torch.allclose(eased.c2w[-1], traj.c2w[-1], atol=1e-9)


@NEEDS_RCM
def test_recammaster_directions_match_our_presets():
    ours = {"pan_right": "pan_right", "tilt_up": "tilt_up", "arc_left": "arc_left", "translate_up": "pedestal_up"}
    for rcm, own in ours.items():
        a = build_preset(f"recammaster_{rcm}", 21)
        b = build_preset(own, 21)
        fa, fb = _forward(a)[-1], _forward(b)[-1]
        ca, cb = a.centers[-1], b.centers[-1]
        assert torch.dot(fa - EYE3[:, 2], fb - EYE3[:, 2]) >= 0, rcm
        assert torch.dot(ca, cb) >= 0, rcm
    arc = build_preset("recammaster_arc_left", 21)
    assert arc.centers[-1].tolist() == pytest.approx([-1.988, 0.0, 0.533], abs=0.01)
