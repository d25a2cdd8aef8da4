"""Fused 4D Sampler node: synchronized multi-view video (a V x T grid) from Wan2.1 T2V with fused
view-time attention (4Real-Video-V2); its layout output feeds VGGT Gaussian Decode."""

from __future__ import annotations

import contextlib

import torch
from comfy_api.latest import io

from lavr_core.conventions import GRID_LAYOUT_TYPE, VIDEO_MODEL_TYPE
from lavr_core.errors import InputError

from ._common import LavrNode, Progress, Trajectory, schema
from ._models import model_on_device, resolve_model_file

VideoModelIO = io.Custom(VIDEO_MODEL_TYPE)
GridLayoutIO = io.Custom(GRID_LAYOUT_TYPE)

NONE = "none"
ATTENTION = ("auto", "flex", "dense", "full")
REFERENCE_MODES = ("add", "replace")


def attention_weight_options() -> list[str]:
    """``"none"``, the fused-4D files of ``models/lavr`` (format tag in the safetensors header), and
    the files of ``models/loras`` (a Wan LoRA on self-attention q/k/v/o; others are refused on load)."""
    import folder_paths

    from lavr_core.checkpoint_io import safetensors_metadata
    from lavr_core.fused4d.weights import FORMAT

    found = []
    for folder in ("lavr", "loras"):
        try:
            names = folder_paths.get_filename_list(folder)
        except KeyError:
            continue
        for name in names:
            if not name.lower().endswith((".safetensors", ".sft")) or name in found:
                continue
            if folder == "lavr":
                try:
                    if safetensors_metadata(folder_paths.get_full_path("lavr", name)).get("format") != FORMAT:
                        continue
                except Exception:  # noqa: BLE001 - an unreadable file is simply not offered
                    continue
            found.append(name)
    return [NONE, *found]


def _weights_path(name: str) -> str:
    import folder_paths

    for folder in ("lavr", "loras"):
        try:
            path = folder_paths.get_full_path(folder, name)
        except KeyError:
            path = None
        if path:
            return path
    return resolve_model_file("lavr", name, "training with this pack (python -m lavr_core.train fused4d)")


