"""Gen3R nodes: load the released pipeline folder; generate video + depth + cameras + points/Gaussians
from one image (or a first and a last image), a prompt and an optional camera path."""

from __future__ import annotations

import os

import torch
from comfy_api.latest import io

from lavr_core.conventions import GAUSSIANS_TYPE, GEN3R_MODEL_TYPE
from lavr_core.errors import CheckpointError, InputError

from ._common import LavrNode, PointCloudIO, Progress, Trajectory, schema
from ._models import DEVICES, DTYPES, pick_devices, pick_dtype, resolve_model_file

Gen3RModelIO = io.Custom(GEN3R_MODEL_TYPE)
GaussiansIO = io.Custom(GAUSSIANS_TYPE)

#: Combo entry meaning "the file inside the Gen3R folder".
FROM_FOLDER = "(from the Gen3R folder)"
DEFAULT_FOLDER = "Gen3R"
OFFLOAD = ("auto", "keep_loaded")


def _gen3r_roots() -> list[str]:
    import folder_paths

    try:
        return list(folder_paths.get_folder_paths("gen3r"))
    except KeyError:
        return [os.path.join(folder_paths.models_dir, "gen3r")]


def gen3r_folder_options() -> list[str]:
    """Gen3R pipeline folders under ``models/gen3r`` ('.' when the folder itself is one); the release's
    folder name when there is none, so a workflow loads and running it says where the files go."""
    from lavr_core.gen3r.files import is_gen3r_folder

    found = []
    for root in _gen3r_roots():
        if is_gen3r_folder(root):
            found.append(".")
        if os.path.isdir(root):
            found += sorted(d for d in os.listdir(root) if is_gen3r_folder(os.path.join(root, d)))
    return sorted(set(found)) or [DEFAULT_FOLDER]


def _file_options(folder: str) -> list[str]:
    import folder_paths

    try:
        return [FROM_FOLDER, *folder_paths.get_filename_list(folder)]
    except KeyError:
        return [FROM_FOLDER]


def resolve_gen3r_folder(name: str) -> str:
    from lavr_core.gen3r.files import GEN3R_SOURCE, is_gen3r_folder

    roots = _gen3r_roots()
    if name and os.sep + ".." not in os.sep + os.path.normpath(name):
        for root in roots:
            path = os.path.normpath(os.path.join(root, name))
            if os.path.isdir(path):
                if not is_gen3r_folder(path):
                    raise CheckpointError(f"The folder {path} is not a Gen3R pipeline folder (it needs transformer/ "
                                          "and geo_adapter/ sub-folders).",
                                          f"Download the whole repository {GEN3R_SOURCE} into it, keeping its layout.")
                return path
    raise CheckpointError(f"The Gen3R folder {name!r} was not found in the 'gen3r' model folder.",
                          f"Download {GEN3R_SOURCE}: {os.path.join(roots[0], DEFAULT_FOLDER)} must hold transformer/, "
                          "geo_adapter/, wan_vae/ and vggt/. Then press R in ComfyUI to refresh the list.")


