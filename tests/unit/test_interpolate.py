"""Easing, centripetal Catmull-Rom, slerp/squad, pose interpolation and resampling."""

import math

import pytest
import torch

from lavr_core.camera.interpolate import (
    EASINGS, catmull_rom, ease, interpolate_poses, linear_positions, quat_power, quat_slerp, resample_trajectory,
    slerp_keys, squad_keys,
)
from lavr_core.camera.trajectory import CameraTrajectory
from lavr_core.camera.transforms import axis_angle_to_matrix, make_pose, matrix_to_quat, quat_to_matrix
from lavr_core.errors import TrajectoryError

F64 = torch.float64


def _rand_quats(k, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(k, 4, generator=g, dtype=F64)
    return q / q.norm(dim=-1, keepdim=True)


def _quat_angle(a, b):
    """Rotation angle (rad) between unit quaternions, sign-agnostic."""
    d = (a * b).sum(-1).abs().clamp(max=1.0)
    return 2 * torch.acos(d)


def _self_intersections(c):
    """Number of crossings between non-adjacent pieces of a 2-D polyline ``[N, 2]``."""
    c = c.tolist()

    def orient(a, b, p):
        return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])

    n, hits = len(c), 0
    for i in range(n - 1):
        for j in range(i + 2, n - 1):
            a, b, p, q = c[i], c[i + 1], c[j], c[j + 1]
            if orient(a, b, p) * orient(a, b, q) < 0 and orient(p, q, a) * orient(p, q, b) < 0:
                hits += 1
    return hits


# ------------------------------------------------------------------------------------------ easing

@pytest.mark.parametrize("name", list(EASINGS))
def test_easing_maps_unit_interval_monotonically(name):
    s = torch.linspace(0, 1, 101, dtype=F64)
    y = ease(name, s)
    assert y[0].item() == 0.0 and y[-1].item() == 1.0
    assert (y[1:] - y[:-1] >= -1e-15).all()
    assert ((y >= 0) & (y <= 1)).all()
    # Out-of-range progress is clamped, not extrapolated.
    assert ease(name, torch.tensor([-0.5, 1.5])).tolist() == [0.0, 1.0]


def test_easing_values():
    assert ease("linear", 0.3).item() == pytest.approx(0.3)
    assert ease("ease_in", 0.5).item() == pytest.approx(0.125)
    assert ease("ease_out", 0.5).item() == pytest.approx(0.875)
    assert ease("ease_in_out", 0.25).item() == pytest.approx(0.0625)
    assert ease("ease_in_out", 0.5).item() == pytest.approx(0.5)
    assert ease("smoothstep", 0.25).item() == pytest.approx(0.15625)
    s = torch.linspace(0, 1, 11, dtype=F64)
    for name in ("ease_in_out", "smoothstep"):  # symmetric: f(1 - s) = 1 - f(s)
        assert torch.allclose(ease(name, 1 - s), 1 - ease(name, s), atol=1e-12)
    # Ease-in starts slowly, ease-out starts fast.
    assert ease("ease_in", 0.1) < 0.1 < ease("ease_out", 0.1)


def test_unknown_easing():
    with pytest.raises(TrajectoryError, match="Unknown easing 'bouncy'.*linear"):
        ease("bouncy", 0.5)


# ----------------------------------------------------------------------------------- Catmull-Rom

def test_catmull_rom_exact_at_uneven_keyframes_and_holds_ends():
    times = torch.tensor([0.0, 3.0, 17.0, 20.0, 48.0])
    pts = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    out = catmull_rom(times, pts, torch.arange(-5.0, 55.0))
    frames = torch.arange(-5.0, 55.0)
    for t, p in zip(times, pts):
        assert torch.equal(out[(frames == t).nonzero()[0, 0]], p)
    assert torch.equal(out[0], pts[0]) and torch.equal(out[-1], pts[-1])  # held outside the range
    assert torch.isfinite(out).all()


