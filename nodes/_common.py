"""Shared plumbing of the LaVR nodes: custom types, schema helper, progress/interrupt, model folders.

``comfy.*`` and ``folder_paths`` are imported inside functions so that importing this module (for
example in a linter or a docs build) needs only ``comfy_api``.
"""

from __future__ import annotations

import os
from dataclasses import fields

from comfy_api.latest import io

from lavr_core.conventions import POINT_CLOUD_TYPE, TRAJECTORY_TYPE

CATEGORY = "LaVR"

Trajectory = io.Custom(TRAJECTORY_TYPE)
PointCloudIO = io.Custom(POINT_CLOUD_TYPE)

#: LaVR's own model folders (under ComfyUI/models/). Wan weights use ComfyUI's usual folders.
MODEL_FOLDERS = {
    "cut3r": "CUT3R checkpoints (cut3r_512_dpt_4_64.pth, cut3r_224_linear_4.pth)",
    "vggt": "VGGT checkpoints (facebook/VGGT-1B model.safetensors or model.pt)",
    "lavr": "LaVR adapter, Gaussian-head and fused-attention weights trained with this pack",
    "gen3r": "Gen3R weights (JaceyH919/Gen3R: the DiT and the geometry adapter)",
}
MODEL_EXTENSIONS = {".pth", ".pt", ".ckpt", ".safetensors", ".bin"}

_SCHEMA_FIELDS = None


def register_model_folders() -> None:
    """Add LaVR's ``MODEL_FOLDERS`` (``models/cut3r``, ``models/vggt``, ...) to ComfyUI's model folders.

    Idempotent, and it keeps paths users added through extra_model_paths.yaml.
    """
    import folder_paths

    for name in MODEL_FOLDERS:
        default = os.path.join(folder_paths.models_dir, name)
        if name in folder_paths.folder_names_and_paths:
            paths, exts = folder_paths.folder_names_and_paths[name]
            if default not in paths:
                paths.append(default)
            folder_paths.folder_names_and_paths[name] = (paths, set(exts) | MODEL_EXTENSIONS)
        else:
            folder_paths.folder_names_and_paths[name] = ([default], set(MODEL_EXTENSIONS))


def schema(*, node_id: str, display_name: str, category: str, description: str, inputs, outputs,
           search_aliases: tuple[str, ...] = (), **kw) -> io.Schema:
    """``io.Schema`` with LaVR's category root, and ``search_aliases`` where the installed ComfyUI knows them
    (newer than 0.3.75; older ones get them through ``LavrNode.GET_NODE_INFO_V1``)."""
    global _SCHEMA_FIELDS
    if _SCHEMA_FIELDS is None:
        _SCHEMA_FIELDS = {f.name for f in fields(io.Schema)}
    if "search_aliases" in _SCHEMA_FIELDS:
        kw["search_aliases"] = list(search_aliases)
    missing = [i.id for i in inputs if not getattr(i, "tooltip", None)]
    if missing:  # a tooltip on every input is a project rule; fail at import, not in a user's graph
        raise AssertionError(f"{node_id}: inputs without tooltip: {missing}")
    return io.Schema(node_id=node_id, display_name=display_name, category=f"{CATEGORY}/{category}",
                     description=description, inputs=list(inputs), outputs=list(outputs), **kw)


class LavrNode(io.ComfyNode):
    """Base of every LaVR node. ``SEARCH_ALIASES`` reach ``/object_info`` on every ComfyUI version."""

    SEARCH_ALIASES: tuple[str, ...] = ()

    @classmethod
    def GET_NODE_INFO_V1(cls):  # noqa: N802 (ComfyUI's name)
        info = super().GET_NODE_INFO_V1()
        if cls.SEARCH_ALIASES and "search_aliases" not in info:
            info["search_aliases"] = list(cls.SEARCH_ALIASES)
        return info


class Progress:
    """ComfyUI progress bar plus interrupt check; ``step()`` raises if the user pressed Cancel."""

    def __init__(self, total: int, node_id: str | None = None):
        import comfy.utils

        self.total = max(int(total), 1)
        self.bar = comfy.utils.ProgressBar(self.total, node_id=node_id)

    def step(self, n: int = 1, preview=None) -> None:
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()
        self.bar.update_absolute(min(self.bar.current + n, self.total), self.total, preview)

    def check(self) -> None:
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()


def output_dir() -> str:
    import folder_paths

    return folder_paths.get_output_directory()


def input_dir() -> str:
    import folder_paths

    return folder_paths.get_input_directory()


def saved_file_ui(path) -> dict:
    """``{"filename", "subfolder", "type": "output"}`` for a file inside the output folder."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(output_dir()))
    sub, name = os.path.split(rel)
    return {"filename": name, "subfolder": sub.replace(os.sep, "/"), "type": "output"}


def list_input_files(accept) -> list[str]:
    """Paths (relative, '/'-separated) under ComfyUI's input folder for which ``accept(dirpath, name)``
    is true; ``accept(dirpath, None)`` is asked once per folder (a COLMAP model is a folder)."""
    root = input_dir()
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = os.path.relpath(dirpath, root)
        if accept(dirpath, None, filenames):
            found.append(rel.replace(os.sep, "/"))
        found += [os.path.normpath(os.path.join(rel, f)).replace(os.sep, "/")
                  for f in filenames if accept(dirpath, f, filenames)]
    return sorted(found) or [""]


def resolve_input_path(rel: str, what: str) -> str:
    """Absolute path of ``rel`` inside ComfyUI's input folder; refuses anything that leaves it."""
    from lavr_core.errors import InputError

    root = os.path.realpath(input_dir())
    path = os.path.realpath(os.path.join(root, rel or ""))
    if not rel or os.path.commonpath([root, path]) != root:
        raise InputError(f"{what} {rel!r} is not inside ComfyUI's input folder.",
                         f"Copy it into {root} and pick it from the list.")
    if not os.path.exists(path):
        raise InputError(f"{what} {rel!r} does not exist in {root}.", "Refresh the node list (R) and pick again.")
    return path


def input_mtime(rel: str) -> float:
    """Change marker for ``fingerprint_inputs``: a re-saved input file re-runs the node."""
    try:
        return os.path.getmtime(os.path.join(input_dir(), rel or ""))
    except OSError:
        return float("nan")
