"""``python -m lavr_core.splat convert IN OUT``: convert splat files between .ply, .splat and .spz.

Formats follow the file extensions. Prints what was written and what the target format drops, and
exits with status 2 and a one-line explanation (no traceback) for bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import LavrError
from .io import format_notes, read_gaussians, write_gaussians


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lavr_core.splat",
                                description="Gaussian splat file tools (ComfyUI-LaVR).")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="convert between .ply, .splat and .spz (by extension)")
    c.add_argument("input", type=Path)
    c.add_argument("output", type=Path)
    c.add_argument("--spz-version", type=int, default=2, choices=(2, 3),
                   help=".spz version to write: 2 (default, read by every tool) or 3 (finer rotations)")
    c.add_argument("--spz-raw-axes", action="store_true",
                   help="read/write .spz positions as stored, without the spec's RUB <-> RDF axis conversion")
    c.add_argument("--no-sort", action="store_true", help="keep the input order when writing .splat")
    return p


def convert(src: Path, dst: Path, spz_version: int = 2, spz_raw_axes: bool = False, sort: bool = True) -> list[str]:
    """Convert ``src`` to ``dst``; returns the report lines."""
    read_opts = {"convert_axes": not spz_raw_axes} if src.suffix.lower() == ".spz" else {}
    g = read_gaussians(src, **read_opts)
    ext = dst.suffix.lower()
    opts = {"version": spz_version, "convert_axes": not spz_raw_axes} if ext == ".spz" else (
        {"sort": sort} if ext == ".splat" else {})
    notes = format_notes(g, dst)
    write_gaussians(g, dst, **opts)
    kept = 0 if ext == ".splat" else g.sh_degree
    return [f"wrote {dst} ({dst.stat().st_size / 1e6:.2f} MB): {g.num} Gaussians, SH degree {kept}"] + \
        [f"note: {n}" for n in notes]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "convert":
            for line in convert(args.input, args.output, args.spz_version, args.spz_raw_axes, not args.no_sort):
                print(line)
    except LavrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
