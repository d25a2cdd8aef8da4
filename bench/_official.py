"""Find and import the official CUT3R / VGGT code for the side-by-side benchmarks.

The official trees are never part of this repository. The benchmarks take ``--official DIR``
(default ``/tmp/official/<name>``); when the tree is missing they print how to get it and exit
with status 2. Getting a tree (any checkout of the upstream repository works)::

    git clone https://github.com/CUT3R/CUT3R /tmp/official/cut3r
    git clone https://github.com/facebookresearch/vggt /tmp/official/vggt

Importing the official code on a CPU-only machine needs a few runtime shims, installed here into
``sys.modules`` of the benchmark process only (nothing is installed or patched on disk):

CUT3R
  * ``transformers``: only four names are used (``PretrainedConfig``, ``PreTrainedModel``,
    ``modeling_outputs.BaseModelOutput``, ``file_utils.ModelOutput``) as plain base classes; the
    real package is not imported (this project never imports it). The stand-ins keep what the
    model relies on: a config is an attribute bag, a model is an ``nn.Module`` holding ``config``.
  * ``accelerate``: ``Accelerator`` (only named in a signature) and ``accelerate.logging.get_logger``.
  * ``torchvision``: a module that raises on use, so nothing imports the (broken) installed one;
    the model/inference path never uses it.
  * RoPE: the official encoder uses the CUDA extension ``curope``; its pure-PyTorch fallback
    cannot run CUT3R (it looks angles up by index and CUT3R's pose token sits at position -1).
    :class:`KernelFormulaRoPE2D` computes the CUDA kernel's formula directly (angle
    ``pos * base**(-i/Q)``, ``Q = head_dim/4``, float32 maths, result in the input dtype) and is
    put in place of ``models.croco.RoPE2D`` before any model is built, unless the compiled
    extension imports and CUDA is available (then the real kernel runs).
  * DPT head: the official ``DPTPts3dPose`` hard-codes ``feature_dim=256`` and the adapter's
    ``layer_dims``; for a small configuration :func:`build_cut3r` rebuilds ``dpt_self``,
    ``dpt_cross`` and ``dpt_rgb`` with the same official class and smaller sizes (the same
    recipe as the reference golden in ``shared/reference/cut3r``).
VGGT
  * none for the aggregator (pure PyTorch). For a small configuration the aggregator's DINOv2
    ``patch_embed`` is rebuilt with the official ``DinoVisionTransformer`` at a small size
    (as the reference golden in ``shared/reference/vggt`` does); the released size uses the
    official ``vit_large`` unchanged.
"""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import time
import types
from pathlib import Path

import torch
from torch import nn

DEFAULT_ROOT = Path("/tmp/official")
UPSTREAM = {"cut3r": "https://github.com/CUT3R/CUT3R", "vggt": "https://github.com/facebookresearch/vggt",
            "recammaster": "https://github.com/KwaiVGI/ReCamMaster", "gen3r": "https://github.com/JaceyHuang/Gen3R"}
#: A file that every usable tree has.
MARKER = {"cut3r": "src/dust3r/model.py", "vggt": "vggt/models/aggregator.py",
          "recammaster": "diffsynth/models/wan_video_dit.py",
          "gen3r": "gen3r/models/videoxfun_wan/wan_transformer3d.py"}


class OfficialTreeMissing(RuntimeError):
    pass


def find_tree(name: str, path: str | Path | None = None) -> Path:
    """The official tree of ``name`` (a key of ``UPSTREAM``), or ``OfficialTreeMissing`` with how to get it."""
    root = Path(path) if path else DEFAULT_ROOT / name
    if not (root / MARKER[name]).is_file():
        raise OfficialTreeMissing(
            f"The official {name} code was not found at {root} (no {MARKER[name]}).\n"
            f"Get it with:  git clone {UPSTREAM[name]} {root}\n"
            f"or pass --official DIR pointing at a checkout. It is only read, never copied into this repo.")
    return root


def require_tree(name: str, path: str | Path | None = None) -> Path:
    """``find_tree`` for a command-line script: prints the message and exits with status 2."""
    try:
        return find_tree(name, path)
    except OfficialTreeMissing as e:
        print(str(e), file=sys.stderr)
        raise SystemExit(2)