class LoadGen3R(LavrNode):
    SEARCH_ALIASES = ("gen3r", "image to 3d scene", "3d scene generation", "image to video and geometry",
                      "first last frame to 3d")

    @classmethod
    def define_schema(cls):
        return schema(
            node_id="LaVRLoadGen3R", display_name="Load Gen3R (LaVR)", category="Generate",
            description="Load Gen3R (JaceyH919/Gen3R): its DiT, geometry adapter, Wan2.1 VAE and VGGT heads from the "
                        "downloaded pipeline folder in ComfyUI/models/gen3r/ (git clone "
                        "https://huggingface.co/JaceyH919/Gen3R there). Files are read safely; models wait in CPU "
                        "memory and move to the GPU only while used.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[
                io.Combo.Input("gen3r_folder", options=gen3r_folder_options(),
                               tooltip="The Gen3R folder inside ComfyUI/models/gen3r/ (holding transformer/, "
                                       "geo_adapter/, wan_vae/, vggt/). Its text_encoder/ and clip_image_encoder/ are "
                                       "not used: CLIPLoader (umt5, type wan) and CLIPVisionLoader (clip_vision_h) "
                                       "provide them."),
                io.Combo.Input("wan_vae", options=_file_options("vae"), default=FROM_FOLDER,
                               tooltip="The Wan2.1 VAE: the Gen3R folder's wan_vae/, or the same VAE from "
                                       "ComfyUI/models/vae (wan_2.1_vae.safetensors)."),
                io.Combo.Input("vggt", options=_file_options("vggt"), default=FROM_FOLDER,
                               tooltip="VGGT, whose camera/depth/point heads decode the geometry: the Gen3R folder's "
                                       "vggt/, or VGGT-1B's model.safetensors from ComfyUI/models/vggt. Only the heads "
                                       "are read."),
                io.Combo.Input("dtype", options=list(DTYPES), default="auto",
                               tooltip="Precision of the DiT, adapter and VAE. auto: fp32 on CPU, bf16 on GPUs that "
                                       "support it (as Gen3R runs), else fp16. The VGGT heads always run in fp32."),
                io.Combo.Input("device", options=list(DEVICES), default="auto",
                               tooltip="auto: ComfyUI's GPU (each part moved there only while used). cpu: always on "
                                       "the CPU (very slow at Gen3R's size)."),
            ],
            outputs=[Gen3RModelIO.Output(display_name="gen3r_model", tooltip="The loaded Gen3R model.")],
        )

    @classmethod
    def execute(cls, gen3r_folder, wan_vae, vggt, dtype, device) -> io.NodeOutput:
        from lavr_core.gen3r.files import GEN3R_SOURCE, find_gen3r_files, load_gen3r
        from lavr_core.models import ModelHandle

        folder = resolve_gen3r_folder(gen3r_folder)
        vae_path = None if wan_vae == FROM_FOLDER else resolve_model_file(
            "vae", wan_vae, "Comfy-Org/Wan_2.1_ComfyUI_repackaged (split_files/vae/wan_2.1_vae.safetensors), "
                            f"or use the wan_vae/ of {GEN3R_SOURCE}")
        vggt_path = None if vggt == FROM_FOLDER else resolve_model_file(
            "vggt", vggt, f"facebook/VGGT-1B (model.safetensors), or use the vggt/ of {GEN3R_SOURCE}")
        files = find_gen3r_files(folder, wan_vae=vae_path, vggt=vggt_path)
        run_dev, off_dev = pick_devices(device)
        dt = pick_dtype(dtype, run_dev)
        models = load_gen3r(files, dtype=dt, device=off_dev)
        c = models.dit.config
        info = {"folder": gen3r_folder, "size": models.size, "i2v": c.has_image_input, "camera": c.add_control_adapter}
        handle = ModelHandle("gen3r", models, path=folder, dtype=dt, load_device=run_dev, offload_device=off_dev,
                             info=info)
        kind = "image branch (needs CLIP vision)" if c.has_image_input else "no image branch"
        text = (f"Gen3R from {gen3r_folder}: {c.describe()}, {kind}, {models.size}x{models.size} video; {dt}, runs on "
                f"{run_dev}")
        return io.NodeOutput(handle, ui={"text": [text]})


def _placer(handle, offload: str):
    from lavr_core.gen3r.pipeline import ModelPlacer, module_bytes

    dev = handle.load_device
    if dev.type == "cpu":
        return ModelPlacer(dev, handle.offload_device)
    import comfy.model_management as mm

    def before_load(need: int) -> None:
        mm.free_memory(need * 1.3, dev)

    budget = None
    if offload == "keep_loaded":
        budget = sum(module_bytes(m) for m in handle.model.parts().values())
    else:  # keep parts together only when they all fit with room left for activations
        total = sum(module_bytes(m) for m in handle.model.parts().values())
        if total < 0.5 * mm.get_free_memory(dev):
            budget = total
    return ModelPlacer(dev, handle.offload_device, budget_bytes=budget, before_load=before_load)


def _clip_features(clip_vision_output):
    if clip_vision_output is None:
        return None
    feats = getattr(clip_vision_output, "penultimate_hidden_states", None)
    if not isinstance(feats, torch.Tensor):
        raise InputError("The clip_vision_output has no penultimate hidden states (Wan's image features).",
                         "Connect CLIPVisionEncode with clip_vision_h.safetensors loaded by CLIPVisionLoader.")
    return feats[:1]


