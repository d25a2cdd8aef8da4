"""RealEstate10K camera files (one ``.txt`` per clip).

Layout, as the dataset documents it::

    <video URL>
    <timestamp_us> <fx> <fy> <cx> <cy> <k1> <k2> <r00 r01 r02 t0 r10 r11 r12 t1 r20 r21 r22 t2>
    ...                                   (one line per frame, 19 numbers)

* ``fx fy cx cy`` are **normalised by the image size** (fx/W, fy/H, cx/W, cy/H), so the pixel
  intrinsics need the video's ``width`` and ``height`` from the caller.
* ``k1 k2`` are always 0 in the dataset (undistorted frames); non-zero values are kept in ``meta`` and
  not applied.
* The 3x4 matrix is **world-to-camera**, row-major, OpenCV camera axes; the reader inverts it.
* Timestamps are integer microseconds of the source video; the frame rate is recovered from them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import TrajectoryError
from ..trajectory import CameraTrajectory
from ..transforms import invert_pose
from ._common import atomic_write_text, check_no_skew, check_rotation, fail, fmt, parse_numbers, read_text

FORMAT_NAME = "realestate10k"
EXTENSIONS = (".txt",)
_FIELDS = 19

# Common video rates, tried first when recovering fps from rounded microsecond timestamps.
_STANDARD_FPS = (30.0, 24.0, 25.0, 60.0, 30000 / 1001, 24000 / 1001, 60000 / 1001, 15.0, 16.0, 50.0,
                 12.0, 10.0, 48.0, 120.0, 8.0, 5.0)


def _fps_from_timestamps(ts: list[int]) -> tuple[float, bool]:
    """The frame rate whose rounded timestamps reproduce ``ts`` (within 1 us), and whether one did.

    Standard rates are tried first, then the mean rate rounded to 0..3 decimals; if none reproduces
    every timestamp (irregular or sub-sampled video) the mean rate itself is returned.
    """
    rel = [t - ts[0] for t in ts]
    mean = (len(ts) - 1) * 1e6 / rel[-1]
    candidates = list(_STANDARD_FPS) + [round(mean, d) for d in range(4)]
    for c in candidates:
        if c > 0 and all(abs(round(i * 1e6 / c) - r) <= 1 for i, r in enumerate(rel)):
            return float(c), True
    return mean, False


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_realestate10k(path, width: int | None = None, height: int | None = None,
                       fps: float | None = None, **_unused) -> CameraTrajectory:
    """Read a RealEstate10K camera file.

    Args:
        width, height: size in pixels of the video the file describes (required: the file's
            intrinsics are fractions of it).
        fps: override the frame rate; by default it is recovered from the timestamps (30 for a
            single-frame file).

    Returns a trajectory with ``meta = {"source": "realestate10k", "url", "timestamps_us", ...}``.
    """
    path = Path(path)
    if width is None or height is None:
        raise TrajectoryError(f"{path}: RealEstate10K intrinsics are fractions of the image size, so the "
                              "image width and height are needed.",
                              "Pass width= and height= in pixels (the size of the video or frames these "
                              "cameras belong to, e.g. width=640, height=360).")
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or int(v) != v or int(v) < 1:
            raise TrajectoryError(f"Image {name} {v!r} is not a positive whole number of pixels.",
                                  "Give the size of the video these cameras belong to.")
    W, H = int(width), int(height)
    lines = read_text(path, "RealEstate10K camera").splitlines()
    url = None
    stamps, Ks, c2ws, dist = [], [], [], []
    for n, raw in enumerate(lines, start=1):
        tokens = raw.split()
        if not tokens:
            continue
        if url is None and not stamps and len(tokens) != _FIELDS:
            if len(tokens) > 1 and all(_is_number(t) for t in tokens):
                fail(path, f"The first line holds {len(tokens)} numbers: neither a URL nor a {_FIELDS}-number "
                           "camera line.", "The file may be damaged; re-export it.", line=n)
            url = raw.strip()  # the first line names the source video
            continue
        if len(tokens) != _FIELDS:
            fail(path, f"Expected {_FIELDS} numbers (timestamp, fx fy cx cy, k1 k2, 3x4 world-to-camera), "
                       f"found {len(tokens)}.",
                 "The file may be truncated or of another format; re-export it or remove that line.", line=n)
        try:
            t = int(tokens[0])
        except ValueError:
            t = None
        if t is None:
            fail(path, f"Timestamp {tokens[0]!r} is not a whole number of microseconds.",
                 "The first field of each line is an integer timestamp in microseconds.", line=n)
        v = parse_numbers(tokens[1:], path, n, "camera line")
        fx, fy, cx, cy, k1, k2 = v[:6]
        if fx <= 0 or fy <= 0:
            fail(path, f"Normalised focal lengths fx={fx:g}, fy={fy:g} must be positive.",
                 "Check the columns: timestamp, then fx fy cx cy as fractions of the image size.", line=n)
        if stamps and t <= stamps[-1]:
            fail(path, f"Timestamp {t} does not come after the previous one ({stamps[-1]}).",
                 "Frames must be in time order with distinct timestamps; sort or de-duplicate the lines.", line=n)
        w2c = torch.eye(4, dtype=torch.float64)
        w2c[:3] = torch.tensor(v[6:], dtype=torch.float64).reshape(3, 4)
        w2c[:3, :3] = check_rotation(w2c[:3, :3], path, line=n)
        stamps.append(t)
        Ks.append([[fx * W, 0.0, cx * W], [0.0, fy * H, cy * H], [0.0, 0.0, 1.0]])
        c2ws.append(invert_pose(w2c))
        dist.append([k1, k2])
    if not stamps:
        fail(path, "The file holds no camera lines.",
             "A RealEstate10K file is a URL line followed by one 19-number line per frame.")
    meta = {"source": FORMAT_NAME, "url": url, "timestamps_us": stamps}
    if any(k != 0 for d in dist for k in d):
        meta["distortion_k1k2"] = dist
        meta["note"] = "k1/k2 radial distortion is kept here but not applied (pinhole cameras)."
    if fps is None:
        if len(stamps) > 1:
            fps, exact = _fps_from_timestamps(stamps)
            if not exact:
                meta["fps_note"] = "timestamps are irregular; fps is their mean rate"
        else:
            fps = 30.0
            meta["fps_note"] = "single frame: fps assumed 30"
    try:
        return CameraTrajectory(c2w=torch.stack(c2ws), K=torch.tensor(Ks, dtype=torch.float64),
                                width=W, height=H, fps=fps, meta=meta)
    except TrajectoryError as e:
        raise TrajectoryError(f"{path}: {e.message}", e.hint) from None


def write_realestate10k(traj: CameraTrajectory, path, **_unused) -> Path:
    """Write ``traj`` as a RealEstate10K camera file (atomic).

    The URL line is ``meta["url"]`` (or ``unknown``); timestamps start at ``meta["timestamps_us"][0]``
    (or 0) and advance by ``1e6 / fps`` rounded to whole microseconds. Intrinsics are written
    normalised by ``traj.width`` / ``traj.height``; k1 = k2 = 0.
    """
    check_no_skew(traj.K, "RealEstate10K")
    stamps = traj.meta.get("timestamps_us") if isinstance(traj.meta, dict) else None
    t0 = int(stamps[0]) if isinstance(stamps, list) and stamps and isinstance(stamps[0], int) else 0
    url = str(traj.meta.get("url") or "unknown").replace("\n", " ")
    W, H = traj.width, traj.height
    w2c = traj.w2c
    out = [url]
    for i in range(traj.num_frames):
        K = traj.K[i]
        t = t0 + round(i * 1e6 / traj.fps)
        nums = [K[0, 0] / W, K[1, 1] / H, K[0, 2] / W, K[1, 2] / H, 0.0, 0.0] + w2c[i, :3].flatten().tolist()
        out.append(" ".join([str(t)] + [fmt(x) for x in nums]))
    return atomic_write_text(Path(path), "\n".join(out) + "\n")