def test_catmull_rom_two_keys_is_straight_line_and_one_key_constant():
    t = torch.tensor([2.0, 12.0])
    pts = torch.tensor([[0.0, 1.0, 2.0], [3.0, -1.0, 5.0]], dtype=F64)
    q = torch.linspace(2, 12, 21)
    assert torch.allclose(catmull_rom(t, pts, q), linear_positions(t, pts, q), atol=1e-12)
    one = catmull_rom(torch.tensor([4.0]), pts[:1], torch.tensor([0.0, 9.0]))
    assert torch.equal(one, pts[:1].expand(2, 3))


def _one_sided_velocities(fn, times, pts, at, h=1e-5):
    left = (fn(times, pts, torch.tensor([at], dtype=F64)) - fn(times, pts, torch.tensor([at - h], dtype=F64))) / h
    right = (fn(times, pts, torch.tensor([at + h], dtype=F64)) - fn(times, pts, torch.tensor([at], dtype=F64))) / h
    return left[0], right[0]


def test_catmull_rom_tangent_continuous_at_keys():
    times = torch.tensor([0.0, 10.0, 16.0, 30.0, 40.0], dtype=F64)
    pts = torch.tensor([[0, 0, 0], [1, 0.2, 1], [2, -0.3, 1.5], [3.5, 0, 3], [4, 1, 4]], dtype=F64)
    for k in (1, 2, 3):
        vl, vr = _one_sided_velocities(catmull_rom, times, pts, float(times[k]))
        cos = torch.dot(vl, vr) / (vl.norm() * vr.norm())
        assert cos > 1 - 1e-6, f"kink at key {k}: cos {cos.item()}"
        assert 0.3 < (vr.norm() / vl.norm()).item() < 3.0  # speed may change, but not wildly
        # Linear interpolation, by contrast, has a visible corner at the same keys.
        ll, lr = _one_sided_velocities(linear_positions, times, pts, float(times[k]))
        assert torch.dot(ll, lr) / (ll.norm() * lr.norm()) < 0.999


def test_centripetal_has_no_loop_where_uniform_does():
    # Short middle segment with long neighbours whose tangents cross: the uniform spline loops.
    pts = torch.tensor([[-1.8, -2.0], [0.0, 0.0], [0.2, 0.0], [2.0, -2.0]], dtype=F64)
    t = torch.tensor([0.0, 1.0, 2.0, 3.0])
    q = torch.linspace(1, 2, 161, dtype=F64)
    uniform = catmull_rom(t, pts, q, alpha=0.0)
    centripetal = catmull_rom(t, pts, q, alpha=0.5)
    assert _self_intersections(uniform) >= 1
    assert _self_intersections(centripetal) == 0
    # No overshoot: the 0.2-long segment bulges far less than the uniform one (0.25 high).
    assert centripetal[:, 1].max() < 0.05 < uniform[:, 1].max()
    assert centripetal[:, 0].min() >= -1e-12 and centripetal[:, 0].max() <= 0.2 + 1e-12
    # No cusp: the speed never collapses.
    speed = (centripetal[1:] - centripetal[:-1]).norm(dim=-1)
    assert speed.min() > 0.2 * speed.max()


def test_catmull_rom_coincident_keys_stay_finite():
    pts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 0, 0], [2, 1, 0]], dtype=F64)
    out = catmull_rom(torch.tensor([0.0, 5, 9, 12]), pts, torch.arange(13.0))
    assert torch.isfinite(out).all()
    assert torch.allclose(out[5:10], pts[1].expand(5, 3), atol=1e-6)  # the repeated point holds


@pytest.mark.parametrize("times,msg", [([0.0, 5.0, 5.0], "strictly increasing"), ([0.0, 7.0, 3.0], "strictly"),
                                       ([0.0, float("nan"), 3.0], "NaN"), ([], "at least one")])
def test_bad_keyframe_times(times, msg):
    with pytest.raises(TrajectoryError, match=msg):
        catmull_rom(times, torch.zeros(max(len(times), 1), 3, dtype=F64), [0.0])


