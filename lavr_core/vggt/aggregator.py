"""The VGGT aggregator: alternating frame-wise and global attention over all frames' tokens.

Per frame the sequence is ``[camera token, register tokens, patch tokens]``. The first frame gets
its own learned camera and register tokens (index 0 of ``camera_token`` / ``register_token``);
every other frame shares index 1, which is how the model knows which frame is the reference.

Layer ``i`` is one frame block (attention inside each frame, tokens ``[B*S, P, C]``) followed by one
global block (attention across all frames of a sequence, ``[B, S*P, C]``). Its output is the frame
block's and the global block's outputs concatenated on channels: ``[B, S, P, 2C]``.

Extension points (for the 4D model, which adds temporal attention after each frame and global block
and swaps camera tokens): ``forward(..., hooks=[...])`` calls every hook after every block with the
tokens as ``[B, S, P, C]`` and carries on with what the hook returns; ``embed`` and ``run_block``
expose the two halves of the loop for code that needs to drive it itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from .config import AggregatorConfig, resolve_dino
from .dino import DinoV2, PatchEmbed
from .layers import Block
from .rope import RoPE2D, patch_positions

#: ImageNet statistics; the model normalises its [0, 1] input with them itself.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TokenLayout:
    """Shape facts a hook needs to reshape tokens: batch ``B``, frames ``S``, tokens per frame ``P``
    (``patch_start_idx`` special tokens, then a ``grid_h x grid_w`` patch grid), width ``C``."""

    B: int
    S: int
    P: int
    C: int
    patch_start_idx: int
    grid_h: int
    grid_w: int


#: ``hook(kind, layer, tokens, layout) -> tokens``; ``kind`` is "frame" or "global", ``layer`` the
#: block index (0-based) within that kind, tokens ``[B, S, P, C]``. Return the tokens to continue
#: with (the same object to change nothing). What a hook returns is also what the layer output
#: records, so a zero-initialised extra layer leaves every output unchanged.
LayerHook = Callable[[str, int, Tensor, TokenLayout], Tensor]


@dataclass
class AggregatorState:
    """Tokens between blocks: ``tokens`` ``[B, S, P, C]`` and RoPE positions ``[B*S, P, 2]``."""

    tokens: Tensor
    pos: Tensor | None
    layout: TokenLayout


def first_and_rest(param: Tensor, B: int, S: int) -> Tensor:
    """``[1, 2, X, C]`` -> ``[B, S, X, C]``: index 0 for frame 0, index 1 for frames 1..S-1."""
    first = param[:, :1].expand(B, 1, *param.shape[2:])
    rest = param[:, 1:2].expand(B, S - 1, *param.shape[2:])
    return torch.cat([first, rest], dim=1)


class Aggregator(nn.Module):
    def __init__(self, cfg: AggregatorConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.patch_embed == "conv":
            self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim)
        else:
            dim, depth, heads = resolve_dino(cfg)
            d = cfg.dino
            self.patch_embed = DinoV2(cfg.img_size, cfg.patch_size, dim, depth, heads, mlp_ratio=d.mlp_ratio,
                                      num_register_tokens=cfg.num_register_tokens, init_values=d.init_values,
                                      interpolate_antialias=d.interpolate_antialias,
                                      interpolate_offset=d.interpolate_offset)
        self.rope = RoPE2D(cfg.rope_freq) if cfg.rope_freq > 0 else None
        if sorted(cfg.aa_order) != ["frame", "global"]:
            raise CheckpointError(f"Aggregator attention order {list(cfg.aa_order)} is not supported.",
                                  "Use one 'frame' and one 'global' step per layer, in either order.")
        if cfg.depth % cfg.aa_block_size:
            raise CheckpointError(f"Aggregator depth {cfg.depth} is not a multiple of aa_block_size "
                                  f"{cfg.aa_block_size}.", "Fix the configuration.")

        def make_block() -> Block:
            return Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, proj_bias=cfg.proj_bias,
                         ffn_bias=cfg.ffn_bias, init_values=cfg.init_values, qk_norm=cfg.qk_norm, rope=self.rope)

        self.frame_blocks = nn.ModuleList(make_block() for _ in range(cfg.depth))
        self.global_blocks = nn.ModuleList(make_block() for _ in range(cfg.depth))
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, cfg.embed_dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, cfg.num_register_tokens, cfg.embed_dim))
        self.patch_start_idx = cfg.patch_start_idx
        self.reset_buffers()

    def reset_buffers(self, device=None) -> None:
        """(Re)create the non-persistent normalisation constants, e.g. after building on "meta"."""
        if device is None:
            device = self.camera_token.device
            device = "cpu" if device.type == "meta" else device
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN, device=device).view(1, 1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD, device=device).view(1, 1, 3, 1, 1),
                             persistent=False)

    @property
    def depth(self) -> int:
        return self.cfg.depth

    # ------------------------------------------------------------------------------------ stages
    def embed(self, images: Tensor) -> AggregatorState:
        """Images ``[B, S, 3, H, W]`` in [0, 1] -> the token state before the first block."""
        B, S, _, H, W = images.shape
        p = self.cfg.patch_size
        x = ((images - self._mean.to(images.dtype)) / self._std.to(images.dtype)).reshape(B * S, 3, H, W)
        patches = self.patch_embed(x)  # [B*S, N, C]
        C = patches.shape[-1]
        special = torch.cat([first_and_rest(self.camera_token, B, S), first_and_rest(self.register_token, B, S)],
                            dim=2).reshape(B * S, self.patch_start_idx, C).to(patches.dtype)
        tokens = torch.cat([special, patches], dim=1)
        P = tokens.shape[1]
        pos = None
        if self.rope is not None:
            pos = patch_positions(B * S, H // p, W // p, self.patch_start_idx, images.device)
        layout = TokenLayout(B, S, P, C, self.patch_start_idx, H // p, W // p)
        return AggregatorState(tokens.view(B, S, P, C), pos, layout)

    def run_block(self, kind: str, index: int, state: AggregatorState) -> Tensor:
        """Run frame or global block ``index`` on ``state.tokens``; returns ``[B, S, P, C]``."""
        L = state.layout
        if kind == "frame":
            out = self.frame_blocks[index](state.tokens.reshape(L.B * L.S, L.P, L.C), pos=state.pos)
        else:
            pos = None if state.pos is None else state.pos.reshape(L.B, L.S * L.P, 2)
            out = self.global_blocks[index](state.tokens.reshape(L.B, L.S * L.P, L.C), pos=pos)
        return out.view(L.B, L.S, L.P, L.C)

    def forward(self, images: Tensor, keep_layers: Iterable[int] | None = None,
                hooks: Sequence[LayerHook] = ()) -> tuple[list[Tensor | None], int]:
        """Run the aggregator.

        Args:
            images: ``[B, S, 3, H, W]`` RGB in [0, 1]; H and W multiples of the patch size.
            keep_layers: layer indices whose outputs to keep (``None``: all). The others come back
                as ``None``, which saves ``B*S*P*2C`` floats each (the heads need only a few).
            hooks: called after every block (see ``LayerHook``).

        Returns:
            ``(layers, patch_start_idx)``: ``depth`` entries ``[B, S, P, 2C]`` (or ``None``), where
            ``P = patch_start_idx + (H/p)*(W/p)``; token 0 is the camera token.
        """
        keep = None if keep_layers is None else {i % self.depth for i in keep_layers}
        state = self.embed(images)
        outputs: list[Tensor | None] = []
        counters = {"frame": 0, "global": 0}
        for _ in range(self.depth // self.cfg.aa_block_size):
            produced: dict[str, list[Tensor]] = {"frame": [], "global": []}
            for kind in self.cfg.aa_order:
                for _ in range(self.cfg.aa_block_size):
                    idx = counters[kind]
                    tokens = self.run_block(kind, idx, state)
                    for hook in hooks:
                        tokens = hook(kind, idx, tokens, state.layout)
                    state.tokens = tokens
                    produced[kind].append(tokens)
                    counters[kind] += 1
            for f, g in zip(produced["frame"], produced["global"]):
                layer = len(outputs)
                outputs.append(torch.cat([f, g], dim=-1) if keep is None or layer in keep else None)
        return outputs, self.patch_start_idx