def tree_revision(root: Path) -> str:
    """The commit of an official tree: ``git rev-parse`` of a checkout, else a ``COMMIT`` file, else 'unknown'."""
    if (root / ".git").exists():
        try:
            return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    f = root / "COMMIT"
    return f.read_text().strip() if f.is_file() else "unknown"


# ------------------------------------------------------------------------------------ module shims
def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    mod.__lavr_shim__ = True
    return mod


def _install(name: str, mod: types.ModuleType) -> None:
    """Register a stand-in unless a real module of that name is already loaded."""
    sys.modules.setdefault(name, mod)
    if "." in name:
        parent, child = name.rsplit(".", 1)
        if parent in sys.modules and not hasattr(sys.modules[parent], child):
            setattr(sys.modules[parent], child, sys.modules[name])


class _ConfigStandIn:
    """Attribute bag with the ``PretrainedConfig`` constructor signature the official configs call."""

    model_type = ""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class _ModelStandIn(nn.Module):
    """``PreTrainedModel`` reduced to what the official models use: an ``nn.Module`` with ``config``."""

    config_class = _ConfigStandIn
    base_model_prefix = ""

    def __init__(self, config=None, *args, **kwargs):
        nn.Module.__init__(self)
        self.config = config


class _OutputStandIn:
    """Base of the official ``@dataclass`` outputs (``ModelOutput``); attributes only."""


class _AcceleratorStandIn:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("accelerate.Accelerator is not available in the benchmark (not needed for inference)")


def _get_logger(name, log_level=None):
    return logging.getLogger(name)


def _torchvision_stand_in() -> types.ModuleType:
    """Empty ``torchvision`` / ``torchvision.transforms``: importing works, any use is an AttributeError."""
    tv = _module("torchvision")
    tv.transforms = _module("torchvision.transforms")
    return tv


def install_cut3r_shims() -> None:
    tf = _module("transformers", PretrainedConfig=_ConfigStandIn, PreTrainedModel=_ModelStandIn)
    _install("transformers", tf)
    _install("transformers.modeling_outputs", _module("transformers.modeling_outputs", BaseModelOutput=_OutputStandIn))
    _install("transformers.file_utils", _module("transformers.file_utils", ModelOutput=_OutputStandIn))
    acc = _module("accelerate", Accelerator=_AcceleratorStandIn)
    _install("accelerate", acc)
    _install("accelerate.logging", _module("accelerate.logging", get_logger=_get_logger))
    if "torchvision" not in sys.modules:
        tv = _torchvision_stand_in()
        sys.modules["torchvision"] = tv
        sys.modules["torchvision.transforms"] = tv.transforms


class KernelFormulaRoPE2D(nn.Module):
    """Stand-in for CroCo's ``cuRoPE2D`` that evaluates the CUDA kernel's formula with PyTorch ops.

    ``forward(tokens [B, heads, N, D], positions [B, N, 2] (y, x))``. The first half of each head
    turns by ``y``, the second by ``x``; inside a half, channel ``i`` pairs with ``i + D/4`` and the
    angle is ``pos * base**(-i/(D/4))``. Like the kernel, the arithmetic is float32 and the result
    takes the input's dtype; unlike it, the result is a new tensor (the official callers use the
    return value).
    """

    def __init__(self, freq: float = 100.0, F0: float = 1.0):
        super().__init__()
        self.base = float(freq)
        self.F0 = float(F0)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        D = tokens.shape[-1]
        q = D // 4
        inv = self.F0 / self.base ** (torch.arange(q, device=tokens.device, dtype=torch.float32) / q)
        ang = positions.to(torch.float32)[:, None, :, :, None] * inv  # [B, 1, N, 2, q]
        cos, sin = ang.cos(), ang.sin()
        t = tokens.float()
        uy, vy, ux, vx = t.split(q, dim=-1)
        cy, cx, sy, sx = cos[..., 0, :], cos[..., 1, :], sin[..., 0, :], sin[..., 1, :]
        out = torch.cat((uy * cy - vy * sy, vy * cy + uy * sy, ux * cx - vx * sx, vx * cx + ux * sx), dim=-1)
        return out.to(tokens.dtype)


_IMPORTED: dict[str, Path] = {}


def _check_same_tree(name: str, root: Path) -> None:
    prev = _IMPORTED.get(name)
    if prev is not None and prev != root:
        raise RuntimeError(f"official {name} already imported from {prev}; cannot switch to {root} in one process")
    _IMPORTED[name] = root