def test_catmull_rom_rejects_mismatch_and_nan():
    with pytest.raises(TrajectoryError, match="shape"):
        catmull_rom([0.0, 1.0], torch.zeros(3, 3, dtype=F64), [0.5])
    with pytest.raises(TrajectoryError, match="NaN"):
        catmull_rom([0.0, 1.0], torch.tensor([[0.0, 0, 0], [float("nan"), 0, 0]]), [0.5])


# ------------------------------------------------------------------------------------- rotations

def test_slerp_endpoints_midpoint_and_shortest_arc():
    q0 = matrix_to_quat(torch.eye(3, dtype=F64))
    q1 = matrix_to_quat(axis_angle_to_matrix(torch.tensor([0.0, 1, 0], dtype=F64), math.radians(100)))
    assert torch.allclose(quat_slerp(q0, q1, 0.0), q0, atol=1e-12)
    assert _quat_angle(quat_slerp(q0, q1, 1.0), q1) < 1e-7
    mid = quat_slerp(q0, q1, 0.5)
    assert math.degrees(_quat_angle(mid, q0)) == pytest.approx(50.0, abs=1e-9)
    # -q1 is the same rotation: slerp must still take the 100-degree arc, not the 260-degree one.
    mid_neg = quat_slerp(q0, -q1, 0.5)
    assert math.degrees(_quat_angle(mid_neg, q0)) == pytest.approx(50.0, abs=1e-9)
    # Angle grows uniformly.
    a = [_quat_angle(quat_slerp(q0, q1, h), q0).item() for h in (0.1, 0.2, 0.3)]
    assert a[1] - a[0] == pytest.approx(a[2] - a[1], abs=1e-9)


def test_squad_equals_slerp_for_two_keys():
    q = _rand_quats(2, seed=3)
    t = torch.tensor([0.0, 20.0])
    query = torch.linspace(0, 20, 41)
    assert (_quat_angle(squad_keys(t, q, query), slerp_keys(t, q, query)) < 1e-7).all()


def test_squad_and_slerp_exact_at_keys():
    q = _rand_quats(5, seed=4)
    t = torch.tensor([0.0, 4.0, 11.0, 12.0, 30.0])
    for fn in (squad_keys, slerp_keys):
        out = fn(t, q, t)
        assert (_quat_angle(out, q) < 1e-7).all()


def _angular_velocity_jump(fn, t, q, at, h=1e-4):
    x = torch.tensor([at - h, at, at + h], dtype=F64)
    r = quat_to_matrix(fn(t, q, x))
    # Axis-angle of the small step before and after the key, as vectors.
    def step(a, b):
        d = quat_power(matrix_to_quat(a.T @ b), 1.0)
        return 2 * d[1:] / h
    return (step(r[1], r[2]) - step(r[0], r[1])).norm().item(), step(r[0], r[1]).norm().item()


def test_squad_smooth_at_interior_keys_slerp_not():
    q = matrix_to_quat(torch.stack([
        axis_angle_to_matrix(torch.tensor(ax, dtype=F64), math.radians(a))
        for ax, a in (([0, 1, 0], 0), ([0, 1, 0], 40), ([1, 1, 0], 60), ([1, 0, 0.3], 30))]))
    t = torch.tensor([0.0, 10.0, 20.0, 30.0])
    for k in (1, 2):
        jump_squad, speed = _angular_velocity_jump(squad_keys, t, q, float(t[k]))
        jump_slerp, _ = _angular_velocity_jump(slerp_keys, t, q, float(t[k]))
        assert jump_squad < 0.02 * speed, (k, jump_squad, speed)
        assert jump_slerp > 0.2 * speed


def test_rotation_rejects_zero_quaternion():
    with pytest.raises(TrajectoryError, match="zero"):
        squad_keys([0.0, 1.0], torch.tensor([[1.0, 0, 0, 0], [0.0, 0, 0, 0]]), [0.5])


# ----------------------------------------------------------------------------------------- poses

