"""ComfyUI nodes of the LaVR pack: thin wrappers that validate inputs and call ``lavr_core``."""

from __future__ import annotations

from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

from ._common import register_model_folders


def all_nodes() -> list[type[io.ComfyNode]]:
    """Every node of the pack: the ``NODES`` list of each public module in this package, in file order.

    Discovery keeps the registry from being an edit hotspot; a module that fails to import fails the
    whole pack loudly (ComfyUI prints the traceback) rather than silently dropping its nodes.
    """
    import importlib
    import pkgutil

    found: list[type[io.ComfyNode]] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found += list(getattr(module, "NODES", ()))
    ids = [n.define_schema().node_id for n in found]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise RuntimeError(f"LaVR nodes registered twice: {dup}")
    return found


class LavrExtension(ComfyExtension):
    @override
    async def on_load(self) -> None:
        register_model_folders()

    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        register_model_folders()  # on_load is not called by every ComfyUI version
        return all_nodes()


async def comfy_entrypoint() -> LavrExtension:
    return LavrExtension()
