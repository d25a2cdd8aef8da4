"""4D Gaussians on disk: one numbered splat file per timestep plus a JSON manifest.

Layout for ``write_sequence(seq, folder, stem="scene", fmt="ply")``::

    folder/scene_00000.ply ... scene_{T-1:05d}.ply   the dynamic Gaussians of each timestep
    folder/scene_static.ply                          the shared static set (only if there is one)
    folder/scene.json                                the manifest, written last

Manifest (``"format": "lavr.gaussian_sequence"``, ``"version": 1``)::

    {"format": ..., "version": 1, "file_format": "ply", "timesteps": T,
     "frames": [{"index": i, "time": seconds, "file": "scene_00000.ply", "gaussians": N_i}, ...],
     "static": {"file": "scene_static.ply", "gaussians": N} or null,
     "conventions": {...}, "meta": {...}}

A viewer shows timestep ``i`` as the static file plus frame ``i``'s file. File names in the manifest
are plain names in the manifest's folder; the reader refuses anything else.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import InputError
from ..fileio import atomic_write_text
from .io import FORMATS, read_gaussians, write_gaussians
from .types import GaussianSequence

MANIFEST_FORMAT = "lavr.gaussian_sequence"
_CONVENTIONS = {"positions": "world frame of the source cameras (OpenCV c2w: x right, y down, z forward)",
                "time": "seconds", "composition": "timestep i = static set + frame i"}


def _jsonable(meta: dict) -> dict:
    try:
        json.dumps(meta)
        return meta
    except (TypeError, ValueError):
        return {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool, type(None)))}


def write_sequence(seq: GaussianSequence, folder: str | os.PathLike, stem: str = "splat", fmt: str = "ply",
                   **options) -> Path:
    """Write ``seq`` as numbered ``.{fmt}`` files and ``{stem}.json`` in ``folder``; returns the manifest path."""
    if fmt not in FORMATS:
        raise InputError(f"Unknown splat format {fmt!r}.", "Use 'ply', 'splat' or 'spz'.")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", stem or ""):
        raise InputError(f"The sequence name {stem!r} is not a plain file name.",
                         "Use letters, digits, '_', '-' and '.'; choose the folder separately.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for i, (g, t) in enumerate(zip(seq.frames, seq.times.tolist())):
        name = f"{stem}_{i:05d}.{fmt}"
        write_gaussians(g, folder / name, **options)
        frames.append({"index": i, "time": t, "file": name, "gaussians": g.num})
    static = None
    if seq.static is not None:
        name = f"{stem}_static.{fmt}"
        write_gaussians(seq.static, folder / name, **options)
        static = {"file": name, "gaussians": seq.static.num}
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "file_format": fmt, "timesteps": len(seq),
                "frames": frames, "static": static, "conventions": _CONVENTIONS, "meta": _jsonable(dict(seq.meta))}
    return atomic_write_text(folder / f"{stem}.json", json.dumps(manifest, indent=1))


def read_sequence(manifest_path: str | os.PathLike, **options) -> GaussianSequence:
    """Read a sequence written by ``write_sequence`` from its JSON manifest."""
    mp = Path(manifest_path)
    try:
        m = json.loads(mp.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"Sequence manifest {str(mp)!r} does not exist.", "Give the .json written with the splat files.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{mp.name}: not a JSON manifest ({e}).", "Give the .json written with the splat files.") from e
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{mp.name}: not a LaVR Gaussian sequence manifest.", "Give the .json written with the splat files.")

    def load(name):
        if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
            raise InputError(f"{mp.name}: the manifest names {name!r}, which is not a plain file name.",
                             "The manifest is corrupt; write the sequence again.")
        return read_gaussians(mp.parent / name, **options)

    try:
        entries = sorted(m["frames"], key=lambda e: e["index"])
        frames = [load(e["file"]) for e in entries]
        times = [float(e["time"]) for e in entries]
        static = load(m["static"]["file"]) if m.get("static") else None
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{mp.name}: the manifest is missing or mangles a field ({e}).",
                         "Write the sequence again.") from e
    return GaussianSequence(tuple(frames), times, static, dict(m.get("meta") or {}))
