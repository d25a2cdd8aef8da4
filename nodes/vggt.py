"""VGGT nodes: load VGGT (plus LaVR's Gaussian head / temporal weights) and decode frames into Gaussians."""

from __future__ import annotations

import os

import torch
from comfy_api.latest import io

from lavr_core.conventions import GAUSSIANS_TYPE, GRID_LAYOUT_TYPE, VGGT_MODEL_TYPE
from lavr_core.errors import CheckpointError, InputError

from ._common import LavrNode, Progress, Trajectory, schema
from ._models import DEVICES, DTYPES, model_file_options, model_on_device, pick_devices, pick_dtype, resolve_model_file

VggtModelIO = io.Custom(VGGT_MODEL_TYPE)
GaussiansIO = io.Custom(GAUSSIANS_TYPE)
GridLayoutIO = io.Custom(GRID_LAYOUT_TYPE)

VGGT_SOURCE = "https://huggingface.co/facebook/VGGT-1B (model.safetensors, or model.pt)"
VGGT_FILES = ["model.safetensors"]
NO_WEIGHTS = "none"
HEAD_SOURCE = ("a LaVR training run (python -m lavr_core.train vggt-gaussians writes it), or choose 'none' for the "
               "training-free Gaussians")


def gaussian_weight_options() -> list[str]:
    """``"none"`` plus the LaVR VGGT-4D weight files (format tag ``lavr_vggt4d``) in ``models/lavr``.

    Only the safetensors header is read, so listing stays cheap; other LaVR weights in the same
    folder (adapters, attention) are left out.
    """
    import folder_paths

    from lavr_core.checkpoint_io import safetensors_metadata
    from lavr_core.vggt4d import FORMAT

    found = []
    try:
        names = folder_paths.get_filename_list("lavr")
    except KeyError:
        names = []
    for name in names:
        if not name.lower().endswith((".safetensors", ".sft")):
            continue
        try:
            if safetensors_metadata(folder_paths.get_full_path("lavr", name)).get("format") == FORMAT:
                found.append(name)
        except Exception:  # noqa: BLE001 - an unreadable file is simply not offered
            continue
    return [NO_WEIGHTS, *found]


