"""3D Gaussian Splatting ``.ply`` files: the layout the original 3DGS code writes and every viewer reads.

One ``vertex`` element with float32 properties, in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 .. f_rest_{3(K-1)-1}  opacity  scale_0..2  rot_0..3

* ``f_dc_*`` is the SH DC term per channel; ``f_rest_*`` holds the higher bands **channel-major**
  (all red coefficients 1..K-1, then green, then blue).
* ``opacity`` is the logit (pre-sigmoid) value, ``scale_*`` is ``log(scale)``, ``rot_*`` is wxyz.
* Normals are written as zeros (3DGS does the same; viewers ignore them).
* Positions are in the world frame of the source (OpenCV-style right/down/forward cameras for LaVR
  reconstructions, as COLMAP-based 3DGS scenes are), written as they are.

The reader accepts binary (either endianness) and ascii PLY of any scalar property types, with other
elements before or after the vertices; a PLY without the 3DGS properties gets an error saying which
are missing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..fileio import atomic_writer
from .io_common import GaussianArrays, build, file_error, logit, read_bytes, sigmoid
from .types import Gaussians

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3")
_HINT = "Export a 3D Gaussian Splatting PLY (x, y, z, f_dc_*, opacity, scale_*, rot_*)."


def ply_property_names(sh_degree: int) -> list[str]:
    """The vertex properties, in file order, of a 3DGS ``.ply`` with SH up to ``sh_degree``."""
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def ply_vertex_array(g: Gaussians) -> np.ndarray:
    """The ``[N, P]`` float32 vertex table of ``g`` in ``ply_property_names(g.sh_degree)`` order."""
    a = GaussianArrays.of(g)
    n, k = a.sh.shape[:2]
    table = np.empty((n, 14 + 3 * k), dtype="<f4")
    table[:, 0:3] = a.means
    table[:, 3:6] = 0.0
    table[:, 6:9] = a.sh[:, 0]
    rest_end = 9 + 3 * (k - 1)
    table[:, 9:rest_end] = a.sh[:, 1:].transpose(0, 2, 1).reshape(n, -1)  # channel-major
    table[:, rest_end] = logit(a.opacities)
    table[:, rest_end + 1:rest_end + 4] = np.log(a.scales)
    table[:, rest_end + 4:rest_end + 8] = a.rotations
    return table


def ply_header(n: int, sh_degree: int) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", "comment 3D Gaussian splat written by ComfyUI-LaVR",
             f"element vertex {n}"]
    lines += [f"property float {name}" for name in ply_property_names(sh_degree)]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def write_ply(g: Gaussians, path: str | os.PathLike) -> Path:
    """Write ``g`` as a binary little-endian 3DGS ``.ply``, atomically. Returns the path."""
    table = ply_vertex_array(g)
    with atomic_writer(path, "wb") as f:
        f.write(ply_header(g.num, g.sh_degree))
        f.write(memoryview(table).cast("B"))
    return Path(path)


def _parse_header(path: Path, data: bytes):
    if not data.startswith(b"ply"):
        raise file_error(path, "not a PLY file (no 'ply' magic at the start).", _HINT)
    m = re.search(rb"end_header[ \t]*\r?\n", data[:1 << 20])
    if m is None:
        raise file_error(path, "the PLY header never ends (no end_header line).", "The file is truncated or not a PLY.")
    fmt, elements = None, []
    for raw in data[:m.start()].decode("ascii", "replace").splitlines()[1:]:
        tok = raw.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        try:
            if tok[0] == "format":
                fmt = tok[1]
            elif tok[0] == "element":
                elements.append([tok[1], int(tok[2]), []])
            elif tok[0] == "property":
                if not elements:
                    raise ValueError("property before any element")
                if tok[1] == "list":
                    elements[-1][2].append((tok[4], None))
                else:
                    elements[-1][2].append((tok[2], _PLY_TYPES[tok[1]]))
            else:
                raise ValueError(f"unknown header line {raw!r}")
        except (IndexError, KeyError, ValueError) as e:
            raise file_error(path, f"malformed PLY header ({e}).", "Re-export the file as a standard PLY.") from e
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise file_error(path, f"unknown PLY format {fmt!r}.", "Use binary_little_endian, binary_big_endian or ascii PLY.")
    return fmt, elements, m.end()


def _vertex_columns(path: Path, data: bytes) -> tuple[int, dict[str, np.ndarray]]:
    fmt, elements, body = _parse_header(path, data)
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise file_error(path, "no 'vertex' element.", _HINT)
    vi = names.index("vertex")
    n, props = elements[vi][1], elements[vi][2]
    if any(t is None for _, t in props):
        raise file_error(path, "the vertex element has list properties, which Gaussian splats never have.", _HINT)
    if fmt == "ascii":
        lines = data[body:].split(b"\n")
        skip = sum(e[1] for e in elements[:vi])
        rows = [ln.split() for ln in lines[skip:skip + n]]
        if len(rows) < n or any(len(r) < len(props) for r in rows):
            raise file_error(path, f"{n} vertices announced but fewer complete vertex lines present.",
                             "The file is truncated; export it again.")
        try:
            arr = np.array([r[:len(props)] for r in rows], dtype=np.float64).reshape(n, len(props))
        except ValueError as e:
            raise file_error(path, f"a vertex line is not numeric ({e}).", "The file is corrupt; export it again.") from e
        return n, {name: arr[:, i] for i, (name, _) in enumerate(props)}
    end = "<" if fmt == "binary_little_endian" else ">"
    offset = body
    for name, count, eprops in elements[:vi]:
        if any(t is None for _, t in eprops):
            raise file_error(path, f"the element {name!r} before the vertices has list properties.",
                             "Write the vertex element first.")
        offset += count * np.dtype([(p, end + t) for p, t in eprops]).itemsize
    dt = np.dtype([(p, end + t) for p, t in props])
    have = max(0, len(data) - offset) // max(dt.itemsize, 1)
    if have < n:
        raise file_error(path, f"{n} vertices announced but only {have} present ({len(data)} bytes).",
                         "The file is truncated; export it again.")
    rec = np.frombuffer(data, dtype=dt, count=n, offset=offset)
    return n, {name: rec[name] for name, _ in props}


def read_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS ``.ply`` into ``Gaussians`` (sigmoid opacities, exp scales, SH reshaped)."""
    p = Path(path)
    data = read_bytes(p, "PLY")
    n, cols = _vertex_columns(p, data)
    missing = [k for k in _REQUIRED if k not in cols]
    if missing:
        raise file_error(p, f"not a Gaussian splat PLY: vertex properties {', '.join(missing)} are missing.", _HINT)
    if n == 0:
        raise file_error(p, "the file holds 0 Gaussians.", "Export a non-empty splat.")
    rest = sorted((k for k in cols if k.startswith("f_rest_")), key=lambda s: int(s[7:]) if s[7:].isdigit() else -1)
    n_rest = len(rest)
    k = n_rest // 3 + 1
    if n_rest % 3 or int(round(k ** 0.5)) ** 2 != k or rest != [f"f_rest_{i}" for i in range(n_rest)]:
        raise file_error(p, f"{n_rest} f_rest_* properties do not make a whole SH degree (need 0, 9, 24, 45 or 72, numbered from 0).",
                         "Export the splat with complete spherical-harmonics bands.")
    col = lambda name: np.asarray(cols[name], dtype=np.float32)  # noqa: E731
    stack = lambda names: np.stack([col(c) for c in names], -1)  # noqa: E731
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0] = stack(["f_dc_0", "f_dc_1", "f_dc_2"])
    if k > 1:
        sh[:, 1:] = stack(rest).reshape(n, 3, k - 1).transpose(0, 2, 1)
    with np.errstate(over="ignore"):
        scales = np.exp(stack(["scale_0", "scale_1", "scale_2"]))
    return build(p, stack(["x", "y", "z"]), scales, stack(["rot_0", "rot_1", "rot_2", "rot_3"]),
                 sigmoid(col("opacity")), sh, {"source": p.name, "format": "ply"})
