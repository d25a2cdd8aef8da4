"""Video model nodes: load Wan2.1 (+ ReCamMaster, + LaVR adapter) with its VAE; re-render a video along a camera path."""

from __future__ import annotations

import contextlib

import torch
from comfy_api.latest import io

from lavr_core.conventions import SCENE_LATENT_TYPE, VIDEO_MODEL_TYPE
from lavr_core.errors import InputError

from ._common import LavrNode, Progress, Trajectory, schema
from ._models import DEVICES, DTYPES, model_file_options, model_on_device, pick_devices, pick_dtype, resolve_model_file

VideoModelIO = io.Custom(VIDEO_MODEL_TYPE)
SceneLatentIO = io.Custom(SCENE_LATENT_TYPE)

NONE = "none"
OFFLOAD = ("auto", "keep_loaded")
#: Largest side of the latent preview image sent to the frontend.
PREVIEW_SIZE = 512


def _with_none(folder: str, expected: list[str]) -> list[str]:
    return [NONE, *model_file_options(folder, expected)]


def _vae_dtype(option: str, device: torch.device) -> torch.dtype:
    """auto: fp32 on CPU, bf16 on GPUs that support it, otherwise fp32 (fp16 overflows in the Wan VAE)."""
    import comfy.model_management as mm

    if option not in DTYPES:
        raise InputError(f"Unknown dtype option {option!r}.", f"Use one of {', '.join(DTYPES)}.")
    if DTYPES[option] is not None:
        return DTYPES[option]
    if device.type != "cpu" and mm.should_use_bf16(device):
        return torch.bfloat16
    return torch.float32


class LoadVideoModel(LavrNode):
    SEARCH_ALIASES = ("wan", "wan2.1", "recammaster", "load video model", "camera controlled video model",
                      "lavr adapter")

    @classmethod
    def define_schema(cls):
        from lavr_core.wan.bundle import RECAMMASTER_FILE, WAN_DIT_FILE, WAN_VAE_FILE

        return schema(
            node_id="LaVRLoadVideoModel", display_name="Load LaVR Video Model", category="Video",
            description="Load Wan2.1-T2V-1.3B and the Wan VAE from the files ComfyUI already uses "
                        "(models/diffusion_models, models/vae), optionally with ReCamMaster's camera-controlled "
                        "fine-tune (step20000.ckpt) and a LaVR scene adapter (models/lavr). Weights stay off the "
                        "GPU until a sampler runs; the DiT and the VAE are never on the GPU together.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[
                io.Combo.Input("dit_name", options=model_file_options("diffusion_models", [WAN_DIT_FILE]),
                               tooltip="Wan2.1 text-to-video DiT in ComfyUI/models/diffusion_models/ (original Wan "
                                       "keys; fp16, bf16, fp32 or fp8 files), e.g. wan2.1_t2v_1.3B_fp16.safetensors "
                                       "from Comfy-Org/Wan_2.1_ComfyUI_repackaged."),
                io.Combo.Input("recammaster_ckpt", options=_with_none("diffusion_models", [RECAMMASTER_FILE]),
                               default=NONE,
                               tooltip="ReCamMaster's step20000.ckpt (KwaiVGI/ReCamMaster-Wan2.1), best kept as "
                                       "models/diffusion_models/ReCamMaster-Wan2.1/step20000.ckpt. Needed by the LaVR "
                                       "Sampler. It holds the whole DiT, so dit_name's weights are then not read. "
                                       "none: plain Wan2.1 T2V (the Fused 4D Sampler)."),
                io.Combo.Input("lavr_adapter", options=_with_none("lavr", []), default=NONE,
                               tooltip="Optional LaVR scene adapter from ComfyUI/models/lavr/ (conditions the re-render "
                                       "on the scene latent of Encode Scene Latent). none: ReCamMaster alone."),
                io.Combo.Input("vae_name", options=model_file_options("vae", [WAN_VAE_FILE]),
                               tooltip="The Wan2.1 VAE in ComfyUI/models/vae/ (wan_2.1_vae.safetensors). Wan2.2's VAE "
                                       "does not fit Wan2.1 models."),
                io.Combo.Input("weight_dtype", options=list(DTYPES), default="auto",
                               tooltip="DiT precision. auto: fp32 on CPU, bf16 on GPUs that support it (ReCamMaster "
                                       "runs in bf16), else fp16. fp8 files are expanded to this dtype on load."),
                io.Combo.Input("vae_dtype", options=list(DTYPES), default="auto",
                               tooltip="VAE precision. auto: fp32 on CPU, bf16 on GPUs that support it, else fp32."),
                io.Combo.Input("device", options=list(DEVICES), default="auto",
                               tooltip="auto: ComfyUI's GPU. cpu: everything on the CPU (slow: minutes per step at "
                                       "480x832)."),
                io.Combo.Input("offload", options=list(OFFLOAD), default="auto",
                               tooltip="auto: DiT and VAE wait in CPU memory and move to the GPU only while used "
                                       "(ComfyUI frees memory for them first). keep_loaded: both stay on the GPU "
                                       "(faster repeated runs, needs memory for both)."),
            ],
            outputs=[VideoModelIO.Output(display_name="video_model",
                                         tooltip="DiT + VAE for the LaVR Sampler (ReCamMaster) or the Fused 4D Sampler "
                                                 "(plain Wan2.1).")],
        )

    @classmethod
    def execute(cls, dit_name, recammaster_ckpt, lavr_adapter, vae_name, weight_dtype, vae_dtype, device,
                offload) -> io.NodeOutput:
        from lavr_core.wan.bundle import RECAMMASTER_SOURCE, VAE_SOURCE, WAN_SOURCE, load_video_model

        if offload not in OFFLOAD:
            raise InputError(f"Unknown offload option {offload!r}.", f"Use one of {', '.join(OFFLOAD)}.")
        dit_path = resolve_model_file("diffusion_models", dit_name, WAN_SOURCE)
        vae_path = resolve_model_file("vae", vae_name, VAE_SOURCE)
        cam_path = None if recammaster_ckpt == NONE else resolve_model_file("diffusion_models", recammaster_ckpt,
                                                                            RECAMMASTER_SOURCE)
        adapter_path = None if lavr_adapter == NONE else resolve_model_file(
            "lavr", lavr_adapter, "training with this pack (python -m lavr_core.train)")
        run_dev, off_dev = pick_devices(device)
        if offload == "keep_loaded":
            off_dev = run_dev
        vm = load_video_model(dit_path, vae_path, recammaster_path=cam_path, adapter_path=adapter_path,
                              dit_dtype=pick_dtype(weight_dtype, run_dev), vae_dtype=_vae_dtype(vae_dtype, run_dev),
                              load_device=run_dev, offload_device=off_dev)
        return io.NodeOutput(vm, ui={"text": [vm.describe(), *vm.notes]})


