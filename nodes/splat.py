"""Gaussian-splat file nodes: save static or 4D Gaussians (.ply / .splat / .spz) and load them back."""

from __future__ import annotations

from pathlib import Path

from comfy_api.latest import io

from lavr_core.conventions import GAUSSIANS_TYPE
from lavr_core.errors import InputError

from ._common import LavrNode, input_mtime, list_input_files, output_dir, resolve_input_path, saved_file_ui, schema

GaussiansIO = io.Custom(GAUSSIANS_TYPE)
SPLAT_FORMATS = ("ply", "splat", "spz")
#: How far into a .json file to look for the sequence-manifest tag when listing input files.
_MANIFEST_SNIFF = 4096


def _checked(gaussians):
    """The Gaussians (or sequence) re-validated: a value another node changed in place (NaN, emptied)
    is refused here, before anything is written."""
    from lavr_core.gaussians.types import GaussianSequence, Gaussians

    def check(g: Gaussians) -> Gaussians:
        return Gaussians(g.means, g.scales, g.rotations, g.opacities, g.sh, dict(g.meta))

    if isinstance(gaussians, Gaussians):
        return check(gaussians)
    if isinstance(gaussians, GaussianSequence):
        return GaussianSequence(tuple(check(g) for g in gaussians.frames), gaussians.times,
                                None if gaussians.static is None else check(gaussians.static), dict(gaussians.meta))
    raise InputError(f"Save Splat needs Gaussians, got {type(gaussians).__name__}.",
                     "Connect the gaussians output of VGGT Gaussian Decode or Load Splat.")


def save_splat(gaussians, fmt: str, filename_prefix: str, out_dir: str | None = None) -> dict:
    """Write ``gaussians`` under ComfyUI's output folder and return the node's ``ui`` dict.

    A static set becomes ``<prefix>_NNNNN.<fmt>``; a sequence becomes ``<prefix>_NNNNN.json`` (the
    manifest) plus ``<prefix>_NNNNN_TTTTT.<fmt>`` per timestep (``lavr_core.gaussians.io_sequence``).
    Every file is written atomically, the manifest last.
    """
    from lavr_core.fileio import safe_output_path
    from lavr_core.gaussians import write_gaussians, write_sequence
    from lavr_core.gaussians.io import format_notes
    from lavr_core.gaussians.types import Gaussians

    if fmt not in SPLAT_FORMATS:  # ComfyUI 0.3.75 does not check V3 combo values
        raise InputError(f"Unsupported splat format {fmt!r}.", f"Use one of {', '.join(SPLAT_FORMATS)}.")
    g = _checked(gaussians)
    root = out_dir or output_dir()
    if isinstance(g, Gaussians):
        path = write_gaussians(g, safe_output_path(root, filename_prefix, fmt))
        entry = {**saved_file_ui(path), "format": fmt, "gaussians": g.num, "manifest": False}
        notes = format_notes(g, path)
        return {"lavr_splat": [entry], "lavr_files": [saved_file_ui(path)],
                "text": [f"{g.num} Gaussians -> {Path(path).name} ({'; '.join(notes)})"]}
    manifest_path = safe_output_path(root, filename_prefix, "json")
    manifest = write_sequence(g, manifest_path.parent, stem=manifest_path.stem, fmt=fmt)
    frames = [manifest.parent / f"{manifest.stem}_{i:05d}.{fmt}" for i in range(len(g))]
    sets = list(g.frames)
    if g.static is not None:
        frames.append(manifest.parent / f"{manifest.stem}_static.{fmt}")
        sets.append(g.static)
    total = sum(s.num for s in sets)
    entries = [{**saved_file_ui(manifest), "format": fmt, "gaussians": total, "manifest": True, "timesteps": len(g)}]
    entries += [{**saved_file_ui(p), "format": fmt, "gaussians": s.num, "manifest": False} for p, s in zip(frames, sets)]
    return {"lavr_splat": entries, "lavr_files": [saved_file_ui(p) for p in [manifest, *frames]],
            "text": [f"{len(g)} timesteps, {total} Gaussians -> {manifest.name} + {len(frames)} .{fmt} files"]}