class LoadVGGT(LavrNode):
    SEARCH_ALIASES = ("vggt", "visual geometry grounded transformer", "gaussian splat model", "3d reconstruction model",
                      "vggt4d")

    @classmethod
    def define_schema(cls):
        return schema(
            node_id="LaVRLoadVGGT", display_name="Load VGGT (LaVR)", category="Gaussians",
            description="Load VGGT (facebook/VGGT-1B model.safetensors or model.pt from ComfyUI/models/vggt/) and, "
                        "optionally, LaVR's Gaussian-head / temporal weights from ComfyUI/models/lavr/. Without them "
                        "Gaussians come from VGGT's depth and cameras (training-free). Files are read safely.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[
                io.Combo.Input("ckpt_name", options=model_file_options("vggt", VGGT_FILES),
                               tooltip="VGGT checkpoint in ComfyUI/models/vggt/ (model.safetensors or model.pt from "
                                       "huggingface.co/facebook/VGGT-1B)."),
                io.Combo.Input("gaussian_weights", options=gaussian_weight_options(), default=NO_WEIGHTS,
                               tooltip="LaVR Gaussian-head and/or temporal-layer weights in ComfyUI/models/lavr/ "
                                       "(format lavr_vggt4d). 'none': training-free Gaussians from depth and cameras."),
                io.Combo.Input("dtype", options=list(DTYPES), default="auto",
                               tooltip="auto: fp32 on CPU; on a GPU fp32 weights with the aggregator under bf16 (or "
                                       "fp16) autocast, as the official demo runs. bf16/fp16: aggregator weights in that "
                                       "precision (half the memory). The heads always run in fp32."),
                io.Combo.Input("device", options=list(DEVICES), default="auto",
                               tooltip="auto: ComfyUI's GPU (moved there only while decoding). cpu: always on the CPU."),
            ],
            outputs=[VggtModelIO.Output(display_name="vggt_model",
                                        tooltip="The loaded VGGT with its Gaussian head (if any).")],
        )

    @classmethod
    def execute(cls, ckpt_name, gaussian_weights, dtype, device) -> io.NodeOutput:
        from lavr_core.models import ModelHandle
        from lavr_core.vggt import load_vggt
        from lavr_core.vggt4d import load_vggt4d

        path = resolve_model_file("vggt", ckpt_name, VGGT_SOURCE)
        weights = None
        if gaussian_weights not in (NO_WEIGHTS, "", None):
            import folder_paths

            weights = folder_paths.get_full_path("lavr", gaussian_weights)
            if weights is None or not os.path.isfile(weights):
                where = folder_paths.get_folder_paths("lavr")
                raise CheckpointError(f"Gaussian weights {gaussian_weights!r} were not found in the 'lavr' model folder.",
                                      f"Put the file from {HEAD_SOURCE} in {where[0] if where else 'models/lavr'}, "
                                      "then press R in ComfyUI to refresh the list.")
        run_dev, off_dev = pick_devices(device)
        dt = pick_dtype(dtype, run_dev)
        vggt = load_vggt(path, device=off_dev, dtype=torch.float32)
        autocast = None
        if dt != torch.float32:
            if dtype == "auto":  # the official recipe: fp32 weights, half-precision aggregator via autocast
                autocast = dt
            else:  # half the aggregator's memory; the heads keep fp32 weights (they run in fp32 officially)
                vggt.aggregator.to(dt)
        model = load_vggt4d(vggt, weights).eval()
        init = "gaussian_head" if model.gaussian_head is not None else "training_free"
        parts = [p for p in ("gaussian_head", "temporal") if getattr(model, p) is not None]
        handle = ModelHandle("vggt", model, path=path, dtype=dt, load_device=run_dev, offload_device=off_dev,
                             info={"file": ckpt_name, "weights": gaussian_weights if weights else None, "init": init,
                                   "parts": parts, "autocast": autocast, "width": vggt.config.embed_dim})
        prec = f"fp32 weights, {autocast} autocast" if autocast else str(vggt.aggregator.camera_token.dtype)
        extra = f" + {', '.join(parts)} ({gaussian_weights})" if parts else ""
        return io.NodeOutput(handle, ui={"text": [f"VGGT ({ckpt_name}){extra}; Gaussians: {init}; {prec}; "
                                                  f"runs on {run_dev}"]})


