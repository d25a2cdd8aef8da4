"""ComfyUI nodes of the LaVR pack: thin wrappers that validate inputs and call ``lavr_core``."""

from __future__ import annotations

from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

from ._common import register_model_folders


def all_nodes() -> list[type[io.ComfyNode]]:
    from . import camera, pointcloud, scene

    return [*camera.NODES, *pointcloud.NODES, *scene.NODES]


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