class SaveSplat(LavrNode):
    SEARCH_ALIASES = ("save gaussians", "export splat", "save ply", "save spz", "3dgs export", "4d gaussians")

    @classmethod
    def define_schema(cls):
        return schema(
            node_id="LaVRSaveSplat", display_name="Save Splat (LaVR)", category="Gaussians",
            description="Write Gaussians into ComfyUI's output folder as .ply (3DGS, lossless), .splat (compact, base "
                        "colour only) or .spz (compressed). A 4D sequence writes one file per timestep plus a JSON "
                        "manifest.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[GaussiansIO.Input("gaussians", tooltip="Static Gaussians or a Gaussian sequence."),
                    io.Combo.Input("format", options=list(SPLAT_FORMATS), default="ply",
                                   tooltip="ply: standard 3DGS file, float32. splat: 32 bytes per Gaussian, no view-"
                                           "dependent colour. spz: Niantic's compressed format (about 10x smaller)."),
                    io.String.Input("filename_prefix", default="lavr/splat",
                                    tooltip="File name prefix inside the output folder; sub-folders allowed, '..' and "
                                            "absolute paths are refused.")],
            outputs=[], is_output_node=True,
        )

    @classmethod
    def execute(cls, gaussians, format, filename_prefix) -> io.NodeOutput:  # noqa: A002 (the input's name)
        return io.NodeOutput(ui=save_splat(gaussians, format, filename_prefix))


def _is_splat_input(dirpath: str, name: str | None, files) -> bool:
    if not name:
        return False
    low = name.lower()
    if low.endswith((".splat", ".spz")):
        return True
    if low.endswith(".ply"):
        return _ply_has_gaussians(Path(dirpath) / name)
    if low.endswith(".json"):
        from lavr_core.gaussians.io_sequence import MANIFEST_FORMAT

        try:
            with open(Path(dirpath) / name, "rb") as f:
                return MANIFEST_FORMAT.encode() in f.read(_MANIFEST_SNIFF)
        except OSError:
            return False
    return False


def _ply_has_gaussians(path: Path) -> bool:
    """A .ply whose header declares 3DGS properties (plain point clouds are left to Load Point Cloud)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_MANIFEST_SNIFF)
    except OSError:
        return False
    end = head.find(b"end_header")
    header = head[:end if end >= 0 else len(head)]
    return b"property" in header and b" scale_0" in header and b" opacity" in header


class LoadSplat(LavrNode):
    SEARCH_ALIASES = ("load gaussians", "import splat", "load ply", "load spz", "3dgs import")

    @classmethod
    def define_schema(cls):
        return schema(
            node_id="LaVRLoadSplat", display_name="Load Splat (LaVR)", category="Gaussians",
            description="Read Gaussians from ComfyUI's input folder: a 3DGS .ply, .splat or .spz file, or the JSON "
                        "manifest of a 4D sequence saved by Save Splat.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[io.Combo.Input("file", options=list_input_files(_is_splat_input),
                                   tooltip="A .ply / .splat / .spz file or a sequence manifest (.json) inside "
                                           "ComfyUI/input/. Put it there and refresh (R).")],
            outputs=[GaussiansIO.Output(display_name="gaussians",
                                        tooltip="Static Gaussians, or a Gaussian sequence for a manifest.")],
        )

    @classmethod
    def fingerprint_inputs(cls, file):
        return input_mtime(file)

    @classmethod
    def execute(cls, file) -> io.NodeOutput:
        from lavr_core.gaussians import read_gaussians, read_sequence

        path = resolve_input_path(file, "Splat file")
        if path.lower().endswith(".json"):
            seq = read_sequence(path)
            n = sum(g.num for g in seq.frames) + (seq.static.num if seq.static is not None else 0)
            return io.NodeOutput(seq, ui={"text": [f"{len(seq)} timesteps, {n} Gaussians from {file}"]})
        g = read_gaussians(path)  # an unsupported extension gets an InputError naming the formats
        return io.NodeOutput(g, ui={"text": [f"{g.num} Gaussians (SH degree {g.sh_degree}) from {file}"]})


NODES = [SaveSplat, LoadSplat]
