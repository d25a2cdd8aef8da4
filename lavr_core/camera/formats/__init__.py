"""Trajectory interchange: read and write ``CameraTrajectory`` in the formats camera tools use.

==================  =====================================  ==========================================
name                files                                  poses as stored
==================  =====================================  ==========================================
``lavr_trajectory`` ``*.lavr.json``                        c2w, OpenCV axes; K, size, fps, meta: lossless
``realestate10k``   ``*.txt`` (URL line + 19 numbers/line) w2c 3x4, OpenCV; K normalised by image size
``nerfstudio``      ``transforms.json``                    c2w, OpenGL axes; K in pixels
``colmap``          folder with cameras.txt, images.txt    w2c quaternion + translation, OpenCV
``recammaster``     ``camera_extrinsics.json``             Unreal row-vector matrices, cm
==================  =====================================  ==========================================

``read_trajectory(path, format=None, **kw)`` / ``write_trajectory(traj, path, format=None, **kw)``
pick the format from ``format`` (a name or alias in ``FORMATS``) or from the path; extra keywords go
to the format's reader or writer (``width``/``height`` for RealEstate10K, ``cam`` for ReCamMaster,
``fps`` for formats without a frame rate, ...). Every problem with a file raises
``TrajectoryError`` naming the file and line (or JSON item) and what to do. Writers are atomic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...errors import TrajectoryError
from ..trajectory import CameraTrajectory
from .colmap import read_colmap, write_colmap
from .lavr_json import read_lavr_json, write_lavr_json
from .nerfstudio import read_nerfstudio, write_nerfstudio
from .realestate10k import read_realestate10k, write_realestate10k
from .recammaster import (  # noqa: F401
    c2w_to_unreal, opencv_to_unreal, parse_unreal_matrix, read_recammaster, read_recammaster_matrices,
    recammaster_cam_emb, recammaster_intrinsics, recammaster_json, unreal_to_c2w, unreal_to_opencv,
    write_recammaster,
)
from .recammaster_presets import PRESET_NAMES, PRESETS, preset_name, preset_poses, recammaster_preset  # noqa: F401


@dataclass(frozen=True)
class TrajectoryFormat:
    """One interchange format: its reader, writer and how to recognise its files."""

    name: str
    description: str
    read: Callable[..., CameraTrajectory]
    write: Callable[..., Path]
    aliases: tuple[str, ...] = ()


FORMATS: dict[str, TrajectoryFormat] = {f.name: f for f in (
    TrajectoryFormat("lavr_trajectory", "LaVR's own lossless JSON (*.lavr.json)", read_lavr_json, write_lavr_json,
                     ("lavr", "lavr_json", "lavr.json")),
    TrajectoryFormat("realestate10k", "RealEstate10K camera .txt (needs width/height to read)",
                     read_realestate10k, write_realestate10k, ("re10k", "realestate")),
    TrajectoryFormat("nerfstudio", "nerfstudio transforms.json", read_nerfstudio, write_nerfstudio,
                     ("transforms", "transforms.json", "instant_ngp")),
    TrajectoryFormat("colmap", "COLMAP text model folder (cameras.txt, images.txt, points3D.txt)",
                     read_colmap, write_colmap, ("colmap_text",)),
    TrajectoryFormat("recammaster", "ReCamMaster / MultiCamVideo camera_extrinsics.json",
                     read_recammaster, write_recammaster, ("multicamvideo", "camera_extrinsics")),
)}


def format_by_name(name: str) -> TrajectoryFormat:
    key = str(name).strip().lower()
    for f in FORMATS.values():
        if key == f.name or key in f.aliases:
            return f
    raise TrajectoryError(f"Unknown trajectory format {name!r}.", f"Use one of {', '.join(FORMATS)}.")


def _sniff_json(path: Path) -> str | None:
    """Format of an existing ``.json`` file from its first bytes, without parsing all of it."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return None
    if '"lavr_trajectory"' in head:
        return "lavr_trajectory"
    if '"frame0"' in head or '"frame1"' in head:
        return "recammaster"
    if '"frames"' in head or '"transform_matrix"' in head or '"fl_x"' in head or '"camera_model"' in head:
        return "nerfstudio"
    return None


def detect_format(path, for_writing: bool = False) -> str:
    """The format name a path implies (extension, file name, folder contents, or a peek at a JSON file)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".lavr.json"):
        return "lavr_trajectory"
    if path.is_dir() or name in ("cameras.txt", "images.txt", "points3d.txt"):
        if path.is_dir() and not for_writing and (path / "transforms.json").is_file() \
                and not (path / "images.txt").is_file():
            return "nerfstudio"
        return "colmap"
    if name.endswith(".json"):
        if name.startswith("transforms"):
            return "nerfstudio"
        if name.startswith("camera_extrinsics"):
            return "recammaster"
        if not for_writing and path.is_file():
            sniffed = _sniff_json(path)
            if sniffed:
                return sniffed
    elif name.endswith(".txt"):
        return "realestate10k"
    elif for_writing and path.suffix == "":
        return "colmap"  # a new folder
    raise TrajectoryError(f"Cannot tell the trajectory format of {path}.",
                          f"Pass format= one of {', '.join(FORMATS)} (or name the file *.lavr.json, "
                          "transforms.json, camera_extrinsics.json, *.txt for RealEstate10K, or a COLMAP folder).")


def read_trajectory(path, format: str | None = None, **kw) -> CameraTrajectory:
    """Read a camera trajectory file; ``format`` (a ``FORMATS`` name or alias) or else the path decides."""
    fmt = format_by_name(format) if format else FORMATS[detect_format(path)]
    return fmt.read(Path(path), **kw)


def write_trajectory(traj: CameraTrajectory, path, format: str | None = None, **kw) -> Path:
    """Write ``traj`` (atomically) in ``format`` or the format the path implies; returns what was written."""
    if not isinstance(traj, CameraTrajectory):
        raise TrajectoryError(f"Expected a CameraTrajectory, got {type(traj).__name__}.",
                              "Connect a camera trajectory to this input.")
    fmt = format_by_name(format) if format else FORMATS[detect_format(path, for_writing=True)]
    return fmt.write(traj, Path(path), **kw)


__all__ = ["FORMATS", "TrajectoryFormat", "detect_format", "format_by_name", "read_trajectory", "write_trajectory",
           "read_colmap", "write_colmap", "read_lavr_json", "write_lavr_json", "read_nerfstudio", "write_nerfstudio",
           "read_realestate10k", "write_realestate10k", "read_recammaster", "write_recammaster",
           "recammaster_cam_emb", "recammaster_intrinsics", "recammaster_preset", "PRESET_NAMES", "PRESETS"]