def import_cut3r(root: Path) -> types.SimpleNamespace:
    """Import the official CUT3R modules from ``root`` with the shims in place.

    Returns a namespace with ``ARCroco3DStereo``, ``ARCroco3DStereoConfig``, ``inference``,
    ``DPTOutputAdapter_fix``, ``inf`` and ``rope_is_cuda`` (True when the compiled ``curope``
    extension imported and CUDA is available: then the official RoPE is used as is, otherwise
    :class:`KernelFormulaRoPE2D` replaces it).
    """
    root = Path(root).resolve()
    _check_same_tree("cut3r", root)
    install_cut3r_shims()
    src = str(root / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    # the repo's RoPE module prints a warning when the CUDA extension is absent; keep stdout clean
    import contextlib
    import io

    importlib.import_module("dust3r.utils.path_to_croco")  # puts src/croco on sys.path, as the repo does
    with contextlib.redirect_stdout(io.StringIO()):
        croco = importlib.import_module("models.croco")
    # cuRoPE2D is bound in models.pos_embed only when the compiled extension imported
    cuda_rope = getattr(sys.modules["models.pos_embed"], "cuRoPE2D", None)
    rope_is_cuda = cuda_rope is not None and croco.RoPE2D is cuda_rope and torch.cuda.is_available()
    if not rope_is_cuda:
        croco.RoPE2D = KernelFormulaRoPE2D
    model_mod = importlib.import_module("dust3r.model")
    infer_mod = importlib.import_module("dust3r.inference")
    dpt_mod = importlib.import_module("dust3r.heads.dpt_head")
    cam_mod = importlib.import_module("dust3r.utils.camera")
    post_mod = importlib.import_module("dust3r.post_process")
    geo_mod = importlib.import_module("dust3r.utils.geometry")
    return types.SimpleNamespace(ARCroco3DStereo=model_mod.ARCroco3DStereo,
                                 pose_encoding_to_camera=cam_mod.pose_encoding_to_camera,
                                 estimate_focal_knowing_depth=post_mod.estimate_focal_knowing_depth,
                                 geotrf=geo_mod.geotrf,
                                 ARCroco3DStereoConfig=model_mod.ARCroco3DStereoConfig,
                                 inference=infer_mod.inference, DPTOutputAdapter_fix=dpt_mod.DPTOutputAdapter_fix,
                                 inf=float("inf"), rope_is_cuda=rope_is_cuda)


def build_cut3r(off: types.SimpleNamespace, cfg) -> nn.Module:
    """The official ``ARCroco3DStereo`` for a ``lavr_core.cut3r.Cut3rConfig`` (eval mode, float32).

    A DPT head whose sizes differ from the official hard-coded ones is rebuilt with the official
    ``DPTOutputAdapter_fix`` at ``cfg.dpt_feature_dim`` / ``cfg.dpt_layer_dims``.
    """
    kw = dict(output_mode=cfg.output_mode, head_type=cfg.head_type, depth_mode=tuple(cfg.depth_mode),
              conf_mode=tuple(cfg.conf_mode), pose_mode=tuple(cfg.pose_mode), freeze=cfg.freeze,
              landscape_only=cfg.landscape_only, patch_embed_cls=cfg.patch_embed_cls,
              ray_enc_depth=cfg.ray_enc_depth, state_size=cfg.state_size, local_mem_size=cfg.local_mem_size,
              state_pe=cfg.state_pe, state_dec_num_heads=cfg.state_dec_num_heads, depth_head=cfg.depth_head,
              rgb_head=cfg.rgb_head, pose_conf_head=cfg.pose_conf_head, pose_head=cfg.pose_head,
              img_size=tuple(cfg.img_size), patch_size=cfg.patch_size, enc_embed_dim=cfg.enc_embed_dim,
              enc_depth=cfg.enc_depth, enc_num_heads=cfg.enc_num_heads, dec_embed_dim=cfg.dec_embed_dim,
              dec_depth=cfg.dec_depth, dec_num_heads=cfg.dec_num_heads, mlp_ratio=cfg.mlp_ratio,
              norm_im2_in_dec=cfg.norm_im2_in_dec, pos_embed=cfg.pos_embed)
    model = off.ARCroco3DStereo(off.ARCroco3DStereoConfig(**kw))
    if cfg.head_type == "dpt" and (cfg.dpt_feature_dim != 256 or tuple(cfg.dpt_layer_dims) != (96, 192, 384, 768)):
        head = model.downstream_head
        E, Dd, F = cfg.enc_embed_dim, cfg.dec_embed_dim, cfg.dpt_feature_dim
        for name, channels in (("dpt_self", 4), ("dpt_cross", 4), ("dpt_rgb", 3)):
            if not hasattr(head, name):
                continue
            ad = off.DPTOutputAdapter_fix(num_channels=channels, feature_dim=F, last_dim=F // 2,
                                          layer_dims=list(cfg.dpt_layer_dims), hooks=[0, 1, 2, 3],
                                          dim_tokens=[E, Dd, Dd, Dd], head_type="regression")
            ad.init(dim_tokens_enc=[E, Dd, Dd, Dd])
            setattr(head, name, ad)
    return model.eval()


def cut3r_views(frames: torch.Tensor) -> list[dict]:
    """Views for the official ``inference`` from ``[T, 3, H, W]`` frames in [-1, 1], built as the
    official ``demo.py prepare_input`` does for image-only input."""
    views = []
    T, _, H, W = frames.shape
    for i in range(T):
        img = frames[i:i + 1]
        views.append({
            "img": img,
            "ray_map": torch.full((1, 6, H, W), torch.nan),
            "true_shape": torch.tensor([[H, W]], dtype=torch.int32),
            "idx": i,
            "instance": str(i),
            "camera_pose": torch.eye(4, dtype=torch.float32)[None],
            "img_mask": torch.tensor(True)[None],
            "ray_mask": torch.tensor(False)[None],
            "update": torch.tensor(True)[None],
            "reset": torch.tensor(False)[None],
        })
    return views


def cut3r_demo_postprocess(off: types.SimpleNamespace, result: dict) -> dict:
    """The in-memory part of the official ``demo.py prepare_output(outputs, outdir, 1, True)``: poses
    to camera-to-world matrices, self-view points moved by the pose, Weiszfeld focal lengths from
    the self-view points, depth and colours; the official functions do the maths. Writing files is
    left out. This is the work our streamer does per frame on top of the model (c2w, focal, depth,
    colours), so ``inference`` + this is the like-for-like comparison."""
    pred, views = result["pred"], result["views"]
    pts_self = torch.cat([p["pts3d_in_self_view"].cpu() for p in pred])
    poses = [off.pose_encoding_to_camera(p["camera_pose"].clone()).cpu() for p in pred]
    c2w = torch.cat(poses)
    pts_world = torch.cat([off.geotrf(c, s[None]) for c, s in zip(poses, pts_self)])
    conf = torch.cat([p["conf_self"].cpu() for p in pred])
    B, H, W, _ = pts_self.shape
    pp = torch.tensor([W // 2, H // 2], dtype=torch.float32).repeat(B, 1)
    focal = off.estimate_focal_knowing_depth(pts_self, pp, focal_mode="weiszfeld")
    colors = torch.cat([0.5 * (v["img"].permute(0, 2, 3, 1).cpu() + 1.0) for v in views])
    K = torch.eye(3).repeat(B, 1, 1)
    K[:, 0, 0] = K[:, 1, 1] = focal
    K[:, :2, 2] = pp
    return {"c2w": c2w, "pts_world": pts_world, "conf": conf, "depth": pts_self[..., 2], "K": K, "colors": colors}


# ------------------------------------------------------------------------------------------- VGGT
def import_vggt(root: Path) -> types.SimpleNamespace:
    """Import the official VGGT aggregator modules from ``root``."""
    root = Path(root).resolve()
    _check_same_tree("vggt", root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    agg = importlib.import_module("vggt.models.aggregator")
    vt = importlib.import_module("vggt.layers.vision_transformer")
    blk = importlib.import_module("vggt.layers.block")
    att = importlib.import_module("vggt.layers.attention")
    return types.SimpleNamespace(Aggregator=agg.Aggregator, DinoVisionTransformer=vt.DinoVisionTransformer,
                                 NestedTensorBlock=blk.NestedTensorBlock, MemEffAttention=att.MemEffAttention)


def build_vggt_aggregator(off: types.SimpleNamespace, acfg) -> nn.Module:
    """The official ``Aggregator`` for a ``lavr_core.vggt.config.AggregatorConfig`` (eval mode).

    A ``patch_embed="dino"`` configuration (a DINOv2 of custom size) gets the official
    ``DinoVisionTransformer`` built the way ``vit_large`` builds it, at the configured size.
    """
    from functools import partial

    named = acfg.patch_embed if acfg.patch_embed != "dino" else "conv"
    agg = off.Aggregator(img_size=acfg.img_size, patch_size=acfg.patch_size, embed_dim=acfg.embed_dim,
                         depth=acfg.depth, num_heads=acfg.num_heads, mlp_ratio=acfg.mlp_ratio,
                         num_register_tokens=acfg.num_register_tokens, qkv_bias=acfg.qkv_bias,
                         proj_bias=acfg.proj_bias, ffn_bias=acfg.ffn_bias, patch_embed=named,
                         aa_order=list(acfg.aa_order), aa_block_size=acfg.aa_block_size, qk_norm=acfg.qk_norm,
                         rope_freq=acfg.rope_freq, init_values=acfg.init_values)
    if acfg.patch_embed == "dino":
        d = acfg.dino
        agg.patch_embed = off.DinoVisionTransformer(
            img_size=acfg.img_size, patch_size=acfg.patch_size, embed_dim=acfg.embed_dim, depth=d.depth,
            num_heads=d.num_heads, mlp_ratio=d.mlp_ratio,
            block_fn=partial(off.NestedTensorBlock, attn_class=off.MemEffAttention),
            num_register_tokens=acfg.num_register_tokens, interpolate_antialias=d.interpolate_antialias,
            interpolate_offset=d.interpolate_offset, block_chunks=0, init_values=d.init_values)
        if hasattr(agg.patch_embed, "mask_token"):
            agg.patch_embed.mask_token.requires_grad_(False)
    return agg.eval()


# ------------------------------------------------------------------------- measurement helpers
#: glibc settings for CPU peak-memory runs: every allocation above 64 KiB is its own mapping, so
#: freed tensors leave the process and the resident set tracks live memory.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def proc_status(field: str) -> int:
    """A ``/proc/self/status`` size field (``VmRSS``, ``VmHWM``) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset ``VmHWM`` to the current resident set; returns that resident set (bytes)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return proc_status("VmRSS")


def tensor_storages(obj, skip: set = frozenset(), seen: dict | None = None) -> dict:
    """``{(data_ptr, device): nbytes}`` of the distinct tensor storages reachable from ``obj``
    (through dicts, lists, tuples and dataclasses), leaving out the keys in ``skip``."""
    if seen is None:
        seen = {}
    if isinstance(obj, torch.Tensor):
        st = obj.untyped_storage()
        key = (st.data_ptr(), str(obj.device))
        if key not in skip:
            seen[key] = st.nbytes()
    elif isinstance(obj, dict):
        for v in obj.values():
            tensor_storages(v, skip, seen)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            tensor_storages(v, skip, seen)
    elif hasattr(obj, "__dataclass_fields__"):
        for k in obj.__dataclass_fields__:
            tensor_storages(getattr(obj, k), skip, seen)
    return seen


def storage_key(t: torch.Tensor) -> tuple:
    return (t.untyped_storage().data_ptr(), str(t.device))


def perturb_weights(model: nn.Module, seed: int = 0, noise: float = 0.05, conv_gain: float = 0.9) -> None:
    """Seeded random weights away from trivial values (the reference goldens' recipe): every
    parameter gets N(0, noise^2) added; every conv weight except patch embeddings is redrawn with
    std ``conv_gain / sqrt(fan_in)`` (torch's fan-in convention) so DPT signals neither die nor blow up."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 4 and "patch_embed" not in name:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=g) * (conv_gain / fan_in ** 0.5))
            else:
                p.add_(torch.randn(p.shape, generator=g) * noise)


def timed_passes(call, sync=lambda: None, min_total: float = 2.0, max_reps: int = 5) -> dict:
    """Run ``call()`` at least once and again while the total stays under ``min_total`` seconds
    (at most ``max_reps`` times). Returns the best wall time, the best process CPU time and the count.

    The best of a few passes is the least disturbed one on a shared CPU; with one torch thread the
    process CPU time also leaves out time spent waiting for a core. The result of each pass is
    dropped before the next.
    """
    walls, cpus = [], []
    while not walls or (sum(walls) < min_total and len(walls) < max_reps):
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        out = call()  # noqa: F841 (held until the clock stops: freeing it is not part of the pass)
        sync()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        del out
    return {"seconds": min(walls), "cpu_seconds": min(cpus), "reps": len(walls)}
