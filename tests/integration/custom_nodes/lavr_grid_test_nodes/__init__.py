"""TEST-ONLY ComfyUI node for the LaVR integration tests (linked beside the pack by the test fixture;
never shipped).

``LaVRTestGridLayout`` outputs a ``LAVR_GRID_LAYOUT`` (``lavr_core.grid.GridLayout``) of any size, so
VGGT Gaussian Decode's grid handling (4D output, layout/frame-count mismatch) can be tested without
running the Fused 4D Sampler that normally produces the layout.

``LaVRTestBrokenGaussians`` outputs ``LAVR_GAUSSIANS`` that a misbehaving upstream node could send
(NaN written into a valid set in place, or an empty set built around the constructor's checks), so
Save Splat's refusal of them can be tested through the real graph.
"""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

NODE_ID = "LaVRTestGridLayout"
BROKEN_ID = "LaVRTestBrokenGaussians"


class TestGridLayout(io.ComfyNode):
    SEARCH_ALIASES = ("test grid layout",)

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=NODE_ID, display_name="Grid Layout (LaVR tests only)", category="LaVR/Testing",
            description="TEST ONLY: a V x T grid layout, standing in for the Fused 4D Sampler's layout output.",
            inputs=[
                io.Int.Input("views", default=2, min=1, max=64, tooltip="Number of views (grid rows)."),
                io.Int.Input("times", default=4, min=1, max=512, tooltip="Number of timesteps (grid columns)."),
                io.Float.Input("fps", default=8.0, min=0.1, max=240.0, tooltip="Frame rate of each row."),
            ],
            outputs=[io.Custom("LAVR_GRID_LAYOUT").Output(display_name="grid_layout", tooltip="The layout.")],
        )

    @classmethod
    def GET_NODE_INFO_V1(cls):  # noqa: N802 (ComfyUI's name): aliases for 0.3.75's /object_info
        info = super().GET_NODE_INFO_V1()
        info.setdefault("search_aliases", list(cls.SEARCH_ALIASES))
        return info

    @classmethod
    def execute(cls, views, times, fps) -> io.NodeOutput:
        from lavr_core.grid import GridLayout

        return io.NodeOutput(GridLayout(views=int(views), times=int(times), fps=float(fps),
                                        meta={"source": "lavr_grid_test_nodes"}))


class TestBrokenGaussians(io.ComfyNode):
    SEARCH_ALIASES = ("test broken gaussians",)

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=BROKEN_ID, display_name="Broken Gaussians (LaVR tests only)", category="LaVR/Testing",
            description="TEST ONLY: Gaussians corrupted after construction (NaN or empty), as a buggy node might send.",
            inputs=[io.Combo.Input("kind", options=["nan", "empty"], tooltip="How the set is broken.")],
            outputs=[io.Custom("LAVR_GAUSSIANS").Output(display_name="gaussians", tooltip="The broken set.")],
        )

    @classmethod
    def GET_NODE_INFO_V1(cls):  # noqa: N802
        info = super().GET_NODE_INFO_V1()
        info.setdefault("search_aliases", list(cls.SEARCH_ALIASES))
        return info

    @classmethod
    def fingerprint_inputs(cls, kind):
        return float("nan")  # never cached: every run builds a fresh broken set

    @classmethod
    def execute(cls, kind) -> io.NodeOutput:
        import torch

        from lavr_core.gaussians.types import Gaussians

        n = 0 if kind == "empty" else 4
        fields = dict(means=torch.zeros(n, 3), scales=torch.full((n, 3), 0.1), rotations=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                      opacities=torch.full((n,), 0.5), sh=torch.zeros(n, 1, 3), meta={})
        if kind == "empty":
            g = object.__new__(Gaussians)
            for k, v in fields.items():
                object.__setattr__(g, k, v)
        else:
            g = Gaussians(**fields)
            g.means[1, 2] = float("nan")
        return io.NodeOutput(g)


class GridTestExtension(ComfyExtension):
    async def get_node_list(self):
        return [TestGridLayout, TestBrokenGaussians]


async def comfy_entrypoint() -> GridTestExtension:
    return GridTestExtension()
