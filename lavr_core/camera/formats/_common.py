"""Shared plumbing of the trajectory file formats: where-in-the-file errors, number parsing,
rigidity checks per frame, name ordering and atomic writes. Nothing here knows a format."""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from ...conventions import ROTATION_TOLERANCE
from ...errors import TrajectoryError
from ...fileio import atomic_write_text  # noqa: F401 (re-exported for the format modules)
from ..transforms import orthonormalize


def where(path: Path | str, line: int | None = None, item: str | None = None) -> str:
    """``'file.txt, line 7'`` / ``'file.json, frames[3].transform_matrix'``: the place a problem is at."""
    text = str(path)
    if line is not None:
        text += f", line {line}"
    if item:
        text += f", {item}"
    return text


def fail(path, message: str, hint: str, line: int | None = None, item: str | None = None):
    """Raise a ``TrajectoryError`` that starts with the file (and line or JSON item) at fault."""
    raise TrajectoryError(f"{where(path, line, item)}: {message}", hint)


def parse_numbers(tokens: list[str], path, line: int, what: str) -> list[float]:
    """Floats from text tokens; a word that is not a number, NaN or infinity is an error at ``line``."""
    out = []
    for tok in tokens:
        try:
            v = float(tok)
        except ValueError:
            fail(path, f"{tok!r} in the {what} is not a number.",
                 "Each field must be a plain decimal number; check the file is not corrupted or of another format.",
                 line=line)
        if not math.isfinite(v):
            fail(path, f"The {what} holds {tok!r}.",
                 "Every number must be finite; fix or drop that frame where the file was made.", line=line)
        out.append(v)
    return out


def json_number(value, path, item: str) -> float:
    """A finite JSON number (bools and strings are rejected, not coerced)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(path, f"{value!r} is not a number.", "Write the value as a JSON number.", item=item)
    v = float(value)
    if not math.isfinite(v):
        fail(path, f"The value is {value!r}.", "Every number must be finite; fix or drop that frame.", item=item)
    return v


def json_matrix(value, rows: int, cols: int, path, item: str) -> list[list[float]]:
    """A ``rows`` x ``cols`` nested list of finite numbers from parsed JSON."""
    if not isinstance(value, list) or len(value) != rows or any(
            not isinstance(r, list) or len(r) != cols for r in value):
        fail(path, f"Expected a {rows}x{cols} matrix (a list of {rows} rows of {cols} numbers), got {_short(value)}.",
             "Check the file was written by a tool of this format and is not truncated.", item=item)
    return [[json_number(v, path, f"{item}[{i}][{j}]") for j, v in enumerate(r)] for i, r in enumerate(value)]


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_rotation(R: torch.Tensor, path, line: int | None = None, item: str | None = None) -> torch.Tensor:
    """The nearest rotation to one ``[3, 3]`` block, or an error that names the file and line.

    Within ``ROTATION_TOLERANCE`` of orthonormal is accepted (text files round to a few digits);
    a reflection or a scaled/sheared block is rejected, as ``CameraTrajectory`` would, but here the
    message can say where in the file the bad frame is.
    """
    if not torch.isfinite(R).all():
        fail(path, "The rotation holds NaN or infinity.", "Fix or drop that frame where the file was made.",
             line=line, item=item)
    err = (R.T @ R - torch.eye(3, dtype=R.dtype)).abs().max().item()
    if torch.linalg.det(R).item() <= 0:
        fail(path, "The 3x3 rotation block is a reflection (det <= 0), not a rotation.",
             "Check the file's axis convention (a flipped axis) and that it is of this format.", line=line, item=item)
    if err > ROTATION_TOLERANCE:
        fail(path, f"The 3x3 rotation block is not a rotation (|R^T R - I| = {err:.3g} > {ROTATION_TOLERANCE:g}: "
                   "scale or shear).",
             "Camera poses must be rigid (rotation plus translation, no scale); check the file's layout "
             "(c2w vs w2c, row vs column major).", line=line, item=item)
    return orthonormalize(R[None], what="rotation")[0]


def natural_key(name: str):
    """Sort key that orders ``frame_2`` before ``frame_10`` (digit runs compare as numbers).

    For zero-padded names it is the same order as a plain string sort.
    """
    return [(0, int(part), part) if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def fmt(x: float) -> str:
    """Shortest decimal text that reads back as exactly the same float64 (``repr``), ``-0`` as ``0``."""
    x = float(x)
    if x == 0.0:
        return "0"
    text = repr(x)
    return text[:-2] if text.endswith(".0") else text


def check_no_skew(K: torch.Tensor, fmt_name: str) -> None:
    """Formats with fx, fy, cx, cy only cannot hold a skewed ``K``: refuse rather than drop it."""
    skew = K[:, 0, 1].abs()
    if (skew > 1e-9 * K[:, 0, 0].abs()).any():
        i = int((skew > 1e-9 * K[:, 0, 0].abs()).nonzero()[0])
        raise TrajectoryError(f"Frame {i} has a skewed intrinsic matrix (K[0, 1] = {K[i, 0, 1].item():g}); "
                              f"the {fmt_name} format has no skew field.",
                              "Save it as lavr_trajectory (.lavr.json), which keeps the full K.")
    if (K[:, 1, 0].abs() > 0).any() or (K[:, 2, :2].abs() > 0).any() or (K[:, 2, 2] != 1).any():
        raise TrajectoryError(f"An intrinsic matrix is not of the form [[fx, s, cx], [0, fy, cy], [0, 0, 1]]; "
                              f"the {fmt_name} format cannot hold it.",
                              "Normalise K so that its last row is [0, 0, 1] before saving.")


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``, with errors that say which file is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise TrajectoryError(f"{path}: no such {what} file.",
                              "Check the path; relative paths are resolved from ComfyUI's working folder.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TrajectoryError(f"{path}: byte {e.start} is not UTF-8 text, so this is not a {what} file.",
                              "Pass the text file itself (binary files such as COLMAP .bin need converting).") from None