def _previewer():
    """``x0 [1, 16, F, h, w] -> ("JPEG", PIL image, size)`` from Wan2.1's linear latent-to-RGB factors,
    or None when ComfyUI runs without previews (the default ``--preview-method none``)."""
    from comfy.cli_args import LatentPreviewMethod, args

    if args.preview_method == LatentPreviewMethod.NoPreviews:
        return None
    from comfy.latent_formats import Wan21
    from PIL import Image

    fmt = Wan21()
    factors = torch.tensor(fmt.latent_rgb_factors, dtype=torch.float32)
    bias = torch.tensor(fmt.latent_rgb_factors_bias, dtype=torch.float32)

    def preview(x0: torch.Tensor):
        frame = x0[0, :, x0.shape[2] // 2].float().cpu()  # middle latent frame [16, h, w]
        rgb = torch.einsum("chw,cr->hwr", frame, factors) + bias
        img = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
        return ("JPEG", Image.fromarray(img), PREVIEW_SIZE)

    return preview


class LaVRSampler(LavrNode):
    SEARCH_ALIASES = ("recammaster", "re-render video", "novel view video", "camera control video", "change camera",
                      "lavr sampler")

    @classmethod
    def define_schema(cls):
        from lavr_core.wan.rerender import MIN_FRAMES, TRAJECTORY_FIT

        return schema(
            node_id="LaVRSampler", display_name="LaVR Sampler", category="Video",
            description="Re-render a video along a new camera path with ReCamMaster (plus the LaVR scene adapter when "
                        "one is loaded). The video is trimmed to 4k+1 frames (ReCamMaster was trained on 81 frames of "
                        "832x480); the trajectory is matched to the frames used. Sizes must be multiples of 16.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[
                VideoModelIO.Input("video_model", tooltip="From Load LaVR Video Model, with a ReCamMaster checkpoint."),
                io.Image.Input("images", tooltip=f"The source video as frames (IMAGE batch, e.g. Get Video Components). "
                                                 f"At least {MIN_FRAMES} frames; a count other than 4k+1 is trimmed "
                                                 "to the longest 4k+1 prefix. Width and height: multiples of 16."),
                Trajectory.Input("trajectory", tooltip="Target camera path (Camera Trajectory Builder with the source "
                                                       "path connected). Only poses relative to its first camera matter: "
                                                       "the target starts where the source camera starts."),
                io.Conditioning.Input("positive", tooltip="Prompt describing the video: CLIPTextEncode with Wan's "
                                                          "umT5-XXL (CLIPLoader type wan)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt, encoded the same way (Wan's usual negative "
                                                          "prompt works well)."),
                io.Int.Input("steps", default=50, min=1, max=1000,
                             tooltip="Sampling steps (ReCamMaster: 50; 20-30 for drafts)."),
                io.Float.Input("cfg", default=5.0, min=1.0, max=30.0, step=0.1, round=0.01,
                               tooltip="Text guidance scale (ReCamMaster: 5). 1 turns guidance off and halves the time."),
                io.Float.Input("shift", default=5.0, min=0.1, max=20.0, step=0.1, round=0.01,
                               tooltip="Flow-matching time shift (ReCamMaster: 5); higher spends more steps at high noise."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Noise seed; noise is drawn on the CPU, so a seed gives the same video on any device."),
                io.Float.Input("denoise", default=1.0, min=0.01, max=1.0, step=0.01,
                               tooltip="1: start from pure noise (a full re-render). Below 1: start from the source "
                                       "video's latents noised to this level (keeps more of the source look, moves the "
                                       "camera less)."),
                io.Combo.Input("trajectory_fit", options=list(TRAJECTORY_FIT), default="resample",
                               tooltip="When the trajectory's frame count is neither the video's nor the used 4k+1 "
                                       "count: resample it in time to fit (first and last cameras kept), or stop with "
                                       "an error."),
                SceneLatentIO.Input("scene_latent", optional=True,
                                    tooltip="Encode Scene Latent's output for the same video. Used by a LaVR adapter; "
                                            "ignored (with a note) by ReCamMaster alone."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="The re-rendered frames (4k+1 of them, the source size)."),
                Trajectory.Output(display_name="trajectory",
                                  tooltip="The camera path actually used: one camera per output frame."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, video_model, images, trajectory, positive, negative, steps, cfg, shift, seed, denoise,
                trajectory_fit, scene_latent=None) -> io.NodeOutput:
        from lavr_core.wan.bundle import VideoModel
        from lavr_core.wan.rerender import TRAJECTORY_FIT, rerender
        from lavr_core.wan.sampling import SamplerSettings

        if not isinstance(video_model, VideoModel):
            raise InputError("The video_model input is not a loaded video model.", "Connect Load LaVR Video Model.")
        if trajectory_fit not in TRAJECTORY_FIT:
            raise InputError(f"Unknown trajectory_fit {trajectory_fit!r}.", f"Use one of {', '.join(TRAJECTORY_FIT)}.")
        settings = SamplerSettings(steps=steps, cfg=cfg, shift=shift, seed=seed, denoise=denoise)
        progress = Progress(steps + 2, cls.hidden.unique_id)  # encode, the steps, decode
        preview = _previewer()

        @contextlib.contextmanager
        def place(part):
            progress.check()
            with model_on_device(video_model.handle(part)) as module:
                yield module
            if part == "vae":
                progress.step()

        def on_step(i, total, x, x0):
            progress.step(preview=preview(x0) if preview is not None else None)

        result = rerender(video_model, images, trajectory, positive, negative, settings, scene=scene_latent,
                          trajectory_fit=trajectory_fit, place=place, callback=on_step)
        plan = result.plan
        summary = (f"{plan.num_frames} frames {plan.width}x{plan.height} ({plan.num_latent_frames} latent frames), "
                   f"{steps} steps, cfg {cfg:g}, shift {shift:g}, seed {seed}, {video_model.variant}")
        return io.NodeOutput(result.images, result.trajectory, ui={"text": [summary, *result.notes]})


NODES = [LoadVideoModel, LaVRSampler]
