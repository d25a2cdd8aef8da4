"""The CUT3R network (``ARCroco3DStereo`` in the official code), written for frame-by-frame use.

Per frame ``i`` (see ``../shared/reference/cut3r/README.md`` for the full account):

1. **Encode** the image (``[B, 3, H, W]`` in [-1, 1], sides multiples of 16) into patch tokens
   ``[B, N, E]`` with a RoPE ViT; a separate small ViT encodes 6-channel ray maps.
2. **Pose token**: the learned ``pose_token`` for the first frame, afterwards read from the pose
   memory with the mean encoder token as query. It sits at RoPE position ``(-1, -1)``.
3. **Decode**: the state tokens ``[B, S, D]`` and the image tokens ``[B, 1+N, D]`` update each
   other through ``dec_depth`` coupled layers (state block: self-attention, cross-attention to the
   image; image block: self-attention, cross-attention to the state; both from the previous
   layer's outputs). The normalised final state is the new state.
4. **Heads** read the encoder tokens, decoder layers ``D/2`` and ``3D/4`` and the final layer.
5. The pose memory is written with ``[mean encoder token, final pose token]``.

:class:`Cut3rState` is everything carried from frame to frame; :meth:`Cut3rModel.step` advances it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .blocks import DecoderBlock, EncoderBlock, PatchEmbed, layer_norm
from .config import Cut3rConfig
from .heads import build_head
from .memory import PoseMemory
from .rope import RopePositions


@dataclass
class Cut3rState:
    """The recurrent state between frames (all on the model's device).

    ``tokens``: ``[B, S, D]`` state tokens (S = ``state_size``, 768 x 768 in the released models);
    ``positions``: ``[B, S, 2]`` their RoPE positions (or None); ``mem``: ``[B, M, 2D]`` pose memory;
    ``init_tokens`` / ``init_mem``: the starting values (a ``reset`` frame goes back to them);
    ``frames_seen``: number of frames that went through :meth:`Cut3rModel.step` (0: the next frame is
    the first and uses the learned pose token).
    """

    tokens: torch.Tensor
    positions: torch.Tensor | None
    mem: torch.Tensor
    init_tokens: torch.Tensor
    init_mem: torch.Tensor
    frames_seen: int = 0
    _rope: RopePositions | None = field(default=None, repr=False, compare=False)

    def rope(self, base: float) -> RopePositions | None:
        """RoPE tables of the state positions, built once and shared by every later frame."""
        if self.positions is None:
            return None
        if self._rope is None or self._rope.positions is not self.positions or self._rope.base != base:
            self._rope = RopePositions(self.positions, base)
        return self._rope

    def detach_to(self, device=None) -> "Cut3rState":
        """A copy with every tensor moved to ``device`` (e.g. ``"cpu"`` to park it)."""
        def mv(t):
            return None if t is None else t.detach().to(device)
        return replace(self, tokens=mv(self.tokens), positions=mv(self.positions), mem=mv(self.mem),
                       init_tokens=mv(self.init_tokens), init_mem=mv(self.init_mem), _rope=None)


@dataclass
class Cut3rStep:
    """Result of one frame: ``outputs`` (head dict, see ``heads``), the new state, and the frame's
    final pose token ``[B, 1, D]`` (normalised decoder output)."""

    outputs: dict[str, torch.Tensor]
    state: Cut3rState
    pose_token: torch.Tensor


def state_positions(cfg: Cut3rConfig, batch: int, device=None) -> torch.Tensor:
    """RoPE positions ``[B, S, 2]`` of the state tokens: ``(i, i)`` ('1d'), or row-major on a grid
    ``int(sqrt(S))`` wide, bumped to the next even width ('2d'; 768 tokens -> 28 wide)."""
    s = cfg.state_size
    idx = torch.arange(s, device=device)
    if cfg.state_pe == "1d":
        pos = torch.stack((idx, idx), -1)
    else:
        w = int(s ** 0.5)
        w = w + 1 if w % 2 == 1 else w
        pos = torch.stack((idx // w, idx % w), -1)
    return pos[None].expand(batch, -1, -1)


class Cut3rModel(nn.Module):
    """CUT3R with the official parameter names (state dicts of released checkpoints load as they are)."""

    def __init__(self, cfg: Cut3rConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        e, d, p = cfg.enc_embed_dim, cfg.dec_embed_dim, cfg.patch_size
        # --- encoders
        self.patch_embed = PatchEmbed(3, e, p)
        self.patch_embed_ray_map = PatchEmbed(6, e, p)
        # the official image encoder rounds q/k to float16 around RoPE; the ray-map encoder does not
        self.enc_blocks = nn.ModuleList([EncoderBlock(e, cfg.enc_num_heads, cfg.mlp_ratio, rope_in_half=True)
                                         for _ in range(cfg.enc_depth)])
        self.enc_norm = layer_norm(e)
        self.enc_blocks_ray_map = nn.ModuleList([EncoderBlock(e, cfg.ray_enc_num_heads, 4.0)
                                                 for _ in range(cfg.ray_enc_depth)])
        self.enc_norm_ray_map = layer_norm(e)
        self.masked_img_token = nn.Parameter(torch.zeros(1, e))
        self.masked_ray_map_token = nn.Parameter(torch.zeros(1, e))
        # --- image decoder
        self.decoder_embed = nn.Linear(e, d)
        self.dec_blocks = nn.ModuleList([DecoderBlock(d, cfg.dec_num_heads, cfg.mlp_ratio, cfg.norm_im2_in_dec)
                                         for _ in range(cfg.dec_depth)])
        self.dec_norm = layer_norm(d)
        # --- state
        self.register_tokens = nn.Embedding(cfg.state_size, e)
        self.decoder_embed_state = nn.Linear(e, d)
        self.dec_blocks_state = nn.ModuleList([DecoderBlock(d, cfg.state_dec_num_heads, cfg.mlp_ratio,
                                                            cfg.norm_im2_in_dec) for _ in range(cfg.dec_depth)])
        self.dec_norm_state = layer_norm(d)
        # --- pose
        self.pose_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pose_retriever = PoseMemory(cfg.local_mem_size, e, d, cfg.dec_num_heads, depth=2, mlp_ratio=4.0)
        # --- heads
        self.downstream_head = build_head(cfg)

    # ------------------------------------------------------------------ helpers
    @property
    def rope_base(self) -> float:
        return self.cfg.rope_base

    @property
    def device(self) -> torch.device:
        return self.pose_token.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pose_token.dtype

    def _head_dtype(self) -> torch.dtype:
        return next(self.downstream_head.parameters()).dtype

    def set_dtype(self, dtype: torch.dtype, head_dtype: torch.dtype = torch.float32) -> "Cut3rModel":
        """Run the trunk in ``dtype`` (e.g. bfloat16) while the heads stay in ``head_dtype``.

        Close to the official mixed-precision inference, which switches autocast off for the heads
        (autocast would also keep LayerNorms in float32; here the whole trunk runs in ``dtype``).
        """
        self.to(dtype)
        self.downstream_head.to(head_dtype)
        return self

    # ------------------------------------------------------------------ encoders
    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, RopePositions]:
        """``[B, 3, H, W]`` in [-1, 1] -> tokens ``[B, N, E]`` and their positions."""
        x, pos = self.patch_embed(images.to(self.dtype))
        rp = RopePositions(pos, self.rope_base)
        for blk in self.enc_blocks:
            x = blk(x, rp)
        return self.enc_norm(x), rp

    def encode_ray_maps(self, ray_maps: torch.Tensor) -> tuple[torch.Tensor, RopePositions]:
        """``[B, 6, H, W]`` ray maps (origin xyz, direction xyz per pixel) -> tokens and positions."""
        x, pos = self.patch_embed_ray_map(ray_maps.to(self.dtype))
        rp = RopePositions(pos, self.rope_base)
        for blk in self.enc_blocks_ray_map:
            x = blk(x, rp)
        return self.enc_norm_ray_map(x), rp

    def encode_frame(self, image: torch.Tensor | None = None, ray_map: torch.Tensor | None = None, *,
                     sequence_has_ray_maps: bool = False) -> tuple[torch.Tensor, RopePositions]:
        """Tokens of one frame given its image, its ray map, or both (summed, as in training).

        As the official model encodes a sequence: a frame with only a ray map gets the learned
        ``masked_img_token`` added; a frame with only an image gets ``masked_ray_map_token`` added
        when the sequence holds ray-map frames too (``sequence_has_ray_maps``), otherwise nothing.
        """
        if image is None and ray_map is None:
            raise ValueError("a frame needs an image or a ray map")
        if image is not None:
            feat, pos = self.encode_images(image)
            if ray_map is not None:
                feat = feat + self.encode_ray_maps(ray_map)[0]
            elif sequence_has_ray_maps:
                feat = feat + self.masked_ray_map_token.to(feat.dtype)
            return feat, pos
        feat, pos = self.encode_ray_maps(ray_map)
        return feat + self.masked_img_token.to(feat.dtype), pos

    # ------------------------------------------------------------------ state
    def init_state(self, batch: int = 1) -> Cut3rState:
        """The starting state: ``register_tokens`` through ``decoder_embed_state``, and the learned memory."""
        dev = self.device
        tokens = self.decoder_embed_state(self.register_tokens.weight)[None].expand(batch, -1, -1)
        mem = self.pose_retriever.initial(batch)
        return Cut3rState(tokens=tokens, positions=state_positions(self.cfg, batch, dev), mem=mem,
                          init_tokens=tokens, init_mem=mem, frames_seen=0)

    # ------------------------------------------------------------------ one frame
    def _decode(self, state_tokens, state_pos: RopePositions | None, img_tokens, img_pos: RopePositions):
        """Coupled decoder. Returns the new (normalised) state and the image tokens of every layer."""
        f_state, f_img = state_tokens, img_tokens
        layers = []
        n = len(self.dec_blocks)
        for i, (blk_state, blk_img) in enumerate(zip(self.dec_blocks_state, self.dec_blocks)):
            new_state = blk_state(f_state, f_img, state_pos, img_pos)
            new_img = blk_img(f_img, f_state, img_pos, state_pos)
            f_state, f_img = new_state, new_img
            layers.append(self.dec_norm(f_img) if i == n - 1 else f_img)
        return self.dec_norm_state(f_state), layers

    def step(self, state: Cut3rState, image: torch.Tensor | None = None, ray_map: torch.Tensor | None = None, *,
             image_size: tuple[int, int] | None = None, update: bool | torch.Tensor | None = None,
             reset: bool | torch.Tensor = False, encoded: tuple[torch.Tensor, RopePositions] | None = None,
             sequence_has_ray_maps: bool = False) -> Cut3rStep:
        """Process one frame and return its outputs and the next state.

        ``image`` ``[B, 3, H, W]`` in [-1, 1] and/or ``ray_map`` ``[B, 6, H, W]`` (or ``encoded``: the
        output of :meth:`encode_frame`, with ``image_size``). ``update=False`` keeps the state (the
        frame is only read; default: update when the frame has an image, as the official demo does),
        ``reset=True`` returns to the initial state after the frame; both may be per-sample bool
        tensors ``[B]``. ``sequence_has_ray_maps``: see :meth:`encode_frame`.
        """
        if update is None:
            update = image is not None or encoded is not None
        if encoded is None:
            src = image if image is not None else ray_map
            image_size = tuple(src.shape[-2:])
            feat, pos = self.encode_frame(image, ray_map, sequence_has_ray_maps=sequence_has_ray_maps)
        else:
            feat, pos = encoded
            if image_size is None:
                raise ValueError("image_size is needed with pre-encoded tokens")
        summary = feat.mean(dim=1, keepdim=True)
        if state.frames_seen == 0:
            pose_in = self.pose_token.expand(feat.shape[0], -1, -1)
        else:
            pose_in = self.pose_retriever.read(summary, state.mem)
        new_state, layers = self._decode_frame(state, feat, pos, pose_in)
        pose_out = layers[-1][:, :1]
        new_mem = self.pose_retriever.write(state.mem, summary, pose_out)
        outputs = self._run_heads(feat, pos, layers, image_size)

        tokens, mem = _select(update, new_state, state.tokens), _select(update, new_mem, state.mem)
        tokens, mem = _select(reset, state.init_tokens, tokens), _select(reset, state.init_mem, mem)
        nxt = replace(state, tokens=tokens, mem=mem, frames_seen=state.frames_seen + 1)
        return Cut3rStep(outputs=outputs, state=nxt, pose_token=pose_out)

    def query_ray_map(self, state: Cut3rState, ray_map: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predict what a camera given by its ray map ``[B, 6, H, W]`` sees, without changing the state.

        Follows the official ``inference_step``: ray-map tokens only, pose token read from memory.
        """
        feat, pos = self.encode_ray_maps(ray_map)
        pose_in = self.pose_retriever.read(feat.mean(dim=1, keepdim=True), state.mem)
        _, layers = self._decode_frame(state, feat, pos, pose_in)
        return self._run_heads(feat, pos, layers, tuple(ray_map.shape[-2:]))

    def _decode_frame(self, state: Cut3rState, feat: torch.Tensor, pos: RopePositions, pose_in: torch.Tensor):
        """Pose token (at RoPE position (-1, -1)) + embedded frame tokens through the coupled decoder."""
        img_pos = RopePositions(torch.cat((torch.full_like(pos.positions[:, :1], -1), pos.positions), 1),
                                self.rope_base)
        tokens_in = torch.cat((pose_in.to(feat.dtype), self.decoder_embed(feat)), dim=1)
        return self._decode(state.tokens, state.rope(self.rope_base), tokens_in, img_pos)

    def _run_heads(self, feat: torch.Tensor, pos: RopePositions, layers: list[torch.Tensor],
                   image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Heads on [encoder tokens, layers D/2 and 3D/4 without the pose token, final layer with it]."""
        _, a, b, last = self.cfg.head_hooks
        hd = self._head_dtype()
        head_in = [feat.to(hd), layers[a - 1][:, 1:].to(hd), layers[b - 1][:, 1:].to(hd), layers[last - 1].to(hd)]
        return self.downstream_head(head_in, image_size, pos)

    # ------------------------------------------------------------------ whole sequence
    def forward(self, images: list[torch.Tensor] | torch.Tensor) -> tuple[list[dict], list[Cut3rState]]:
        """All frames at once (like the official ``model(views)`` for image-only views).

        ``images``: a list of ``[B, 3, H, W]`` tensors, or ``[S, B, 3, H, W]``. Returns the per-frame
        head outputs and the states (initial state first, then after each frame). Prefer
        :func:`lavr_core.cut3r.streaming.stream` for videos: it keeps memory flat.
        """
        frames = list(images)
        state = self.init_state(frames[0].shape[0])
        outs, states = [], [state]
        for img in frames:
            res = self.step(state, img)
            state = res.state
            outs.append(res.outputs)
            states.append(state)
        return outs, states


def _select(mask: bool | torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` where ``mask`` else ``b`` (``mask``: a bool or a per-sample ``[B]`` bool tensor)."""
    if isinstance(mask, bool):
        return a if mask else b
    m = mask.to(device=a.device, dtype=torch.bool).view(-1, *([1] * (a.dim() - 1)))
    return torch.where(m, a, b)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

