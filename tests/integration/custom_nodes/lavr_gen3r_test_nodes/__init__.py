"""TEST-ONLY ComfyUI node for the Gen3R integration tests (linked beside the pack by the test
fixture; never shipped).

``LaVRTestTinyClipVision`` stands in for ``CLIPVisionLoader`` with ``clip_vision_h.safetensors``
(ViT-H/14, far too large to build here). It returns an object with ComfyUI's ``encode_image``
interface, so the real ``CLIPVisionEncode`` node runs and produces a real ``CLIP_VISION_OUTPUT``
whose ``penultimate_hidden_states`` are ``[B, 257, 1280]`` like ViT-H's: 256 patch features (the
image centre-cropped or squashed to 16 x 16, as ``crop`` says, each RGB pixel through a fixed seeded
3 -> 1280 projection) after one mean token. Deterministic (seed 0; no widgets, like every
stand-in): the same image gives the same features.
"""

from __future__ import annotations

import torch
from comfy_api.latest import ComfyExtension, io

NODE_ID = "LaVRTestTinyClipVision"
WIDTH = 1280
GRID = 16


class TinyClipVision:
    """``encode_image(image [B, H, W, 3], crop)`` -> ``comfy.clip_vision.Output`` (see the module doc)."""

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.randn(3, WIDTH, generator=g) * 0.5

    def encode_image(self, image, crop=True):
        import comfy.clip_vision

        x = image[..., :3].movedim(-1, 1).float()
        if crop:
            s = min(x.shape[2], x.shape[3])
            top, left = (x.shape[2] - s) // 2, (x.shape[3] - s) // 2
            x = x[:, :, top:top + s, left:left + s]
        x = torch.nn.functional.interpolate(x, size=(GRID, GRID), mode="bilinear", antialias=True)
        patches = x.flatten(2).transpose(1, 2) @ self.proj  # [B, 256, 1280]
        tokens = torch.cat([patches.mean(1, keepdim=True), patches], 1)
        out = comfy.clip_vision.Output()
        out["last_hidden_state"] = tokens
        out["penultimate_hidden_states"] = tokens
        out["image_embeds"] = tokens[:, 0]
        out["mm_projected"] = None
        return out


class TinyClipVisionLoader(io.ComfyNode):
    SEARCH_ALIASES = ("test clip vision", "tiny clip vision")

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=NODE_ID, display_name="Tiny CLIP Vision (LaVR tests only)", category="LaVR/Testing",
            description="TEST ONLY: a seeded stand-in for CLIPVisionLoader with clip_vision_h, giving ViT-H-shaped "
                        "features (257 x 1280) through the real CLIPVisionEncode.",
            inputs=[],
            outputs=[io.ClipVision.Output(display_name="CLIP_VISION", tooltip="For CLIPVisionEncode.")],
        )

    @classmethod
    def GET_NODE_INFO_V1(cls):  # noqa: N802 (ComfyUI's name): aliases for 0.3.75's /object_info
        info = super().GET_NODE_INFO_V1()
        info.setdefault("search_aliases", list(cls.SEARCH_ALIASES))
        return info

    @classmethod
    def execute(cls) -> io.NodeOutput:
        return io.NodeOutput(TinyClipVision(0))


class LavrGen3RTestExtension(ComfyExtension):
    async def get_node_list(self):
        return [TinyClipVisionLoader]


async def comfy_entrypoint() -> LavrGen3RTestExtension:
    return LavrGen3RTestExtension()
