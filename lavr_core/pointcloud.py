"""Coloured point clouds (a scene preview, a reconstruction) and their PLY IO."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InputError
from .fileio import atomic_writer


@dataclass(frozen=True)
class PointCloud:
    """Points in world coordinates.

    Attributes:
        xyz: ``[N, 3]`` float32 positions, world frame of the trajectory they come with (OpenCV
            camera-to-world convention, scene units).
        rgb: ``[N, 3]`` float32 colours in [0, 1], or None.
        conf: ``[N]`` float32 confidences (model-specific scale, larger is surer), or None.
        meta: provenance, JSON-serialisable.
    """

    xyz: torch.Tensor
    rgb: torch.Tensor | None = None
    conf: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        xyz = torch.as_tensor(self.xyz).detach().to("cpu", torch.float32)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise InputError(f"Point positions have shape {tuple(xyz.shape)}; expected [N, 3].")
        n = xyz.shape[0]
        rgb = self.rgb
        if rgb is not None:
            rgb = torch.as_tensor(rgb).detach().to("cpu", torch.float32)
            if rgb.shape != (n, 3):
                raise InputError(f"Point colours have shape {tuple(rgb.shape)} for {n} points; expected [{n}, 3].")
        conf = self.conf
        if conf is not None:
            conf = torch.as_tensor(conf).detach().to("cpu", torch.float32).reshape(-1)
            if conf.shape[0] != n:
                raise InputError(f"{conf.shape[0]} confidences for {n} points.")
        keep = torch.isfinite(xyz).all(-1)
        if not keep.all():  # non-finite points are unusable anywhere; record how many were dropped
            xyz, rgb, conf = xyz[keep], None if rgb is None else rgb[keep], None if conf is None else conf[keep]
            self.meta["dropped_nonfinite"] = int((~keep).sum())
        object.__setattr__(self, "xyz", xyz.contiguous())
        object.__setattr__(self, "rgb", None if rgb is None else rgb.clamp(0, 1).contiguous())
        object.__setattr__(self, "conf", None if conf is None else conf.contiguous())

    def __len__(self) -> int:
        return self.xyz.shape[0]

    def subsample(self, max_points: int, seed: int = 0) -> "PointCloud":
        """At most ``max_points`` points, picked uniformly at random (deterministic for a seed)."""
        if len(self) <= max_points:
            return self
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:max_points].sort().values
        return PointCloud(self.xyz[idx], None if self.rgb is None else self.rgb[idx],
                          None if self.conf is None else self.conf[idx], dict(self.meta))


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply_points(path: str | os.PathLike) -> PointCloud:
    """Positions (and colours, when present) of the ``vertex`` element of a PLY file.

    Reads ascii and binary (little/big endian) PLY with scalar vertex properties. Colours come from
    ``red/green/blue`` (uchar 0..255 or float 0..1) or, for 3DGS files, from the SH DC terms
    ``f_dc_0..2`` (colour = 0.5 + C0 * f_dc).
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            if f.readline().strip() != b"ply":
                raise InputError(f"{p.name} is not a PLY file (no 'ply' magic line).", "Give a .ply point cloud.")
            fmt, elements, cur = None, [], None
            while True:
                line = f.readline()
                if not line:
                    raise InputError(f"{p.name}: the PLY header never ends (no end_header).", "The file is truncated.")
                tok = line.decode("ascii", "replace").split()
                if not tok or tok[0] in ("comment", "obj_info"):
                    continue
                if tok[0] == "format":
                    fmt = tok[1]
                elif tok[0] == "element":
                    cur = [tok[1], int(tok[2]), []]
                    elements.append(cur)
                elif tok[0] == "property":
                    if tok[1] == "list":
                        cur[2].append((tok[4], None))
                    else:
                        cur[2].append((tok[2], _PLY_TYPES[tok[1]]))
                elif tok[0] == "end_header":
                    break
            body = f.read()
    except (KeyError, ValueError, IndexError) as e:
        raise InputError(f"{p.name}: malformed PLY header ({e}).", "Re-export the point cloud as a standard PLY.") from e
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise InputError(f"{p.name} has no 'vertex' element.", "Give a PLY with vertex positions x, y, z.")
    if names.index("vertex") != 0 or any(t is None for _, t in elements[0][2]):
        raise InputError(f"{p.name}: vertex lists or elements before 'vertex' are not supported.",
                         "Export the point cloud with vertices first and scalar properties only.")
    _, n, props = elements[0]
    if fmt == "ascii":
        rows = body.decode("ascii", "replace").split("\n")[:n]
        try:
            arr = np.array([[float(v) for v in r.split()[:len(props)]] for r in rows], dtype=np.float64)
        except ValueError as e:
            raise InputError(f"{p.name}: a vertex line is not numeric ({e}).", "The file is corrupt.") from e
        if arr.shape != (n, len(props)):
            raise InputError(f"{p.name}: expected {n} vertices of {len(props)} values.", "The file is truncated.")
        cols = {name: arr[:, i] for i, (name, _) in enumerate(props)}
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        end = "<" if fmt == "binary_little_endian" else ">"
        dt = np.dtype([(name, end + t) for name, t in props])
        if len(body) < dt.itemsize * n:
            raise InputError(f"{p.name}: {n} vertices announced but only {len(body) // dt.itemsize} present.",
                             "The file is truncated; export it again.")
        rec = np.frombuffer(body, dtype=dt, count=n)
        cols = {name: rec[name] for name, _ in props}
    else:
        raise InputError(f"{p.name}: unknown PLY format {fmt!r}.", "Use ascii or binary PLY.")
    if not all(k in cols for k in "xyz"):
        raise InputError(f"{p.name}: vertices lack x, y, z.", "Give a PLY with vertex positions.")
    xyz = torch.from_numpy(np.stack([cols["x"], cols["y"], cols["z"]], -1).astype(np.float32))
    rgb = None
    if all(k in cols for k in ("red", "green", "blue")):
        c = np.stack([cols["red"], cols["green"], cols["blue"]], -1).astype(np.float32)
        rgb = torch.from_numpy(c / 255.0 if c.max(initial=0) > 1.0 or cols["red"].dtype == np.uint8 else c)
    elif all(f"f_dc_{i}" in cols for i in range(3)):
        sh_c0 = 0.28209479177387814
        rgb = torch.from_numpy(0.5 + sh_c0 * np.stack([cols[f"f_dc_{i}"] for i in range(3)], -1).astype(np.float32))
    return PointCloud(xyz, rgb, meta={"source": p.name})


def write_ply_points(cloud: PointCloud, path: str | os.PathLike) -> Path:
    """Binary little-endian PLY with x, y, z (float) and red, green, blue (uchar), written atomically."""
    p = Path(path)
    n = len(cloud)
    has_rgb = cloud.rgb is not None
    header = ["ply", "format binary_little_endian 1.0", "comment written by ComfyUI-LaVR", f"element vertex {n}",
              "property float x", "property float y", "property float z"]
    if has_rgb:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("r", "u1"), ("g", "u1"), ("b", "u1")] if has_rgb else []))
    rec = np.empty(n, dtype=dt)
    xyz = cloud.xyz.numpy()
    rec["x"], rec["y"], rec["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    if has_rgb:
        c = (cloud.rgb.numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        rec["r"], rec["g"], rec["b"] = c[:, 0], c[:, 1], c[:, 2]
    with atomic_writer(p, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(rec.tobytes())
    return p


