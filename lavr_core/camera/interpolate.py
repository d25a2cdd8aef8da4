"""Interpolation of camera paths: easing curves, centripetal Catmull-Rom for positions, slerp and
squad for rotations, and time-uniform resampling of a ``CameraTrajectory``.

Conventions (``lavr_core.conventions``): poses are OpenCV camera-to-world ``[..., 4, 4]``, quaternions
are wxyz. Times are frame indices (floats allowed), keyframe times strictly increasing and not
necessarily evenly spaced. Every interpolant passes exactly through its keyframes and holds the first
(last) keyframe before (after) the keyed range. Pure torch, float64.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..errors import TrajectoryError
from .trajectory import CameraTrajectory, check_frame_count
from .transforms import make_pose, matrix_to_quat, orthonormalize, quat_conjugate, quat_multiply, quat_to_matrix

_F64 = torch.float64

# ------------------------------------------------------------------------------------- easing


def linear(s: torch.Tensor) -> torch.Tensor:
    return s


def ease_in(s: torch.Tensor) -> torch.Tensor:
    """Cubic ease-in: starts at rest, ends at full speed."""
    return s ** 3


def ease_out(s: torch.Tensor) -> torch.Tensor:
    """Cubic ease-out: starts at full speed, ends at rest."""
    return 1 - (1 - s) ** 3


def ease_in_out(s: torch.Tensor) -> torch.Tensor:
    """Cubic ease-in-out: at rest at both ends, fastest in the middle (peak speed 3x the linear one)."""
    return torch.where(s < 0.5, 4 * s ** 3, 1 - (2 - 2 * s) ** 3 / 2)


def smoothstep(s: torch.Tensor) -> torch.Tensor:
    """Hermite smoothstep ``3s^2 - 2s^3``: gentler than the cubic ease-in-out (peak speed 1.5x)."""
    return s * s * (3 - 2 * s)


#: Easing curves by name. Each maps [0, 1] onto [0, 1] monotonically with f(0) = 0 and f(1) = 1.
EASINGS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": linear,
    "ease_in": ease_in,
    "ease_out": ease_out,
    "ease_in_out": ease_in_out,
    "smoothstep": smoothstep,
}


def check_easing(name: str) -> str:
    if name not in EASINGS:
        raise TrajectoryError(f"Unknown easing {name!r}.", f"Use one of {', '.join(EASINGS)}.")
    return name


def ease(name: str, s) -> torch.Tensor:
    """Apply the easing curve ``name`` to progress values ``s`` (clamped to [0, 1]); float64 out."""
    fn = EASINGS[check_easing(name)]
    s = torch.as_tensor(s, dtype=_F64).clamp(0.0, 1.0)
    return fn(s).clamp(0.0, 1.0)


# ------------------------------------------------------------------------------- keyframe times

def _check_times(times, what: str = "keyframe") -> torch.Tensor:
    t = torch.as_tensor(times, dtype=_F64).reshape(-1)
    if t.numel() == 0:
        raise TrajectoryError(f"No {what} times were given.", "Give at least one keyframe.")
    if not torch.isfinite(t).all():
        raise TrajectoryError(f"A {what} time is NaN or infinite.", "Give finite frame numbers.")
    if t.numel() > 1 and not (t[1:] > t[:-1]).all():
        i = int((t[1:] <= t[:-1]).nonzero()[0].item()) + 1
        raise TrajectoryError(f"{what.capitalize()} {i} is at time {t[i].item():g}, not after keyframe {i - 1} "
                              f"({t[i - 1].item():g}).", "Keyframe times must be strictly increasing.")
    return t


def _segments(times: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query time the segment index ``i`` (between keys i and i+1) and the fraction in it.

    Queries outside the keyed range are clamped, which holds the end keyframes.
    """
    k = times.numel()
    q = query.clamp(times[0], times[-1])
    idx = (torch.searchsorted(times, q, right=True) - 1).clamp(0, k - 2)
    frac = ((q - times[idx]) / (times[idx + 1] - times[idx])).clamp(0.0, 1.0)
    return idx, frac


