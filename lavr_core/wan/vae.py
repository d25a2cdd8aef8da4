"""The Wan2.1 video VAE, with the module names of the official checkpoint (``Wan2.1_VAE.pth``).

A causal 3-D convolutional autoencoder: frames ``[B, C, T, H, W]`` with ``T = 1 + 4k`` become latents
``[B, z_dim, 1 + k, H/8, W/8]`` and back. "Causal" means a latent frame only sees the video frames up
to its own: every 3-D convolution pads the past with zeros and nothing of the future, and frame 0 is
encoded on its own (the first latent frame is an image latent).

Parameter names are the official ones (``encoder.conv1``, ``encoder.downsamples.N.residual.2``,
``decoder.upsamples.N.time_conv``, ``conv1`` / ``conv2`` between them ...), so the official file and
ComfyUI's ``models/vae/wan_2.1_vae.safetensors`` load key for key. Nothing here uses diffusers'
re-implementation (``AutoencoderKLWan``), whose names differ.

The architecture is parameterised (``WanVAEConfig``) so that other models built from it are
instances, e.g. Gen3R's geometry adapter (``lavr_core.gen3r``): other widths, no spatial resampling
inside the stages (``spatial_resample=False``) and 2-D "token stems" that map 10240-channel VGGT
tokens on a 40x40 grid in (``encoder.init_block``) and out (``decoder.out_block``).

Chunking. The official code encodes frames in chunks of 1, 4, 4, ... and decodes one latent frame
at a time, carrying the last frames each causal layer saw from one chunk to the next (a "feature
cache"); memory then scales with the chunk, not the video. ``encode``/``decode`` do the same
(``chunked=True``, the default); ``chunked=False`` runs the whole clip in one pass with the causal
semantics written out, which gives the same numbers (tested) and is useful to check them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError, InputError

#: Per-channel statistics of Wan2.1 VAE latents (official ``WanVAE``): latents handed to the DiT are
#: ``(mu - mean) / std``.
WAN21_LATENTS_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                      0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN21_LATENTS_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                     3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)


@dataclass(frozen=True)
class WanVAEConfig:
    """Shapes of a Wan2.1-style causal video VAE.

    Attributes:
        dim: base width (Wan2.1: 96).
        z_dim: latent channels (16).
        dim_mult: width multipliers of the encoder stages (decoder: reversed).
        num_res_blocks: residual blocks per encoder stage (the decoder has one more per stage).
        attn_scales: spatial scales (1, 1/2, ...) that get an attention block after each residual
            block; empty in every released model (there is always one in the middle).
        temporal_downsample: per stage transition, whether time is halved too (decoder: reversed).
        in_channels / out_channels: channels entering the encoder / leaving the decoder (RGB: 3;
            with token stems: the token width, Gen3R 10240).
        encoder_in_mult: the encoder's first width is ``dim * encoder_in_mult`` (Wan2.1: 1, Gen3R: 4).
        spatial_resample: stage transitions halve (encoder) / double (decoder) height and width;
            ``False`` keeps the size (a stride-1 3x3 convolution in their place, Gen3R).
        token_stems: 2-D stems around the network (Gen3R's geometry adapter): the encoder upsamples
            each frame by ``stem_upscale`` (nearest-exact) and reduces channels by ``stem_reduction``
            (``encoder.init_block``); the decoder resizes each frame to twice ``stem_out_size``,
            zero-pads right/bottom by one and applies a stride-2 3x3 convolution that multiplies the
            channels by ``stem_reduction`` (``decoder.out_block``), i.e. always ``stem_out_size``.
        latents_mean / latents_std: per-channel normalisation of the latent mean.
        clamp_output: clamp decoded values to [-1, 1] (RGB video).
    """

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    in_channels: int = 3
    out_channels: int = 3
    encoder_in_mult: int = 1
    spatial_resample: bool = True
    token_stems: bool = False
    stem_reduction: int = 1
    stem_upscale: float = 1.75
    stem_out_size: tuple[int, int] = (40, 40)
    latents_mean: tuple[float, ...] = WAN21_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN21_LATENTS_STD
    clamp_output: bool = True
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        for name in ("dim_mult", "attn_scales", "temporal_downsample", "stem_out_size",
                     "latents_mean", "latents_std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise ValueError(f"temporal_downsample needs {len(self.dim_mult) - 1} entries (one per stage "
                             f"transition), got {len(self.temporal_downsample)}")
        if len(self.latents_mean) != self.z_dim or len(self.latents_std) != self.z_dim:
            raise ValueError(f"latents_mean/std need {self.z_dim} values (z_dim)")
        if self.token_stems and (self.in_channels % self.stem_reduction or self.out_channels % self.stem_reduction):
            raise ValueError("token stem channels must be divisible by stem_reduction")

    @property
    def temporal_compression(self) -> int:
        return 2 ** sum(self.temporal_downsample)

    @property
    def spatial_compression(self) -> int:
        """Down-scaling of height/width inside the stages (8 for Wan2.1; 1 without spatial resampling)."""
        return 2 ** (len(self.dim_mult) - 1) if self.spatial_resample else 1

    @property
    def encoder_dims(self) -> list[int]:
        return [self.dim * u for u in (self.encoder_in_mult, *self.dim_mult)]

    @property
    def decoder_dims(self) -> list[int]:
        return [self.dim * u for u in (self.dim_mult[-1], *self.dim_mult[::-1])]

    def latent_frames(self, num_frames: int) -> int:
        return 1 + (num_frames - 1) // self.temporal_compression

    def video_frames(self, latent_frames: int) -> int:
        return 1 + self.temporal_compression * (latent_frames - 1)

    def to_dict(self) -> dict:
        return asdict(self)


#: The released Wan2.1 VAE (``Wan2.1_VAE.pth``; ComfyUI ``wan_2.1_vae.safetensors``). Wan2.2's 5B VAE
#: (48 channels, 16x) is a different network.
WAN21_VAE = WanVAEConfig(name="wan2.1-vae")


# ----------------------------------------------------------------------------- layers
# Every layer takes ``cache``: ``None`` for a whole-clip pass, else a dict (one per encode/decode
# call) in which each causal layer keeps what it needs from the previous chunk, keyed by itself.

class CausalConv3d(nn.Conv3d):
    """3-D convolution that pads time only on the past side (``2 * padding_t`` frames).

    With a cache, the frames kept from the previous chunk replace (part of) that zero padding, so a
    clip processed in chunks gives what one pass gives.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        pad = (padding,) * 3 if isinstance(padding, int) else tuple(padding)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        self.time_pad = 2 * pad[0]
        self.space_pad = (pad[2], pad[2], pad[1], pad[1])

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        front = self.time_pad
        if cache is not None and front:
            prev = cache.get(self)
            if prev is not None:
                x = torch.cat([prev.to(x.device, x.dtype), x], dim=2)
                front -= prev.shape[2]
            cache[self] = x[:, :, -self.time_pad:].clone()
        return super().forward(F.pad(x, (*self.space_pad, front, 0)))


class RMSNorm(nn.Module):
    """Channel-first L2 normalisation times ``sqrt(C) * gamma`` (``gamma`` shaped to broadcast, as stored)."""

    def __init__(self, dim: int, images: bool = False):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1) if images else torch.ones(dim, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


def _per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D module to every frame of ``[B, C, T, H, W]``."""
    b, _, t = x.shape[:3]
    y = fn(x.transpose(1, 2).flatten(0, 1))
    return y.unflatten(0, (b, t)).transpose(1, 2)


class Interpolate(nn.Module):
    """Nearest-exact resize computed in float32 (bf16 is not supported by every backend)."""

    def __init__(self, scale_factor: float | None = None, size: tuple[int, int] | None = None):
        super().__init__()
        self.scale_factor = None if scale_factor is None else (float(scale_factor),) * 2
        self.size = None if size is None else tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.float(), size=self.size, scale_factor=self.scale_factor,
                             mode="nearest-exact").type_as(x)


class ResidualBlock(nn.Module):
    """norm-SiLU-conv-norm-SiLU-conv plus a (1x1x1 when widths differ) shortcut."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        # Index 5 is the official dropout slot (always 0 at inference); kept so the names match.
        self.residual = nn.Sequential(RMSNorm(in_dim), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1),
                                      RMSNorm(out_dim), nn.SiLU(), nn.Identity(),
                                      CausalConv3d(out_dim, out_dim, 3, padding=1))
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        h = self.shortcut(x)
        for layer in self.residual:
            x = layer(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame (no mixing across time)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def _frame(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.to_qkv(self.norm(x)).reshape(n, 1, 3 * c, h * w).transpose(2, 3).chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous())
        return self.proj(y.squeeze(1).transpose(1, 2).reshape(n, c, h, w))

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        return x + _per_frame(self._frame, x)


class Resample(nn.Module):
    """A stage transition: per-frame 2-D resampling, and for the temporal kinds a time convolution.

    ``mode``: ``"down2d"`` / ``"down3d"`` (encoder; ``3d`` also halves time) or ``"up2d"`` / ``"up3d"``
    (decoder; halves the channels, ``3d`` also doubles time). ``spatial=False`` keeps H x W.
    Temporal semantics (whole clip; chunks reproduce them):

    * ``down3d``: frame 0 passes; the rest come from a stride-2, 3-frame convolution over the clip
      without padding (windows 0-2, 2-4, ...), so ``1 + 2m`` frames -> ``1 + m``.
    * ``up3d``: frame 0 passes; frames 1.. go through a causal 3-frame convolution whose ``2C``
      outputs are split into two frames each (first half, then second half), ``1 + m`` -> ``1 + 2m``.
      Frame 0 is not in its context: the official decoder starts that convolution's cache empty at
      the second latent frame.
    """

    def __init__(self, dim: int, mode: str, spatial: bool = True):
        super().__init__()
        if mode not in ("down2d", "down3d", "up2d", "up3d"):
            raise ValueError(f"unknown resample mode {mode!r}")
        self.mode = mode
        up = mode.startswith("up")
        out = dim // 2 if up else dim
        if spatial and up:
            self.resample = nn.Sequential(Interpolate(scale_factor=2.0), nn.Conv2d(dim, out, 3, padding=1))
        elif spatial:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, out, 3, stride=2))
        else:
            self.resample = nn.Sequential(nn.Conv2d(dim, out, 3, padding=1))
        if mode == "up3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "down3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    @staticmethod
    def _split_frames(x: torch.Tensor) -> torch.Tensor:
        b, c2, t, h, w = x.shape
        return x.reshape(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c2 // 2, 2 * t, h, w)

    def _up_time(self, x: torch.Tensor, cache: dict | None) -> torch.Tensor:
        if cache is None:
            if x.shape[2] == 1:
                return x
            return torch.cat([x[:, :, :1], self._split_frames(self.time_conv(x[:, :, 1:]))], dim=2)
        if self not in cache:  # first latent frame: no time doubling
            cache[self] = True
            return x
        if cache.get(self.time_conv) is None:  # second one: its context starts empty (zeros)
            b, c, _, h, w = x.shape
            cache[self.time_conv] = x.new_zeros(b, c, self.time_conv.time_pad, h, w)
        return self._split_frames(self.time_conv(x, cache))

    def _down_time(self, x: torch.Tensor, cache: dict | None) -> torch.Tensor:
        if cache is None:
            if x.shape[2] == 1:
                return x
            return torch.cat([x[:, :, :1], self.time_conv(x)], dim=2)
        prev = cache.get(self)
        cache[self] = x[:, :, -1:].clone()
        if prev is None:  # first chunk (frame 0): passes
            return x
        return self.time_conv(torch.cat([prev, x], dim=2))

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        if self.mode == "up3d":
            x = self._up_time(x, cache)
        x = _per_frame(self.resample, x)
        if self.mode == "down3d":
            x = self._down_time(x, cache)
        return x


class TokenStemIn(nn.Module):
    """Per-frame nearest-exact upsample by ``scale`` then a 3x3 conv ``in -> out`` (Gen3R ``init_block``)."""

    def __init__(self, in_channels: int, out_channels: int, scale: float):
        super().__init__()
        self.resample = nn.Sequential(Interpolate(scale_factor=scale),
                                      nn.Conv2d(in_channels, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        return _per_frame(self.resample, x)


class TokenStemOut(nn.Module):
    """Per-frame resize to ``2 * size``, zero-pad right/bottom, stride-2 3x3 conv (Gen3R ``out_block``)."""

    def __init__(self, in_channels: int, out_channels: int, size: tuple[int, int]):
        super().__init__()
        self.resample = nn.Sequential(Interpolate(size=(2 * size[0], 2 * size[1])), nn.ZeroPad2d((0, 1, 0, 1)),
                                      nn.Conv2d(in_channels, out_channels, 3, stride=2))

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        return _per_frame(self.resample, x)


def _run(layers, x: torch.Tensor, cache: dict | None) -> torch.Tensor:
    for layer in layers:
        x = layer(x, cache) if isinstance(layer, _CACHED) else layer(x)
    return x


#: Layers whose forward takes the chunk cache.
_CACHED = (CausalConv3d, ResidualBlock, AttentionBlock, Resample)


class Encoder3d(nn.Module):
    """Frames ``[B, in_channels, T, H, W]`` -> ``[B, 2*z_dim, T', H', W']`` (mean | log-variance, raw)."""

    def __init__(self, config: WanVAEConfig):
        super().__init__()
        c = config
        dims = c.encoder_dims
        first_in = c.in_channels
        if c.token_stems:
            first_in = c.in_channels // c.stem_reduction
            self.init_block = TokenStemIn(c.in_channels, first_in, c.stem_upscale)
        self.conv1 = CausalConv3d(first_in, dims[0], 3, padding=1)
        layers, scale = [], 1.0
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(c.num_res_blocks):
                layers.append(ResidualBlock(in_dim, out_dim))
                if scale in c.attn_scales:
                    layers.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if i != len(c.dim_mult) - 1:
                layers.append(Resample(out_dim, "down3d" if c.temporal_downsample[i] else "down2d", c.spatial_resample))
                scale /= 2.0
        self.downsamples = nn.Sequential(*layers)
        self.middle = nn.Sequential(ResidualBlock(out_dim, out_dim), AttentionBlock(out_dim),
                                    ResidualBlock(out_dim, out_dim))
        self.head = nn.Sequential(RMSNorm(out_dim), nn.SiLU(), CausalConv3d(out_dim, 2 * c.z_dim, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        if hasattr(self, "init_block"):
            x = self.init_block(x)
        x = self.conv1(x, cache)
        for seq in (self.downsamples, self.middle, self.head):
            x = _run(seq, x, cache)
        return x


class Decoder3d(nn.Module):
    """Latents ``[B, z_dim, T', H', W']`` (after ``conv2``) -> ``[B, out_channels, T, H, W]``."""

    def __init__(self, config: WanVAEConfig):
        super().__init__()
        c = config
        dims = c.decoder_dims
        temporal_upsample = c.temporal_downsample[::-1]
        self.conv1 = CausalConv3d(c.z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0]))
        layers, scale = [], 1.0 / 2 ** (len(c.dim_mult) - 2)
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:  # the up-sampler before this stage halved the channels
                in_dim //= 2
            for _ in range(c.num_res_blocks + 1):
                layers.append(ResidualBlock(in_dim, out_dim))
                if scale in c.attn_scales:
                    layers.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if i != len(c.dim_mult) - 1:
                layers.append(Resample(out_dim, "up3d" if temporal_upsample[i] else "up2d", c.spatial_resample))
                scale *= 2.0
        self.upsamples = nn.Sequential(*layers)
        last = c.out_channels // c.stem_reduction if c.token_stems else c.out_channels
        self.head = nn.Sequential(RMSNorm(out_dim), nn.SiLU(), CausalConv3d(out_dim, last, 3, padding=1))
        if c.token_stems:
            self.out_block = TokenStemOut(last, c.out_channels, c.stem_out_size)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = self.conv1(x, cache)
        for seq in (self.middle, self.upsamples, self.head):
            x = _run(seq, x, cache)
        if hasattr(self, "out_block"):
            x = self.out_block(x)
        return x


# ----------------------------------------------------------------------------- model

@dataclass
class LatentDistribution:
    """Diagonal Gaussian posterior of the encoder (diffusers' ``DiagonalGaussianDistribution``).

    ``mean`` is normalised (``(mu - latents_mean) / latents_std``); ``logvar`` is the encoder's,
    clamped to [-30, 20], and *not* rescaled by the normalisation (as in the official code).
    """

    mean: torch.Tensor
    logvar: torch.Tensor

    def __post_init__(self):
        self.logvar = self.logvar.clamp(-30.0, 20.0)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean


class WanVAE(nn.Module):
    """The Wan2.1 VAE (or a model built like it). Modules: ``encoder``, ``conv1``, ``conv2``, ``decoder``.

    Video in ``[-1, 1]``, ``[B, 3, T, H, W]`` with ``T = 1 + 4k`` and H, W multiples of 8 ->
    normalised latents ``[B, 16, 1 + k, H/8, W/8]``.
    """

    def __init__(self, config: WanVAEConfig = WAN21_VAE):
        super().__init__()
        self.config = config
        self.encoder = Encoder3d(config)
        self.conv1 = CausalConv3d(2 * config.z_dim, 2 * config.z_dim, 1)
        self.conv2 = CausalConv3d(config.z_dim, config.z_dim, 1)
        self.decoder = Decoder3d(config)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv1.weight.dtype

    def _scale(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, 1/std)`` shaped ``[1, z, 1, 1, 1]``; the reciprocal is taken in float32 first, as
        the official code does, so normalising and un-normalising round the same way."""
        mean = torch.tensor(self.config.latents_mean, dtype=torch.float32)
        inv_std = 1.0 / torch.tensor(self.config.latents_std, dtype=torch.float32)
        shape = (1, -1, 1, 1, 1)
        return (mean.to(like.device, like.dtype).view(shape), inv_std.to(like.device, like.dtype).view(shape))

    def _check_input(self, x: torch.Tensor) -> None:
        c = self.config
        if x.ndim != 5 or x.shape[1] != c.in_channels:
            raise InputError(f"The VAE input has shape {tuple(x.shape)}; it needs [batch, {c.in_channels}, "
                             "frames, height, width].",
                             "Pass the video channels-first with its frames on axis 2.")
        t = x.shape[2]
        if (t - 1) % c.temporal_compression:
            k = c.temporal_compression
            lo, hi = k * ((t - 1) // k) + 1, k * ((t - 1) // k + 1) + 1
            raise InputError(f"The VAE encodes {k}k+1 frames; got {t}.",
                             f"Trim or pad the video to {lo} or {hi} frames.")
        s = c.spatial_compression
        if x.shape[3] % s or x.shape[4] % s:
            raise InputError(f"Video size {x.shape[4]}x{x.shape[3]} is not a multiple of {s}.",
                             f"Resize or crop the frames to multiples of {s} pixels.")

    def encode_raw(self, x: torch.Tensor, chunked: bool = True) -> torch.Tensor:
        """Encoder + ``conv1``: ``[B, 2*z_dim, T', H', W']`` = un-normalised mean | log-variance."""
        self._check_input(x)
        x = x.to(self.dtype)
        if not chunked:
            return self.conv1(self.encoder(x))
        cache: dict = {}
        k = self.config.temporal_compression
        chunks = [x[:, :, :1]] + [x[:, :, i:i + k] for i in range(1, x.shape[2], k)]
        return self.conv1(torch.cat([self.encoder(ch, cache) for ch in chunks], dim=2))

    def encode_moments(self, x: torch.Tensor, chunked: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(normalised mean, log-variance)``, each ``[B, z_dim, T', H', W']``."""
        mu, logvar = self.encode_raw(x, chunked).chunk(2, dim=1)
        mean, inv_std = self._scale(mu)
        return (mu - mean) * inv_std, logvar

    def encode_distribution(self, x: torch.Tensor, chunked: bool = True) -> LatentDistribution:
        return LatentDistribution(*self.encode_moments(x, chunked))

    def encode(self, x: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None,
               chunked: bool = True) -> torch.Tensor:
        """Normalised latents: the posterior mean (Wan's own ``encode``) or, with ``sample``, a draw."""
        dist = self.encode_distribution(x, chunked)
        return dist.sample(generator) if sample else dist.mean

    def decode(self, z: torch.Tensor, chunked: bool = True) -> torch.Tensor:
        """Normalised latents ``[B, z_dim, T', H', W']`` -> ``[B, out_channels, 1 + 4(T'-1), ...]``
        (clamped to [-1, 1] for RGB configs)."""
        c = self.config
        if z.ndim != 5 or z.shape[1] != c.z_dim:
            raise InputError(f"The latents have shape {tuple(z.shape)}; this VAE needs [batch, {c.z_dim}, "
                             "frames, height, width].", "Pass latents of this VAE (not another model's).")
        z = z.to(self.dtype)
        mean, inv_std = self._scale(z)
        x = self.conv2(z / inv_std + mean)
        if chunked:
            cache: dict = {}
            out = torch.cat([self.decoder(x[:, :, i:i + 1], cache) for i in range(x.shape[2])], dim=2)
        else:
            out = self.decoder(x)
        return out.clamp(-1.0, 1.0) if c.clamp_output else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction through the posterior mean."""
        return self.decode(self.encode(x))


# ----------------------------------------------------------------------------- loading

_VAE_PREFIXES = ("first_stage_model.", "vae.", "model.")


def vae_state_dict(state_dict: dict) -> dict:
    """The VAE tensors of a checkpoint in the original layout, a common wrapper prefix removed."""
    for prefix in _VAE_PREFIXES:
        inner = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if inner and any(k.startswith("encoder.") for k in inner):
            return inner
    return dict(state_dict)


def vae_from_state_dict(state_dict: dict, config: WanVAEConfig = WAN21_VAE, *, dtype: torch.dtype | None = None,
                        device: str | torch.device = "cpu", what: str = "The VAE file") -> WanVAE:
    """Build ``WanVAE(config)`` on the meta device and adopt the tensors key for key (strict), eval mode."""
    from ..checkpoint_io import strict_load

    sd = vae_state_dict(state_dict)
    if "encoder.conv_in.weight" in sd:
        raise CheckpointError(f"{what} is a Wan VAE in diffusers' layout (encoder.conv_in ...), not the "
                              "original one.", "Use wan_2.1_vae.safetensors from ComfyUI's models/vae "
                              "(or the official Wan2.1_VAE.pth).")
    first = sd.get("encoder.conv1.weight")
    if first is None:
        raise CheckpointError(f"{what} is not a Wan2.1 VAE (no encoder.conv1.weight).",
                              "Pick wan_2.1_vae.safetensors (ComfyUI models/vae).")
    if config.z_dim and "conv2.weight" in sd and sd["conv2.weight"].shape[0] != config.z_dim:
        raise CheckpointError(f"{what} has {sd['conv2.weight'].shape[0]} latent channels; {config.name} has "
                              f"{config.z_dim}.",
                              "Wan2.2's 5B VAE is not the Wan2.1 VAE: pick wan_2.1_vae.safetensors.")
    dtype = dtype or (first.dtype if first.is_floating_point() else torch.float32)
    sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    with torch.device("meta"):
        model = WanVAE(config)
    strict_load(model, sd, what=f"{config.name} VAE", assign=True)
    return model.to(device).eval()


def load_wan_vae(path, config: WanVAEConfig = WAN21_VAE, **kwargs) -> WanVAE:
    """A Wan2.1 VAE from ``wan_2.1_vae.safetensors`` or the official ``Wan2.1_VAE.pth`` (read safely)."""
    from ..checkpoint_io import find_state_dict, load_file_any

    p = Path(path)
    sd = find_state_dict(load_file_any(p, what="Wan VAE"), path=p, what="Wan VAE")
    return vae_from_state_dict(sd, config, what=f"The file {p.name}", **kwargs)


__all__ = ["WAN21_LATENTS_MEAN", "WAN21_LATENTS_STD", "WAN21_VAE", "LatentDistribution", "WanVAE", "WanVAEConfig",
           "load_wan_vae", "vae_from_state_dict"]