class Fused4DSampler(LavrNode):
    SEARCH_ALIASES = ("4d video", "multi-view video", "4real-video", "fused view time attention", "freeze time",
                      "bullet time video", "synchronized views", "fused 4d")

    @classmethod
    def define_schema(cls):
        return schema(
            node_id="LaVRFused4DSampler", display_name="Fused 4D Sampler", category="Video",
            description="Generate a grid of synchronized videos (views x time) with Wan2.1 T2V, whose self-attention "
                        "only joins frames of the same view or the same time (4Real-Video-V2's fused view-time "
                        "attention; no new parameters). A fixed-view video fills the first row and/or a freeze-time "
                        "sweep (one frame per view at the start) the first column; the other cells are generated. "
                        "Output: all views' frames, view after view, and the grid layout for VGGT Gaussian Decode.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[
                VideoModelIO.Input("video_model", tooltip="From Load LaVR Video Model with recammaster_ckpt and "
                                                          "lavr_adapter set to none (plain Wan2.1 T2V)."),
                io.Conditioning.Input("positive", tooltip="Prompt for the scene: CLIPTextEncode with Wan's umT5-XXL "
                                                          "(CLIPLoader type wan)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt, encoded the same way. Used when cfg > 1."),
                io.Int.Input("views", default=4, min=1, max=32,
                             tooltip="Viewpoints (grid rows). The paper uses 8; cost grows with views x frames."),
                io.Int.Input("frames", default=17, min=1, max=257, step=4,
                             tooltip="Video frames per view, 4k+1 (the Wan VAE's unit): 17 frames = 5 latent frames. "
                                     "A longer fixed-view video is trimmed to this."),
                io.Int.Input("steps", default=50, min=1, max=1000, tooltip="Sampling steps (Wan: 50; 20-30 for drafts)."),
                io.Float.Input("cfg", default=5.0, min=1.0, max=30.0, step=0.1, round=0.01,
                               tooltip="Text guidance. The paper needs it only with a single reference; with both a "
                                       "row and a column reference 1 (off, twice as fast) works."),
                io.Float.Input("shift", default=5.0, min=0.1, max=20.0, step=0.1, round=0.01,
                               tooltip="Flow-matching time shift (Wan: 5)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Noise seed; noise is drawn on the CPU, so a seed gives the same grid on any device."),
                io.Combo.Input("reference_mode", options=list(REFERENCE_MODES), default="add",
                               tooltip="add: the references' patch embeddings are added to their cells' noisy tokens "
                                       "(4Real-Video-V2; best with fine-tuned attention weights). replace: the cells "
                                       "only show the noised reference (inpainting; the base model's behaviour)."),
                io.Combo.Input("attention", options=list(ATTENTION), default="auto",
                               tooltip="auto: compiled FlexAttention block mask on CUDA, dense masked SDPA on CPU. "
                                       "flex/dense force one. full: Wan's unmasked attention over the whole grid "
                                       "(for comparison; much slower and not synchronized the same way)."),
                io.Int.Input("t_max", default=0, min=0, max=1024,
                             tooltip="RoPE frame positions per view: view v time t sits at v*T_max + t. 0: the latent "
                                     "frames per view (the views then follow one another like one long video)."),
                io.Combo.Input("attention_weights", options=attention_weight_options(), default=NONE,
                               tooltip="Optional self-attention fine-tune or LoRA (models/lavr from python -m "
                                       "lavr_core.train fused4d, or a Wan LoRA in models/loras touching only "
                                       "self_attn q/k/v/o). none: the base Wan weights."),
                io.Float.Input("weights_strength", default=1.0, min=0.0, max=2.0, step=0.05,
                               tooltip="Scale of the fine-tune / LoRA change (1: as trained)."),
                io.Int.Input("width", default=832, min=16, max=4096, step=16,
                             tooltip="Frame width when no reference is connected (references set the size)."),
                io.Int.Input("height", default=480, min=16, max=4096, step=16,
                             tooltip="Frame height when no reference is connected (references set the size)."),
                io.Float.Input("fps", default=16.0, min=0.1, max=240.0, step=0.1,
                               tooltip="Frame rate recorded in the layout (Wan2.1: 16)."),
                io.Image.Input("fixed_view_video", optional=True,
                               tooltip="Reference video for view 0 (grid row 0): at least `frames` frames, sides "
                                       "divisible by 16."),
                io.Image.Input("freeze_time_video", optional=True,
                               tooltip="Freeze-time reference for time 0 (grid column 0): a sweep across the views of "
                                       "the scene at one moment; `views` frames spread evenly over it are used."),
                Trajectory.Input("view_cameras", optional=True,
                                 tooltip="Cameras of the views, when known (one per view, or one per frame of the "
                                         "freeze-time sweep): passed on in the layout for VGGT Gaussian Decode."),
            ],
            outputs=[
                io.Image.Output(display_name="images",
                                tooltip="views x frames images, view-major (all of view 0's frames first)."),
                GridLayoutIO.Output(display_name="grid_layout",
                                    tooltip="Views, frames per view, fps and view cameras (if known) of the images."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, video_model, positive, negative, views, frames, steps, cfg, shift, seed, reference_mode,
                attention, t_max, attention_weights, weights_strength, width, height, fps, fixed_view_video=None,
                freeze_time_video=None, view_cameras=None) -> io.NodeOutput:
        from lavr_core.fused4d.pipeline import Fused4DSettings, generate
        from lavr_core.fused4d.weights import read_self_attention_file, resolve_updates
        from lavr_core.wan.bundle import VideoModel
        from lavr_core.wan.conditioning import text_context
        from lavr_core.wan.sampling import SamplerSettings

        if not isinstance(video_model, VideoModel):
            raise InputError("The video_model input is not a loaded video model.", "Connect Load LaVR Video Model.")
        video_model.require("Fused 4D Sampler", "wan_t2v")
        for name, value, allowed in (("attention", attention, ATTENTION),
                                     ("reference_mode", reference_mode, REFERENCE_MODES)):
            if value not in allowed:  # ComfyUI 0.3.75 does not check V3 combo values
                raise InputError(f"Unknown {name} {value!r}.", f"Use one of {', '.join(allowed)}.")
        settings = Fused4DSettings(views=int(views), frames=int(frames), t_max=int(t_max) or None,
                                   attention=attention, reference_mode=reference_mode, fps=float(fps))
        sampler = SamplerSettings(steps=int(steps), cfg=float(cfg), shift=float(shift), seed=int(seed))
        config = video_model.config
        ctx_pos = text_context(positive, config.text_dim, text_len=config.text_len, what="positive")
        ctx_neg = text_context(negative, config.text_dim, text_len=config.text_len, what="negative")
        updates = None
        if attention_weights != NONE:
            sd = read_self_attention_file(_weights_path(attention_weights))
            updates = resolve_updates(video_model.dit, sd, float(weights_strength),
                                      what=f"The file {attention_weights}")

        progress = Progress(steps + views, cls.hidden.unique_id)  # the denoising steps, then one decode per view

        @contextlib.contextmanager
        def place(part):
            progress.check()
            with model_on_device(video_model.handle(part)) as module, torch.inference_mode():
                yield module

        result = generate(video_model.dit, video_model.vae, ctx_pos, settings, sampler, negative=ctx_neg,
                          fixed_view=fixed_view_video, freeze_time=freeze_time_video,
                          size=(int(height), int(width)), view_trajectory=view_cameras,
                          callback=lambda i, n, x, x0: progress.step(), on_view=lambda v: progress.step(),
                          place=place, weights=updates)
        lay = result.layout
        summary = (f"{lay.views} views x {lay.times} frames ({result.info['latent_times']} latent), "
                   f"{result.images.shape[2]}x{result.images.shape[1]}, reference {lay.meta['reference']} "
                   f"({reference_mode}), attention {attention} (density {lay.meta['density']:.3f}), {steps} steps, "
                   f"cfg {cfg:g}, seed {seed}" + (f", weights {attention_weights}" if updates else ""))
        return io.NodeOutput(result.images, lay, ui={"text": [summary]})


NODES = [Fused4DSampler]
