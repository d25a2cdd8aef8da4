"""Atomic file writing: a reader never sees a half-written file, a crash never leaves one behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None):
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    Usage: ``with atomic_writer(p, "w", encoding="utf-8") as f: f.write(text)``. On an exception the
    temporary file is removed and ``path`` is untouched.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be read by other tools
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_writer(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_writer(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def safe_output_path(output_dir: str | os.PathLike, prefix: str, ext: str, digits: int = 5) -> Path:
    """A fresh ``<output_dir>/<subdir>/<name>_<NNNNN>.<ext>`` for a user-given ``prefix`` like ``"lavr/orbit"``.

    The prefix may name sub-folders but can never leave ``output_dir``: absolute paths, ``..``,
    drive letters, NUL bytes and symlinks that resolve outside are refused with an ``InputError``.
    The counter continues after the highest existing number, as ComfyUI's own savers do.
    """
    from .errors import InputError

    ext = ext.lstrip(".")
    if not prefix or "\x00" in prefix:
        raise InputError("The filename prefix is empty or contains a NUL byte.", "Give a prefix such as 'lavr/trajectory'.")
    norm = prefix.replace("\\", "/")
    parts = [s for s in norm.split("/") if s not in ("", ".")]
    if norm.startswith("/") or ":" in norm or ".." in parts or not parts:
        raise InputError(f"The filename prefix {prefix!r} points outside ComfyUI's output folder.",
                         "Use a relative prefix such as 'lavr/trajectory' (sub-folders allowed, no '..').")
    root = Path(output_dir).resolve()
    folder = root.joinpath(*parts[:-1])
    name = parts[-1]
    folder_resolved = folder.resolve()
    if folder_resolved != root and root not in folder_resolved.parents:
        raise InputError(f"The filename prefix {prefix!r} resolves outside ComfyUI's output folder (a symlink?).",
                         "Use a prefix whose folders lie inside the output folder.")
    folder.mkdir(parents=True, exist_ok=True)
    highest = 0
    stem = f"{name}_"
    for existing in folder.iterdir():
        n = existing.name
        if n.startswith(stem) and n.endswith(f".{ext}"):
            num = n[len(stem):-len(ext) - 1]
            if num.isdigit():
                highest = max(highest, int(num))
    return folder / f"{name}_{highest + 1:0{digits}d}.{ext}"
