"""CUT3R nodes: load the model, read a video into a scene latent (state tokens, cameras, depth, points)."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from lavr_core.conventions import CUT3R_MODEL_TYPE, SCENE_LATENT_TYPE
from lavr_core.errors import InputError

from ._common import LavrNode, PointCloudIO, Progress, Trajectory, schema
from ._models import DEVICES, DTYPES, model_file_options, model_on_device, pick_devices, pick_dtype, resolve_model_file

Cut3rModelIO = io.Custom(CUT3R_MODEL_TYPE)
SceneLatentIO = io.Custom(SCENE_LATENT_TYPE)


class LoadCUT3R(LavrNode):
    SEARCH_ALIASES = ("cut3r", "3d reconstruction model", "scene model", "continuous 3d perception")

    @classmethod
    def define_schema(cls):
        from lavr_core.cut3r import RELEASED_CHECKPOINTS

        return schema(
            node_id="LaVRLoadCUT3R", display_name="Load CUT3R (LaVR)", category="Scene",
            description="Load a CUT3R checkpoint (cut3r_512_dpt_4_64.pth or cut3r_224_linear_4.pth) from "
                        "ComfyUI/models/cut3r/. Files are read safely: no pickled code is executed.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[
                io.Combo.Input("ckpt_name", options=model_file_options("cut3r", list(RELEASED_CHECKPOINTS)),
                               tooltip="Checkpoint in ComfyUI/models/cut3r/. The 512 DPT model is the one LaVR uses; "
                                       "the 224 linear one is faster and coarser."),
                io.Combo.Input("dtype", options=list(DTYPES), default="auto",
                               tooltip="Weight precision. auto: fp32 on CPU, bf16 on GPUs that support it, else fp16. "
                                       "Heads always run in fp32."),
                io.Combo.Input("device", options=list(DEVICES), default="auto",
                               tooltip="auto: ComfyUI's GPU (moved there only while encoding). cpu: always on the CPU."),
            ],
            outputs=[Cut3rModelIO.Output(display_name="cut3r_model", tooltip="The loaded CUT3R model.")],
        )

    @classmethod
    def execute(cls, ckpt_name, dtype, device) -> io.NodeOutput:
        from lavr_core.cut3r import WEIGHTS_SOURCE, check_device_dtype, load_cut3r
        from lavr_core.models import ModelHandle

        path = resolve_model_file("cut3r", ckpt_name, WEIGHTS_SOURCE)
        run_dev, off_dev = pick_devices(device)
        dt = pick_dtype(dtype, run_dev)
        check_device_dtype(run_dev, dt)
        model = load_cut3r(path, device=off_dev, dtype=dt)
        handle = ModelHandle("cut3r", model, path=path, dtype=dt, load_device=run_dev, offload_device=off_dev,
                             info={"head": model.cfg.head_type, "file": ckpt_name})
        return io.NodeOutput(handle, ui={"text": [f"CUT3R {model.cfg.head_type} ({ckpt_name}), {dt}, runs on {run_dev}"]})


class EncodeSceneLatent(LavrNode):
    SEARCH_ALIASES = ("cut3r encode", "video to 3d", "camera poses from video", "depth from video", "scene latent")

    @classmethod
    def define_schema(cls):
        return schema(
            node_id="LaVREncodeSceneLatent", display_name="Encode Scene Latent (LaVR)", category="Scene",
            description="Read a video frame by frame with CUT3R: per-frame state tokens (the LaVR condition), the "
                        "source camera path, depth and a coloured point cloud. Memory stays flat with video length.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[
                Cut3rModelIO.Input("cut3r_model", tooltip="From Load CUT3R."),
                io.Image.Input("images", tooltip="The source video as frames (IMAGE batch). At least 1 frame; "
                                                 "frames are resized and cropped as CUT3R expects."),
                io.Int.Input("state_every", default=4, min=0, max=64,
                             tooltip="Keep CUT3R's state tokens after every k-th frame (LaVR uses 4, one per Wan latent "
                                     "frame). 0 keeps none (cameras, depth and points only); 1 keeps all (more memory)."),
                io.Combo.Input("world_points", options=["head", "pose"], default="head",
                               tooltip="head: CUT3R's world-point head. pose: each frame's own points moved by its "
                                       "predicted camera (the official demo's default)."),
                io.Float.Input("min_confidence", default=1.5, min=1.0, max=100.0, step=0.1,
                               tooltip="Points whose CUT3R confidence is below this are left out of the point cloud "
                                       "(confidences start at 1)."),
                io.Int.Input("max_points", default=200000, min=1000, max=5000000,
                             tooltip="At most this many points in the point cloud (a uniform random subset)."),
                io.Float.Input("fps", default=16.0, min=0.1, max=240.0, step=0.1,
                               tooltip="Frame rate recorded in the source trajectory."),
            ],
            outputs=[
                SceneLatentIO.Output(display_name="scene_latent", tooltip="State tokens, poses, depth and points."),
                Trajectory.Output(display_name="source_trajectory",
                                  tooltip="The recovered source cameras (OpenCV c2w, first camera = world origin, "
                                          "intrinsics in input-frame pixels). Feed it to the Camera Trajectory Builder."),
                io.Image.Output(display_name="depth_preview", tooltip="Colourised depth at the input frame size."),
                PointCloudIO.Output(display_name="point_cloud", tooltip="Coloured world points for previews and Save."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, cut3r_model, images, state_every, world_points, min_confidence, max_points, fps) -> io.NodeOutput:
        from lavr_core.cut3r import StreamOptions, encode_video
        from lavr_core.scene import SceneLatent
        from lavr_core.visualize import colorize_depth

        if not hasattr(cut3r_model, "check_kind"):
            raise InputError("The cut3r_model input is not a loaded model.", "Connect Load CUT3R.")
        cut3r_model.check_kind("cut3r", "Encode Scene Latent")
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3:
            raise InputError(f"Expected an IMAGE batch [T, H, W, 3], got {getattr(images, 'shape', type(images))}.",
                             "Connect a video or image batch (Load Video, Load Image).")
        if images.shape[0] == 0:
            raise InputError("The video has no frames.", "Connect a video with at least one frame.")
        if not torch.isfinite(images).all():
            raise InputError("The frames contain NaN or infinite values.", "Check the node that produced them.")
        total = images.shape[0]
        progress = Progress(total, cls.hidden.unique_id)
        opts = StreamOptions(state_every=state_every, world_points=world_points, keep_self_points=False)
        with model_on_device(cut3r_model) as model, torch.inference_mode():
            seq = encode_video(model, images, opts, callback=lambda frame, i, n: progress.step())
        latent = SceneLatent.from_cut3r(seq, fps, meta={"model": cut3r_model.info.get("file"),
                                                        "state_every": state_every, "world_points": world_points})
        traj = latent.trajectory
        depth_in = seq.crop.map_to_input(seq.depth[:, None].float())[:, 0]
        preview = colorize_depth(depth_in)
        cloud = latent.point_cloud(min_conf=min_confidence, max_points=max_points)
        if len(cloud) == 0:
            raise InputError(f"No point of the video has confidence >= {min_confidence}.",
                             "Lower min_confidence (CUT3R confidences start at 1).")
        summary = (f"{total} frames, {len(latent.state_frames)} state snapshots, {len(cloud)} points; "
                   f"{traj.summary()}")
        return io.NodeOutput(latent, traj, preview, cloud, ui={"text": [summary]})


NODES = [LoadCUT3R, EncodeSceneLatent]
