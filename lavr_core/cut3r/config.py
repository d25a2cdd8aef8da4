"""CUT3R architecture settings, and a parser for the constructor string stored in official checkpoints.

The released ``.pth`` files keep their architecture as Python source, e.g.
``ARCroco3DStereo(ARCroco3DStereoConfig(state_size=768, img_size=(512, 512), head_type='dpt', ...))``.
The official loader ``eval``s it. We never do: :func:`parse_constructor` reads the keyword arguments
from the syntax tree and accepts only literals (numbers, strings, booleans, None, tuples/lists of
those, ``inf``/``-inf``/``nan`` and ``float('inf')``); anything else is a CheckpointError.
"""

from __future__ import annotations

import ast
import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..errors import CheckpointError

_INF = float("inf")


@dataclass(frozen=True)
class Cut3rConfig:
    """Everything that fixes the shape and the maths of a CUT3R model.

    Defaults are those of the official ``ARCroco3DStereoConfig`` / ``CrocoConfig`` for arguments a
    constructor string leaves out (``patch_size=16``, ``mlp_ratio=4``, ``ray_enc_depth=2``,
    ``local_mem_size=256``, ``state_dec_num_heads=16``...). ``dpt_feature_dim`` and
    ``dpt_layer_dims`` are not constructor arguments (the official DPT head hard-codes 256 and
    ``[96, 192, 384, 768]``); they exist so that the tiny golden models can be described too.
    """

    img_size: tuple[int, int] = (224, 224)
    patch_size: int = 16
    enc_embed_dim: int = 768
    enc_depth: int = 12
    enc_num_heads: int = 12
    dec_embed_dim: int = 512
    dec_depth: int = 8
    dec_num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_im2_in_dec: bool = True
    pos_embed: str = "cosine"
    head_type: str = "linear"
    output_mode: str = "pts3d"
    depth_mode: tuple = ("exp", -_INF, _INF)
    conf_mode: tuple = ("exp", 1, _INF)
    pose_mode: tuple = ("exp", -_INF, _INF)
    freeze: str = "none"
    landscape_only: bool = False
    patch_embed_cls: str = "PatchEmbedDust3R"
    ray_enc_depth: int = 2
    ray_enc_num_heads: int = 16  # hard-coded in the official model
    state_size: int = 324
    local_mem_size: int = 256
    state_pe: str = "2d"
    state_dec_num_heads: int = 16
    depth_head: bool = False
    rgb_head: bool = False
    pose_conf_head: bool = False
    pose_head: bool = False
    dpt_feature_dim: int = 256
    dpt_layer_dims: tuple[int, int, int, int] = (96, 192, 384, 768)
    extra: dict = field(default_factory=dict, compare=False)  # constructor arguments we do not use

    # ------------------------------------------------------------------ derived values
    @property
    def rope_base(self) -> float:
        return float(self.pos_embed[len("RoPE"):])

    @property
    def head_hooks(self) -> tuple[int, int, int, int]:
        """Decoder outputs fed to the heads: encoder tokens, layers D/2, 3D/4 and the final one."""
        d = self.dec_depth
        return (0, d * 2 // 4, d * 3 // 4, d)

    def validate(self) -> "Cut3rConfig":
        """Raise a CheckpointError for settings this implementation (or CUT3R itself) cannot run."""
        def bad(msg, hint="Use a released CUT3R checkpoint (cut3r_512_dpt_4_64.pth or cut3r_224_linear_4.pth)."):
            raise CheckpointError(f"Unsupported CUT3R configuration: {msg}.", hint)

        if not self.pos_embed.startswith("RoPE"):
            bad(f"pos_embed={self.pos_embed!r} (only RoPE models, as released, are implemented)")
        try:
            self.rope_base
        except ValueError:
            bad(f"pos_embed={self.pos_embed!r} has no RoPE frequency")
        if self.output_mode != "pts3d+pose" or not self.pose_head:
            bad(f"output_mode={self.output_mode!r}, pose_head={self.pose_head} (CUT3R streams with "
                "output_mode='pts3d+pose' and pose_head=True)")
        if self.head_type not in ("dpt", "linear"):
            bad(f"head_type={self.head_type!r}")
        if self.state_pe not in ("1d", "2d"):
            bad(f"state_pe={self.state_pe!r} (the official model only runs with '1d' or '2d')")
        for name, mode, kinds in (("depth_mode", self.depth_mode, ("exp", "square", "linear")),
                                  ("pose_mode", self.pose_mode, ("exp", "square"))):
            if mode[0] not in kinds or not (mode[1] == -_INF and mode[2] == _INF):
                bad(f"{name}={mode!r} (the official code runs only unbounded {'/'.join(kinds)} modes)")
        if self.conf_mode[0] not in ("exp", "sigmoid"):
            bad(f"conf_mode={self.conf_mode!r}")
        for dim, heads, what in ((self.enc_embed_dim, self.enc_num_heads, "encoder"),
                                 (self.enc_embed_dim, self.ray_enc_num_heads, "ray-map encoder"),
                                 (self.dec_embed_dim, self.dec_num_heads, "decoder"),
                                 (self.dec_embed_dim, self.state_dec_num_heads, "state decoder")):
            if dim % heads or (dim // heads) % 4:
                bad(f"{what} width {dim} with {heads} heads (RoPE needs a head width divisible by 4)")
        h, w = self.img_size
        if h % self.patch_size or w % self.patch_size:
            bad(f"img_size={self.img_size} is not a multiple of patch_size={self.patch_size}")
        if self.head_type == "dpt" and self.patch_size != 16:
            bad("a DPT head with a patch size other than 16")
        return self

    def constructor_string(self) -> str:
        """The official-style constructor text for this configuration (what a ``.pth`` stores in ``args.model``).

        Arguments equal to the defaults are left out; ``dpt_feature_dim`` / ``dpt_layer_dims`` (a LaVR
        extension for tiny test models) appear only when they differ from the official values.
        """
        default = Cut3rConfig()
        parts = []
        for f in fields(self):
            if f.name in ("extra", "ray_enc_num_heads"):
                continue
            v = getattr(self, f.name)
            if v == getattr(default, f.name) and f.name not in ("img_size", "head_type", "output_mode"):
                continue
            parts.append(f"{f.name}={_py_literal(v)}")
        return f"ARCroco3DStereo(ARCroco3DStereoConfig({', '.join(parts)}))"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


#: Keyword arguments of ``ARCroco3DStereoConfig`` / ``CrocoConfig`` that map onto ``Cut3rConfig``.
_KNOWN = {f.name for f in fields(Cut3rConfig)} - {"extra", "dpt_feature_dim", "dpt_layer_dims", "ray_enc_num_heads"}
#: Arguments that only matter for training; accepted and ignored.
_TRAINING_ONLY = {"mask_ratio", "freeze"}


def _literal(node: ast.AST, src: str) -> Any:
    """Value of a literal syntax node; raises ValueError for anything that would need evaluation."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        vals = [_literal(e, src) for e in node.elts]
        return tuple(vals) if isinstance(node, ast.Tuple) else vals
    if isinstance(node, ast.Name):
        consts = {"inf": _INF, "nan": math.nan, "True": True, "False": False, "None": None}
        if node.id in consts:
            return consts[node.id]
        raise ValueError(f"name {node.id!r}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _literal(node.operand, src)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v if isinstance(node.op, ast.USub) else v
        raise ValueError("sign of a non-number")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float" \
            and len(node.args) == 1 and not node.keywords:
        v = _literal(node.args[0], src)
        if isinstance(v, str) and v.strip().lower() in ("inf", "+inf", "-inf", "nan", "infinity", "-infinity"):
            return float(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        raise ValueError("float() of a non-literal")
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("math", "np", "numpy") \
            and node.attr in ("inf", "nan"):
        return _INF if node.attr == "inf" else math.nan
    raise ValueError(ast.get_source_segment(src, node) or type(node).__name__)


def _find_config_call(tree: ast.AST) -> ast.Call | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else (f.attr if isinstance(f, ast.Attribute) else None)
            if name in ("ARCroco3DStereoConfig", "CrocoConfig") or (name == "ARCroco3DStereo" and node.keywords):
                return node
    return None


def parse_constructor(text: str) -> Cut3rConfig:
    """``Cut3rConfig`` from an official constructor string, without evaluating it.

    Mirrors the edits the official loader makes before building the model: ``ManyAR_PatchEmbed``
    becomes ``PatchEmbedDust3R`` and ``landscape_only`` is forced to False. Unknown keyword arguments
    are kept in ``extra``. Raises :class:`CheckpointError` when the string is not a CUT3R constructor
    or holds a non-literal argument.
    """
    hint = "The file does not look like a CUT3R checkpoint; select cut3r_512_dpt_4_64.pth or cut3r_224_linear_4.pth."
    if not isinstance(text, str) or "ARCroco3DStereo" not in text:
        raise CheckpointError(f"The checkpoint's model description {str(text)[:120]!r} is not a CUT3R "
                              "(ARCroco3DStereo) constructor.", hint)
    if len(text) > 20000:
        raise CheckpointError("The checkpoint's model description is implausibly long.", hint)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise CheckpointError(f"Cannot parse the checkpoint's model description ({e.msg}).", hint) from e
    call = _find_config_call(tree)
    if call is None:
        raise CheckpointError("The checkpoint's model description has no ARCroco3DStereoConfig(...) arguments.", hint)
    if call.args:
        raise CheckpointError("The checkpoint's model description passes positional arguments; expected keywords.", hint)
    kw: dict[str, Any] = {}
    for k in call.keywords:
        if k.arg is None:
            raise CheckpointError("The checkpoint's model description uses **kwargs; expected plain keywords.", hint)
        try:
            kw[k.arg] = _literal(k.value, text)
        except ValueError as e:
            raise CheckpointError(f"The checkpoint's model description gives {k.arg} a non-literal value ({e}); "
                                  "LaVR does not evaluate code from checkpoints.", hint) from e
    return config_from_kwargs(kw)


def config_from_kwargs(kw: dict[str, Any]) -> Cut3rConfig:
    """``Cut3rConfig`` from ``ARCroco3DStereoConfig`` keyword arguments (as parsed or as in a JSON)."""
    kw = dict(kw)
    if kw.get("patch_embed_cls") == "ManyAR_PatchEmbed":
        kw["patch_embed_cls"] = "PatchEmbedDust3R"  # as the official loader does
    kw["landscape_only"] = False
    args: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for k, v in kw.items():
        if k in _KNOWN or k in ("dpt_feature_dim", "dpt_layer_dims"):
            args[k] = v
        elif k not in _TRAINING_ONLY:
            extra[k] = v
    for k in ("depth_mode", "conf_mode", "pose_mode"):
        if k in args:
            args[k] = tuple(_as_float(x) for x in args[k])
    if "img_size" in args:
        s = args["img_size"]
        args["img_size"] = (int(s), int(s)) if isinstance(s, (int, float)) else (int(s[0]), int(s[1]))
    if "dpt_layer_dims" in args:
        args["dpt_layer_dims"] = tuple(int(x) for x in args["dpt_layer_dims"])
    try:
        cfg = Cut3rConfig(**args, extra=extra)
    except TypeError as e:
        raise CheckpointError(f"Bad CUT3R configuration arguments ({e}).",
                              "Use a released CUT3R checkpoint.") from e
    return cfg


def _py_literal(v) -> str:
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, tuple):
        inner = ", ".join(_py_literal(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    return repr(v)


def _as_float(x):
    if isinstance(x, str) and x.strip().lower() in ("inf", "+inf", "-inf", "nan"):
        return float(x)
    return x


#: The two released checkpoints, after the official loader's edits (see the reference README).
CUT3R_512_DPT = Cut3rConfig(
    freeze="encoder", state_size=768, state_pe="2d", pos_embed="RoPE100", rgb_head=True, pose_head=True,
    patch_embed_cls="PatchEmbedDust3R", img_size=(512, 512), head_type="dpt", output_mode="pts3d+pose",
    enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12,
)
CUT3R_224_LINEAR = replace(CUT3R_512_DPT, img_size=(224, 224), head_type="linear")

RELEASED_CHECKPOINTS = {
    "cut3r_512_dpt_4_64.pth": CUT3R_512_DPT,
    "cut3r_224_linear_4.pth": CUT3R_224_LINEAR,
}

#: Where users get the weights (named in "missing weights" errors).
WEIGHTS_SOURCE = "the Google Drive links in the CUT3R README (https://github.com/CUT3R/CUT3R)"
