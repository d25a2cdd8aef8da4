"""COLMAP text models: ``cameras.txt`` + ``images.txt`` (+ ``points3D.txt``) in one folder.

``cameras.txt``, one line per camera (``#`` lines are comments)::

    CAMERA_ID MODEL WIDTH HEIGHT PARAMS...

with PARAMS per model: SIMPLE_PINHOLE ``f cx cy``; PINHOLE ``fx fy cx cy``; SIMPLE_RADIAL
``f cx cy k``; RADIAL ``f cx cy k1 k2``; OPENCV ``fx fy cx cy k1 k2 p1 p2``. Focal length and
principal point are read; distortion is ignored and recorded in ``meta["ignored_distortion"]``.

``images.txt``, two lines per image::

    IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME
    X Y POINT3D_ID X Y POINT3D_ID ...        (2-D points; may be an empty line)

The quaternion (Hamilton, wxyz) and translation are **world-to-camera**, OpenCV camera axes.
Frames are ordered by image name (natural order: ``frame_2`` before ``frame_10``; the same as a plain
sort for zero-padded names). Binary models (``.bin``) must be converted to text first.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import TrajectoryError
from ..trajectory import CameraTrajectory
from ..transforms import invert_pose, make_pose, matrix_to_quat, quat_to_matrix
from ...conventions import ROTATION_TOLERANCE
from ._common import atomic_write_text, check_no_skew, fail, fmt, natural_key, parse_numbers, read_text

FORMAT_NAME = "colmap"

#: model -> (number of params, indices of fx, fy, cx, cy in PARAMS; fx == fy when one focal)
CAMERA_MODELS = {
    "SIMPLE_PINHOLE": (3, (0, 0, 1, 2)),
    "PINHOLE": (4, (0, 1, 2, 3)),
    "SIMPLE_RADIAL": (4, (0, 0, 1, 2)),
    "RADIAL": (5, (0, 0, 1, 2)),
    "OPENCV": (8, (0, 1, 2, 3)),
}


def _content_lines(text: str):
    """``(line number, stripped text)`` of every line, comments (``#``) blanked but kept in place."""
    for n, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        yield n, ("" if s.startswith("#") else s)


def _model_folder(path: Path) -> Path:
    path = Path(path)
    if path.is_file() and path.name in ("cameras.txt", "images.txt", "points3D.txt"):
        return path.parent
    if path.is_file():
        raise TrajectoryError(f"{path}: a COLMAP model is a folder with cameras.txt and images.txt.",
                              "Pass that folder (e.g. sparse/0) or its images.txt.")
    if not path.is_dir():
        raise TrajectoryError(f"{path}: no such COLMAP model folder.",
                              "Pass the folder holding cameras.txt and images.txt.")
    if not (path / "images.txt").is_file() and (path / "images.bin").is_file():
        raise TrajectoryError(f"{path}: this COLMAP model is binary (images.bin); LaVR reads the text model.",
                              f"Convert it: colmap model_converter --input_path {path} --output_path {path} "
                              "--output_type TXT")
    return path


def read_colmap_cameras(path: Path) -> tuple[dict[int, tuple[int, int, list[float]]], dict]:
    """``{camera_id: (width, height, [fx, fy, cx, cy])}`` and the ignored distortion per camera."""
    cams, ignored = {}, {}
    for n, line in _content_lines(read_text(path, "COLMAP cameras.txt")):
        if not line:
            continue
        tok = line.split()
        if len(tok) < 4:
            fail(path, f"Expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS..., found {len(tok)} fields.",
                 "The file may be truncated; re-export the model as text.", line=n)
        model = tok[1]
        if model not in CAMERA_MODELS:
            fail(path, f"Camera model {model} is not supported.",
                 f"LaVR reads {', '.join(CAMERA_MODELS)}; undistort first (colmap image_undistorter writes PINHOLE).",
                 line=n)
        count, (ifx, ify, icx, icy) = CAMERA_MODELS[model]
        if len(tok) != 4 + count:
            fail(path, f"A {model} camera has {count} parameters, found {len(tok) - 4}.",
                 "The line may be truncated or the model name wrong; re-export the model as text.", line=n)
        try:
            cid, w, h = int(tok[0]), int(tok[2]), int(tok[3])
        except ValueError:
            fail(path, "CAMERA_ID, WIDTH and HEIGHT must be whole numbers.", "Check the line's columns.", line=n)
        if w < 1 or h < 1:
            fail(path, f"Image size {w} x {h} is not positive.", "Fix WIDTH and HEIGHT.", line=n)
        if cid in cams:
            fail(path, f"Camera id {cid} appears twice.", "Each CAMERA_ID must be unique.", line=n)
        p = parse_numbers(tok[4:], path, n, f"{model} parameters")
        fx, fy, cx, cy = p[ifx], p[ify], p[icx], p[icy]
        if fx <= 0 or fy <= 0:
            fail(path, f"Focal length {fx:g}/{fy:g} is not positive.", "Give focal lengths in pixels.", line=n)
        cams[cid] = (w, h, [fx, fy, cx, cy])
        extra = p[4:] if ifx != ify else p[3:]
        if any(v != 0 for v in extra):
            ignored[str(cid)] = {"model": model, "params": p}
    if not cams:
        fail(path, "No cameras are defined.", "cameras.txt needs one line per camera.")
    return cams, ignored


def _check_points_line(path, numbered_line: tuple[int, str], image: str) -> None:
    """The line after a pose line must be (X, Y, POINT3D_ID) triples or empty; anything else means
    a missing points line or a cut file, which would otherwise shift every later image."""
    n, line = numbered_line
    tok = line.split()
    ok = len(tok) % 3 == 0
    if ok:
        try:
            [float(x) for x in tok]
        except ValueError:
            ok = False
    if not ok:
        fail(path, f"This line should hold the 2-D points of image {image!r} (X Y POINT3D_ID triples, or nothing).",
             "Each pose line must be followed by exactly one points line; add an empty line after pose lines "
             "that have no points, or re-export the model.", line=n)


def read_colmap(path, fps: float | None = None, **_unused) -> CameraTrajectory:
    """Read a COLMAP text model folder (or the path of its ``images.txt``/``cameras.txt``).

    Args:
        fps: frame rate (COLMAP has none; default 16, recorded in ``meta``).
    """
    folder = _model_folder(Path(path))
    cams, ignored = read_colmap_cameras(folder / "cameras.txt")
    ipath = folder / "images.txt"
    rows = []
    lines = list(_content_lines(read_text(ipath, "COLMAP images.txt")))
    k = 0
    while k < len(lines):
        n, line = lines[k]
        k += 1
        if not line:
            continue
        tok = line.split()
        if len(tok) < 10:
            fail(ipath, f"Expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, found {len(tok)} fields.",
                 "The file may be truncated; each image takes a pose line then a (possibly empty) points line.",
                 line=n)
        try:
            iid, cid = int(tok[0]), int(tok[8])
        except ValueError:
            fail(ipath, "IMAGE_ID and CAMERA_ID must be whole numbers.",
                 "Check the line's columns (a points line may have been taken for a pose line: "
                 "every pose line must be followed by one points line, empty or not).", line=n)
        v = parse_numbers(tok[1:8], ipath, n, "pose")
        name = " ".join(tok[9:])
        if cid not in cams:
            fail(ipath, f"Image {name!r} uses camera {cid}, which cameras.txt does not define.",
                 "Export cameras.txt and images.txt from the same model.", line=n)
        q = torch.tensor(v[:4], dtype=torch.float64)
        qn = float(q.norm())
        if abs(qn * qn - 1) > ROTATION_TOLERANCE:
            fail(ipath, f"The quaternion (QW QX QY QZ) has norm {qn:.6g}, not 1: not a rotation.",
                 "Check the columns; COLMAP writes unit quaternions.", line=n)
        rows.append((name, n, iid, cid, q, v[4:7]))
        if k < len(lines):  # the points line that follows (maybe empty) carries no camera information
            _check_points_line(ipath, lines[k], name)
            k += 1
    if not rows:
        fail(ipath, "No images are listed.", "images.txt needs a pose line (and a points line) per image.")
    names = [r[0] for r in rows]
    if len(set(names)) != len(names):
        dup = next(nm for nm in names if names.count(nm) > 1)
        fail(ipath, f"Image name {dup!r} appears twice.", "Each image must be registered once.")
    rows.sort(key=lambda r: natural_key(r[0]))
    sizes = {cams[r[3]][:2] for r in rows}
    if len(sizes) > 1:
        fail(folder / "cameras.txt", f"The images use cameras of different sizes {sorted(sizes)}.",
             "A LaVR trajectory has one image size; undistort/resize to a common size first.")
    (W, H), = sizes
    R = quat_to_matrix(torch.stack([r[4] for r in rows]))
    t = torch.tensor([r[5] for r in rows], dtype=torch.float64)
    c2w = invert_pose(make_pose(R, t))
    K = torch.tensor([[[c[0], 0.0, c[2]], [0.0, c[1], c[3]], [0.0, 0.0, 1.0]]
                      for c in (cams[r[3]][2] for r in rows)], dtype=torch.float64)
    meta = {"source": FORMAT_NAME, "image_names": [r[0] for r in rows], "image_ids": [r[2] for r in rows],
            "camera_ids": [r[3] for r in rows]}
    if ignored:
        meta["ignored_distortion"] = ignored
        meta["note"] = "lens distortion of these cameras is ignored (pinhole cameras); undistort the images to match"
    if fps is None:
        fps = 16.0
        meta["fps_note"] = "COLMAP has no frame rate: 16 assumed"
    try:
        return CameraTrajectory(c2w=c2w, K=K, width=W, height=H, fps=fps, meta=meta)
    except TrajectoryError as e:
        raise TrajectoryError(f"{ipath}: {e.message}", e.hint) from None


def write_colmap(traj: CameraTrajectory, path, **_unused) -> Path:
    """Write ``traj`` as a COLMAP text model into folder ``path`` (created if needed; each file atomic).

    One PINHOLE camera when every frame shares K, else one per frame. Image names come from
    ``meta["image_names"]`` when they are unique and already in frame order, else
    ``frame_00001.png`` ... ; ``points3D.txt`` is empty. Returns the folder.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise TrajectoryError(f"{folder} is a file; a COLMAP model is written into a folder.",
                              "Give a folder path (it is created if missing).")
    check_no_skew(traj.K, "COLMAP")
    T, K = traj.num_frames, traj.K
    shared = bool((K == K[:1]).all())
    cam_of = [1] * T if shared else list(range(1, T + 1))
    cam_lines = [f"{i + 1} PINHOLE {traj.width} {traj.height} "
                 + " ".join(fmt(x) for x in (K[i, 0, 0], K[i, 1, 1], K[i, 0, 2], K[i, 1, 2]))
                 for i in range(1 if shared else T)]
    names = traj.meta.get("image_names") if isinstance(traj.meta, dict) else None
    usable = (isinstance(names, list) and len(names) == T
              and all(isinstance(n, str) and n and not any(c.isspace() for c in n) for n in names))
    # Names are only reused when reading them back orders the frames the same way.
    if not (usable and len(set(names)) == T
            and [natural_key(n) for n in names] == sorted(natural_key(n) for n in names)):
        names = [f"frame_{i + 1:05d}.png" for i in range(T)]
    w2c = traj.w2c
    q = matrix_to_quat(w2c[:, :3, :3])
    img_lines = []
    for i in range(T):
        nums = " ".join(fmt(x) for x in q[i].tolist() + w2c[i, :3, 3].tolist())
        img_lines += [f"{i + 1} {nums} {cam_of[i]} {names[i]}", ""]
    atomic_write_text(folder / "cameras.txt",
                      "# Camera list with one line of data per camera:\n"
                      "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
                      f"# Number of cameras: {len(cam_lines)}\n" + "\n".join(cam_lines) + "\n")
    atomic_write_text(folder / "images.txt",
                      "# Image list with two lines of data per image:\n"
                      "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
                      "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
                      f"# Number of images: {T}, mean observations per image: 0\n" + "\n".join(img_lines) + "\n")
    atomic_write_text(folder / "points3D.txt",
                      "# 3D point list with one line of data per point:\n"
                      "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
                      "# Number of points: 0, mean track length: 0\n")
    return folder