def _key_poses():
    Rs = [axis_angle_to_matrix(torch.tensor(ax, dtype=F64), math.radians(a))
          for ax, a in (([0, 1, 0], 0), ([0, 1, 0], 30), ([1, 0, 0], 20), ([0, 0, 1], 45))]
    ts = torch.tensor([[0, 0, 0], [1, 0, 0.5], [2, -0.5, 1], [2.5, 0, 3]], dtype=F64)
    return torch.tensor([0.0, 8.0, 20.0, 40.0]), make_pose(torch.stack(Rs), ts)


@pytest.mark.parametrize("position", ["catmull_rom", "linear"])
@pytest.mark.parametrize("rotation", ["squad", "slerp"])
def test_interpolate_poses_exact_at_keys_and_rigid(position, rotation):
    times, keys = _key_poses()
    out = interpolate_poses(times, keys, torch.arange(45.0), position, rotation)
    assert out.shape == (45, 4, 4)
    assert torch.allclose(out[times.long()], keys, atol=1e-12)
    R = out[:, :3, :3]
    assert torch.allclose(R.transpose(-1, -2) @ R, torch.eye(3, dtype=F64).expand(45, 3, 3), atol=1e-12)
    assert torch.allclose(out[41:], keys[-1].expand(4, 4, 4), atol=1e-12)  # hold after the last key


def test_interpolate_poses_errors():
    times, keys = _key_poses()
    with pytest.raises(TrajectoryError, match="position interpolation 'cubic'"):
        interpolate_poses(times, keys, [1.0], position="cubic")
    with pytest.raises(TrajectoryError, match="rotation interpolation 'lerp'"):
        interpolate_poses(times, keys, [1.0], rotation="lerp")
    with pytest.raises(TrajectoryError, match="3 keyframe poses for 4"):
        interpolate_poses(times, keys[:3], [1.0])
    bad = keys.clone()
    bad[1, 0, 0] = float("nan")
    with pytest.raises(TrajectoryError, match="NaN"):
        interpolate_poses(times, bad, [1.0])
    scaled = keys.clone()
    scaled[2, :3, :3] *= 2
    with pytest.raises(TrajectoryError, match="not a rotation"):
        interpolate_poses(times, scaled, [1.0])


# ------------------------------------------------------------------------------------ resampling

def _trajectory(n=21):
    times, keys = _key_poses()
    c2w = interpolate_poses(times * (n - 1) / 40, keys, torch.arange(float(n)))
    K = torch.tensor([[500.0, 0, 416], [0, 500, 240], [0, 0, 1]], dtype=F64).repeat(n, 1, 1)
    K[:, 0, 0] = torch.linspace(500, 700, n, dtype=F64)
    return CameraTrajectory(c2w=c2w, K=K, width=832, height=480, fps=16.0, meta={"source": "test"})


def test_resample_keeps_ends_duration_and_path():
    src = _trajectory(21)
    up = resample_trajectory(src, 81)
    assert up.num_frames == 81 and up.duration == pytest.approx(src.duration)
    assert torch.allclose(up.c2w[0], src.c2w[0], atol=1e-12) and torch.allclose(up.c2w[-1], src.c2w[-1], atol=1e-12)
    assert torch.allclose(up.c2w[::4], src.c2w, atol=1e-9)  # every 4th new frame is an old one
    assert up.K[40, 0, 0].item() == pytest.approx(600.0)     # intrinsics interpolated linearly
    back = resample_trajectory(up, 21)
    assert back.allclose(src.replace(meta=back.meta), atol=1e-9)
    assert up.meta["resampled_from"] == 21 and up.meta["source"] == "test"
    assert resample_trajectory(src, 21) is src
    assert resample_trajectory(src, 33, fps=30).fps == 30.0
    one = resample_trajectory(src.subset(slice(0, 1)), 5)
    assert one.num_frames == 5 and torch.allclose(one.c2w, src.c2w[:1].expand(5, 4, 4))


def test_resample_rejects_bad_counts():
    with pytest.raises(TrajectoryError, match="1 to"):
        resample_trajectory(_trajectory(5), 0)
    with pytest.raises(TrajectoryError, match="whole number"):
        resample_trajectory(_trajectory(5), 2.5)