def _exact_key(times: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask of queries landing on (or beyond) a keyframe and that keyframe's index, so that
    interpolants return the keyframe bit for bit there instead of a value rounded by the formula."""
    q = query.clamp(times[0], times[-1])
    idx = torch.searchsorted(times, q).clamp(0, times.numel() - 1)
    return times[idx] == q, idx


# ------------------------------------------------------------------------------------ positions

def linear_positions(times, points: torch.Tensor, query) -> torch.Tensor:
    """Piecewise-linear interpolation of ``points`` ``[K, D]`` keyed at ``times`` ``[K]``; ``[Q, D]`` out."""
    t = _check_times(times)
    p = torch.as_tensor(points, dtype=_F64)
    q = torch.as_tensor(query, dtype=_F64).reshape(-1)
    if p.shape[0] != t.numel():
        raise TrajectoryError(f"{p.shape[0]} keyframe points for {t.numel()} keyframe times.", "Give one per time.")
    if t.numel() == 1:
        return p[:1].expand(q.numel(), *p.shape[1:]).clone()
    idx, frac = _segments(t, q)
    f = frac.reshape(-1, *([1] * (p.ndim - 1)))
    return p[idx] * (1 - f) + p[idx + 1] * f


def catmull_rom(times, points: torch.Tensor, query, alpha: float = 0.5) -> torch.Tensor:
    """Catmull-Rom spline through ``points`` ``[K, D]`` keyed at ``times`` ``[K]``, at ``query`` ``[Q]``.

    The curve's *shape* uses the knot spacing ``|P_{i+1} - P_i| ** alpha`` (alpha = 0.5: centripetal,
    which has no cusps or self-intersections inside a segment, unlike the uniform alpha = 0 spline on
    unevenly spaced points); its *timing* maps each keyframe interval ``[times[i], times[i+1]]``
    linearly onto the segment's knot interval. So the path is exact at keyframes and tangent
    continuous; the speed may change at a key when neighbouring keys are unevenly spaced in time.

    The ends use reflected phantom points ``P_{-1} = 2 P_0 - P_1`` and ``P_K = 2 P_{K-1} - P_{K-2}``;
    two keyframes therefore give a straight line. Returns ``[Q, D]`` float64.
    """
    t = _check_times(times)
    p = torch.as_tensor(points, dtype=_F64)
    q = torch.as_tensor(query, dtype=_F64).reshape(-1)
    if p.ndim != 2 or p.shape[0] != t.numel():
        raise TrajectoryError(f"Keyframe points have shape {tuple(p.shape)} for {t.numel()} keyframe times.",
                              "Give one [D] point per keyframe time ([K, D]).")
    if not torch.isfinite(p).all():
        raise TrajectoryError("A keyframe position holds NaN or infinity.", "Give finite coordinates.")
    k = t.numel()
    if k == 1:
        return p[:1].expand(q.numel(), -1).clone()

    ext = torch.cat([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]], dim=0)  # [K + 2, D]
    gaps = (ext[1:] - ext[:-1]).norm(dim=-1) ** alpha                     # [K + 1] knot spacings
    # Coincident keyframes would give zero knot intervals (0/0 below); a tiny floor keeps the
    # formula finite and makes such a segment simply stay at the repeated point.
    floor = max(float(gaps.max()) * 1e-9, 1e-12)
    gaps = gaps.clamp_min(floor)

    idx, frac = _segments(t, q)
    P0, P1, P2, P3 = ext[idx], ext[idx + 1], ext[idx + 2], ext[idx + 3]
    d0, d1, d2 = gaps[idx, None], gaps[idx + 1, None], gaps[idx + 2, None]
    t0 = torch.zeros_like(d0)
    t1 = d0
    t2 = t1 + d1
    t3 = t2 + d2
    u = t1 + frac[:, None] * d1

    # Barry-Goldman pyramid: repeated linear interpolation, well conditioned for any knot spacing.
    A1 = ((t1 - u) * P0 + (u - t0) * P1) / (t1 - t0)
    A2 = ((t2 - u) * P1 + (u - t1) * P2) / (t2 - t1)
    A3 = ((t3 - u) * P2 + (u - t2) * P3) / (t3 - t2)
    B1 = ((t2 - u) * A1 + (u - t0) * A2) / (t2 - t0)
    B2 = ((t3 - u) * A2 + (u - t1) * A3) / (t3 - t1)
    C = ((t2 - u) * B1 + (u - t1) * B2) / (t2 - t1)

    on_key, key = _exact_key(t, q)
    return torch.where(on_key[:, None], p[key], C)


# ------------------------------------------------------------------------------------ rotations

def quat_log(q: torch.Tensor) -> torch.Tensor:
    """Logarithm of unit quaternions ``[..., 4]`` as rotation half-angle vectors ``[..., 3]``
    (``q = (cos a, sin a * n)`` -> ``a * n``)."""
    v = q[..., 1:]
    n = v.norm(dim=-1, keepdim=True)
    a = torch.atan2(n, q[..., :1])
    small = n < 1e-12
    return torch.where(small, v, v * (a / torch.where(small, torch.ones_like(n), n)))


def quat_exp(v: torch.Tensor) -> torch.Tensor:
    """Inverse of ``quat_log``: half-angle vectors ``[..., 3]`` -> unit quaternions ``[..., 4]``."""
    a = v.norm(dim=-1, keepdim=True)
    small = a < 1e-12
    sinc = torch.where(small, torch.ones_like(a), torch.sin(a) / torch.where(small, torch.ones_like(a), a))
    q = torch.cat([torch.cos(a), v * sinc], dim=-1)
    return q / q.norm(dim=-1, keepdim=True)


def quat_power(q: torch.Tensor, p) -> torch.Tensor:
    """``q ** p`` for unit quaternions: the same axis, ``p`` times the angle (shortest arc)."""
    q = torch.where(q[..., :1] < 0, -q, q)
    p = torch.as_tensor(p, dtype=q.dtype, device=q.device)
    return quat_exp(quat_log(q) * p[..., None])


def _slerp(q0: torch.Tensor, q1: torch.Tensor, h: torch.Tensor, shortest: bool) -> torch.Tensor:
    h = h[..., None]
    dot = (q0 * q1).sum(-1, keepdim=True)
    if shortest:
        q1 = torch.where(dot < 0, -q1, q1)
        dot = dot.abs()
    theta = torch.acos(dot.clamp(-1.0, 1.0))
    s = torch.sin(theta)
    near = s < 1e-9  # (nearly) the same rotation: normalised lerp is exact to float precision
    s_safe = torch.where(near, torch.ones_like(s), s)
    w0 = torch.where(near, 1 - h, torch.sin((1 - h) * theta) / s_safe)
    w1 = torch.where(near, h, torch.sin(h * theta) / s_safe)
    out = w0 * q0 + w1 * q1
    return out / out.norm(dim=-1, keepdim=True)


def quat_slerp(q0: torch.Tensor, q1: torch.Tensor, h) -> torch.Tensor:
    """Spherical linear interpolation between unit quaternions ``[..., 4]`` along the shorter arc.

    ``h`` is the fraction (broadcast against the batch); ``h = 0`` gives ``q0``, ``h = 1`` ``q1`` (up
    to sign), and the angle grows uniformly in between.
    """
    h = torch.as_tensor(h, dtype=q0.dtype, device=q0.device)
    return _slerp(q0, q1, h, shortest=True)


def _align_hemisphere(q: torch.Tensor) -> torch.Tensor:
    """Flip signs along the sequence so consecutive keys have a non-negative dot product: the
    interpolants then take the shorter arc between every pair of keys."""
    out = [q[0]]
    for i in range(1, q.shape[0]):
        out.append(-q[i] if float((out[-1] * q[i]).sum()) < 0 else q[i])
    return torch.stack(out)


def squad_controls(q: torch.Tensor) -> torch.Tensor:
    """The intermediate squad control quaternions ``[K, 4]`` for hemisphere-aligned keys ``[K, 4]``:
    ``s_i = q_i exp(-(log(q_i^-1 q_{i+1}) + log(q_i^-1 q_{i-1})) / 4)``, and ``s_i = q_i`` at the
    two ends (so a two-key squad is exactly slerp)."""
    s = q.clone()
    if q.shape[0] > 2:
        qi, qp, qn = q[1:-1], q[:-2], q[2:]
        inv = quat_conjugate(qi)
        tangent = (quat_log(quat_multiply(inv, qn)) + quat_log(quat_multiply(inv, qp))) / -4
        s[1:-1] = quat_multiply(qi, quat_exp(tangent))
    return s


def _prepare_quats(quats) -> torch.Tensor:
    q = torch.as_tensor(quats, dtype=_F64)
    if q.ndim != 2 or q.shape[-1] != 4:
        raise TrajectoryError(f"Keyframe quaternions have shape {tuple(q.shape)}.", "Give [K, 4] wxyz quaternions.")
    n = q.norm(dim=-1, keepdim=True)
    if not torch.isfinite(q).all() or (n < 1e-12).any():
        raise TrajectoryError("A keyframe quaternion is zero, NaN or infinite.", "Give unit wxyz quaternions.")
    return _align_hemisphere(q / n)


def slerp_keys(times, quats, query) -> torch.Tensor:
    """Piecewise slerp through keyframe quaternions ``[K, 4]`` at ``query`` ``[Q]``; ``[Q, 4]`` out."""
    t = _check_times(times)
    q = _prepare_quats(quats)
    query = torch.as_tensor(query, dtype=_F64).reshape(-1)
    if q.shape[0] == 1:
        return q.expand(query.numel(), 4).clone()
    idx, frac = _segments(t, query)
    out = _slerp(q[idx], q[idx + 1], frac, shortest=True)
    on_key, key = _exact_key(t, query)
    return torch.where(on_key[:, None], q[key], out)


def squad_keys(times, quats, query) -> torch.Tensor:
    """Spherical cubic (squad) interpolation through keyframe quaternions ``[K, 4]``; ``[Q, 4]`` out.

    ``squad(q_i, q_{i+1}, s_i, s_{i+1}, h) = slerp(slerp(q_i, q_{i+1}, h), slerp(s_i, s_{i+1}, h),
    2h(1-h))`` with ``h`` the fraction of the keyframe interval and ``s`` from ``squad_controls``:
    exact at keys, smooth angular velocity across evenly spaced keys.
    """
    t = _check_times(times)
    q = _prepare_quats(quats)
    query = torch.as_tensor(query, dtype=_F64).reshape(-1)
    if q.shape[0] == 1:
        return q.expand(query.numel(), 4).clone()
    s = squad_controls(q)
    idx, frac = _segments(t, query)
    # The inner slerps follow the arcs as constructed (no sign flip): flipping one of them
    # independently would break the curve's continuity at the keys.
    a = _slerp(q[idx], q[idx + 1], frac, shortest=False)
    b = _slerp(s[idx], s[idx + 1], frac, shortest=False)
    out = _slerp(a, b, 2 * frac * (1 - frac), shortest=False)
    on_key, key = _exact_key(t, query)
    return torch.where(on_key[:, None], q[key], out)


# ---------------------------------------------------------------------------------------- poses

POSITION_MODES = ("catmull_rom", "linear")
ROTATION_MODES = ("squad", "slerp")


def interpolate_poses(times: Sequence[float] | torch.Tensor, c2w_keys: torch.Tensor,
                      query_times: Sequence[float] | torch.Tensor,
                      position: str = "catmull_rom", rotation: str = "squad") -> torch.Tensor:
    """Camera-to-world poses ``[Q, 4, 4]`` at ``query_times`` from keyframe poses ``[K, 4, 4]``.

    Args:
        times: ``[K]`` strictly increasing keyframe times (frame indices, floats allowed).
        c2w_keys: ``[K, 4, 4]`` (or ``[K, 3, 4]``) OpenCV camera-to-world keyframe poses.
        query_times: ``[Q]`` times to evaluate; outside ``[times[0], times[-1]]`` the end key holds.
        position: ``"catmull_rom"`` (centripetal) or ``"linear"`` for the camera centres.
        rotation: ``"squad"`` or ``"slerp"`` for the orientations.
    """
    if position not in POSITION_MODES:
        raise TrajectoryError(f"Unknown position interpolation {position!r}.",
                              f"Use one of {', '.join(POSITION_MODES)}.")
    if rotation not in ROTATION_MODES:
        raise TrajectoryError(f"Unknown rotation interpolation {rotation!r}.",
                              f"Use one of {', '.join(ROTATION_MODES)}.")
    keys = torch.as_tensor(c2w_keys, dtype=_F64)
    if keys.ndim != 3 or keys.shape[-2:] not in ((4, 4), (3, 4)):
        raise TrajectoryError(f"Keyframe poses have shape {tuple(keys.shape)}.",
                              "Give [K, 4, 4] camera-to-world poses.")
    t = _check_times(times)
    if keys.shape[0] != t.numel():
        raise TrajectoryError(f"{keys.shape[0]} keyframe poses for {t.numel()} keyframe times.",
                              "Give one pose per time.")
    if not torch.isfinite(keys).all():
        raise TrajectoryError("A keyframe pose holds NaN or infinity.", "Give finite poses.")
    R = orthonormalize(keys[:, :3, :3], what="keyframe rotation")
    pos_fn = catmull_rom if position == "catmull_rom" else linear_positions
    rot_fn = squad_keys if rotation == "squad" else slerp_keys
    centres = pos_fn(t, keys[:, :3, 3], query_times)
    quats = rot_fn(t, matrix_to_quat(R), query_times)
    return make_pose(quat_to_matrix(quats), centres)


def resample_trajectory(traj: CameraTrajectory, num_frames: int, fps: float | None = None) -> CameraTrajectory:
    """The same camera path sampled at ``num_frames`` evenly spaced times.

    New frame ``j`` sits at source time ``j * (T - 1) / (num_frames - 1)`` (first and last frames kept
    exactly); centres use centripetal Catmull-Rom through every source frame, rotations squad, and
    intrinsics are interpolated linearly. ``fps`` defaults to the rate that keeps the clip's
    duration (``num_frames / traj.duration``).
    """
    n = check_frame_count(num_frames, "resampled trajectory")
    T = traj.num_frames
    new_fps = float(fps) if fps is not None else traj.fps * n / T
    meta = dict(traj.meta, resampled_from=T)
    if n == T:
        return traj.replace(fps=new_fps) if fps is not None else traj
    if T == 1:
        return traj.replace(c2w=traj.c2w.expand(n, 4, 4), K=traj.K.expand(n, 3, 3), fps=new_fps, meta=meta)
    src_t = torch.arange(T, dtype=_F64)
    query = torch.linspace(0, T - 1, n, dtype=_F64) if n > 1 else torch.zeros(1, dtype=_F64)
    c2w = interpolate_poses(src_t, traj.c2w, query)
    K = linear_positions(src_t, traj.K.reshape(T, 9), query).reshape(n, 3, 3)
    return traj.replace(c2w=c2w, K=K, fps=new_fps, meta=meta)


def angle_between(R0: torch.Tensor, R1: torch.Tensor) -> torch.Tensor:
    """Geodesic angle in radians between rotations ``[..., 3, 3]`` (for checks and summaries)."""
    c = ((R0.transpose(-1, -2) @ R1).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.acos(c.clamp(-1.0, 1.0))


__all__ = [
    "EASINGS", "POSITION_MODES", "ROTATION_MODES", "angle_between", "catmull_rom", "check_easing", "ease",
    "ease_in", "ease_in_out", "ease_out", "interpolate_poses", "linear", "linear_positions", "quat_exp",
    "quat_log", "quat_power", "quat_slerp", "resample_trajectory", "slerp_keys", "smoothstep", "squad_controls",
    "squad_keys",
]