class VGGTGaussianDecode(LavrNode):
    SEARCH_ALIASES = ("vggt decode", "frames to gaussians", "gaussian splatting from video", "4d gaussians",
                      "images to splat", "feed-forward 3dgs")

    @classmethod
    def define_schema(cls):
        from lavr_core.vggt.preprocess import MODES, TARGET_SIZE

        return schema(
            node_id="LaVRVGGTGaussianDecode", display_name="VGGT Gaussian Decode (LaVR)", category="Gaussians",
            description="Frames to 3D Gaussians with VGGT in one pass: every frame a view of one static scene, or, "
                        "with a grid layout (or views > 0), a V x T grid of views x timesteps giving 4D Gaussians "
                        "(one set per timestep). Also returns the cameras, a depth preview and a render of the "
                        "Gaussians from every frame's camera.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[
                VggtModelIO.Input("vggt_model", tooltip="From Load VGGT."),
                io.Image.Input("images", tooltip="The frames (IMAGE batch). Static scene: any views of it (1 frame "
                                                 "works: depth from a single image). Grid: V x T frames, view-major "
                                                 "(all of view 0's timesteps first)."),
                GridLayoutIO.Input("grid_layout", optional=True,
                                   tooltip="Optional: the layout from the Fused 4D Sampler. When connected the frames "
                                           "are its V x T grid and the output is 4D (a Gaussian sequence)."),
                io.Int.Input("views", default=0, min=0, max=256,
                             tooltip="0: follow the grid layout, or without one treat every frame as a view of one "
                                     "static scene. V > 0: the frames are V views x (frames / V) timesteps, view-major."),
                io.Combo.Input("preprocess", options=list(MODES), default="crop",
                               tooltip="VGGT's official preparation. crop: width to the resolution, a taller-than-square "
                                       "frame is centre-cropped. pad: the long side to the resolution, padded to a "
                                       "square with white (padding makes no Gaussians)."),
                io.Int.Input("resolution", default=TARGET_SIZE, min=28, max=1036, step=14,
                             tooltip="Model input size in pixels, a multiple of 14. VGGT was trained at 518; smaller is "
                                     "faster and coarser."),
                io.Float.Input("min_confidence", default=1.5, min=1.0, max=1000.0, step=0.1,
                               tooltip="Pixels whose VGGT depth confidence is below this make no Gaussian (confidences "
                                       "start at 1; 1 keeps every pixel). Faint pixels also get low opacity."),
                io.Int.Input("max_gaussians", default=200000, min=1000, max=20000000,
                             tooltip="At most this many Gaussians per timestep: a fixed random subset whose splats "
                                     "grow to cover the same surface. Preview rendering time grows with it."),
                io.Float.Input("fps", default=16.0, min=0.1, max=240.0, step=0.1,
                               tooltip="Frame rate of the timesteps and of the camera trajectory (a connected grid "
                                       "layout's own fps wins)."),
            ],
            outputs=[
                GaussiansIO.Output(display_name="gaussians",
                                   tooltip="Static Gaussians, or a Gaussian sequence (one set per timestep) for a grid."),
                Trajectory.Output(display_name="cameras",
                                  tooltip="One camera per view (OpenCV c2w, view 0 at the origin, intrinsics in input-"
                                          "frame pixels), at timestep 0."),
                io.Image.Output(display_name="depth_preview",
                                tooltip="Colourised depth of every frame at the input size (black: not seen)."),
                io.Image.Output(display_name="render_preview",
                                tooltip="The Gaussians rendered from every frame's predicted camera (input framing, "
                                        "long side at most 512 px): compare with the input frames."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, vggt_model, images, views, preprocess, resolution, min_confidence, max_gaussians, fps,
                grid_layout=None) -> io.NodeOutput:
        from lavr_core.vggt.preprocess import MODES
        from lavr_core.vggt4d.decode import decode_frames, decode_steps

        if not hasattr(vggt_model, "check_kind"):
            raise InputError("The vggt_model input is not a loaded model.", "Connect Load VGGT.")
        vggt_model.check_kind("vggt", "VGGT Gaussian Decode")
        if preprocess not in MODES:  # ComfyUI 0.3.75 does not check V3 combo values
            raise InputError(f"Unknown preprocess mode {preprocess!r}.", f"Use one of {', '.join(MODES)}.")
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"Expected an IMAGE batch [N, H, W, 3], got {getattr(images, 'shape', type(images))}.",
                             "Connect frames (Load Image, Load Video, or a sampler's decoded frames).")
        if images.shape[0] == 0:
            raise InputError("The IMAGE batch has no frames.", "Connect at least one frame.")
        progress = Progress(decode_steps(vggt_model.model, images.shape[0]), cls.hidden.unique_id)
        with model_on_device(vggt_model) as model:
            result = decode_frames(model, images, views=int(views), layout=grid_layout, mode=preprocess,
                                   resolution=int(resolution), min_confidence=float(min_confidence),
                                   max_gaussians=int(max_gaussians), fps=float(fps),
                                   autocast=vggt_model.info.get("autocast"), step=progress.step)
        return io.NodeOutput(result.gaussians, result.trajectory, result.depth_preview, result.render_preview,
                             ui={"text": [result.summary()]})


NODES = [LoadVGGT, VGGTGaussianDecode]