class Gen3RSampler(LavrNode):
    SEARCH_ALIASES = ("gen3r", "image to 3d", "image to scene", "3d scene from image", "video and depth from image",
                      "first last frame to 3d", "gen3r sampler")

    @classmethod
    def define_schema(cls):
        from lavr_core.gen3r.pipeline import GEN3R_FRAMES
        from lavr_core.gen3r.schedule import GEN3R_CFG, GEN3R_SHIFT, GEN3R_STEPS

        return schema(
            node_id="LaVRGen3RSampler", display_name="Gen3R Sampler (LaVR)", category="Generate",
            description="Generate a 3D scene with Gen3R: an RGB video together with its depth, cameras and a point "
                        "cloud / Gaussians, from one image (or a first and a last image), a prompt and an optional "
                        "camera path. Images are resized and centre-cropped to the model's square size (560x560).",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[
                Gen3RModelIO.Input("gen3r_model", tooltip="From Load Gen3R."),
                io.Conditioning.Input("positive", tooltip="Prompt describing the scene: CLIPTextEncode with Wan's "
                                                          "umT5-XXL (CLIPLoader type wan)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt, encoded the same way (Gen3R's own: "
                                                          "'bad detailed')."),
                io.Image.Input("image", tooltip="The first frame of the scene (one image; any size: it is resized and "
                                                "centre-cropped to a square)."),
                io.Image.Input("last_image", optional=True,
                               tooltip="Optional last frame (Gen3R's first-last mode); the same size as image."),
                Trajectory.Input("trajectory", optional=True,
                                 tooltip="Optional camera path (Camera Trajectory Builder) with one camera per output "
                                         "frame; its intrinsics are cropped like the images. Without one the model "
                                         "chooses the motion ('free')."),
                io.ClipVisionOutput.Input("clip_vision_output", optional=True,
                                          tooltip="CLIPVisionEncode of the first image (crop center) with "
                                                  "clip_vision_h.safetensors. Required by the released Gen3R (it has "
                                                  "an image branch); ignored by a DiT without one."),
                io.Int.Input("frames", default=GEN3R_FRAMES, min=5, max=201, step=4,
                             tooltip="Video length, 4k+1 frames (Gen3R: 49)."),
                io.Int.Input("steps", default=GEN3R_STEPS, min=1, max=1000, tooltip="Sampling steps (Gen3R: 50)."),
                io.Float.Input("cfg", default=GEN3R_CFG, min=1.0, max=30.0, step=0.1, round=0.01,
                               tooltip="Text guidance scale (Gen3R: 5). 1 turns guidance off and halves the time."),
                io.Float.Input("shift", default=GEN3R_SHIFT, min=0.1, max=20.0, step=0.1, round=0.01,
                               tooltip="Flow-matching time shift of Gen3R's schedule (Gen3R: 2)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Noise seed; noise is drawn on the CPU, so a seed gives the same scene on any "
                                     "device."),
                io.Int.Input("max_points", default=500000, min=1000, max=20000000,
                             tooltip="At most this many points in the point cloud and Gaussians (a uniform random "
                                     "subset of the masked pixels of all frames)."),
                io.Float.Input("fps", default=16.0, min=0.1, max=240.0, step=0.1,
                               tooltip="Frame rate recorded in the output camera path (Wan: 16)."),
                io.Combo.Input("offload", options=list(OFFLOAD), default="auto",
                               tooltip="auto: DiT, VAE, adapter and VGGT heads move to the GPU one at a time, unless "
                                       "all of them fit in half the free memory. keep_loaded: they stay together on "
                                       "the GPU during the run."),
            ],
            outputs=[
                io.Image.Output(display_name="frames", tooltip="The generated RGB video (frames x 560 x 560)."),
                io.Image.Output(display_name="depth_preview", tooltip="Colourised depth (near red, far blue)."),
                io.Mask.Output(display_name="depth", tooltip="Raw depth per pixel in scene units (not normalised to "
                                                             "0..1): frames x height x width."),
                Trajectory.Output(display_name="cameras", tooltip="The cameras Gen3R decoded for its frames (OpenCV "
                                                                  "c2w, first camera = world origin)."),
                PointCloudIO.Output(display_name="point_cloud", tooltip="Coloured points: depth unprojected through "
                                                                        "the cameras, Gen3R's depth mask applied."),
                GaussiansIO.Output(display_name="gaussians", tooltip="One isotropic Gaussian per masked pixel "
                                                                     "(training-free initialisation), for Save Splat."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, gen3r_model, positive, negative, image, frames, steps, cfg, shift, seed, max_points, fps,
                offload, last_image=None, trajectory=None, clip_vision_output=None) -> io.NodeOutput:
        from lavr_core.gen3r.pipeline import check_images, gen3r_settings, generate
        from lavr_core.visualize import colorize_depth
        from lavr_core.wan.conditioning import text_context

        if not hasattr(gen3r_model, "check_kind"):
            raise InputError("The gen3r_model input is not a loaded model.", "Connect Load Gen3R.")
        gen3r_model.check_kind("gen3r", "Gen3R Sampler")
        if offload not in OFFLOAD:
            raise InputError(f"Unknown offload option {offload!r}.", f"Use one of {', '.join(OFFLOAD)}.")
        models = gen3r_model.model
        c = models.dit.config
        images = check_images(image, last_image)
        ctx = text_context(positive, c.text_dim, text_len=c.text_len, what="positive")
        neg = text_context(negative, c.text_dim, text_len=c.text_len, what="negative")
        settings = gen3r_settings(steps=steps, cfg=cfg, shift=shift, seed=seed)
        progress = Progress(steps + 4, cls.hidden.unique_id)
        result = generate(models, images, ctx[:1], negative_context=neg[:1], trajectory=trajectory,
                          clip_feature=_clip_features(clip_vision_output), num_frames=frames, settings=settings,
                          placer=_placer(gen3r_model, offload),
                          on_progress=lambda done, total: progress.step())
        cameras = result.trajectory(fps)
        cloud = result.point_cloud(max_points, seed)
        gaussians = result.gaussians(max_points, seed)
        preview = colorize_depth(result.depth, result.point_mask)
        mode = "first-last" if images.shape[0] == 2 else "first frame"
        summary = (f"Gen3R {mode}, {frames} frames {models.size}x{models.size}, camera "
                   f"{'trajectory' if trajectory is not None else 'free'}, {steps} steps, cfg {cfg:g}, shift "
                   f"{shift:g}, seed {seed}; {len(cloud)} points, {len(gaussians)} Gaussians")
        notes = [summary]
        if clip_vision_output is not None and not models.needs_clip:
            notes.append("This DiT has no image branch: the CLIP vision features were not used.")
        return io.NodeOutput(result.frames, preview, result.depth, cameras, cloud, gaussians, ui={"text": notes})


NODES = [LoadGen3R, Gen3RSampler]
