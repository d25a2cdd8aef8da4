"""Camera nodes: build a trajectory (presets, keyframes, 3D editor), load and save trajectory files."""

from __future__ import annotations

import dataclasses

import torch
from comfy_api.latest import io

from lavr_core.camera import CameraTrajectory
from lavr_core.errors import InputError
from lavr_core.pointcloud import PointCloud

from ._common import (LavrNode, PointCloudIO, Trajectory, input_mtime, list_input_files, output_dir,
                      resolve_input_path, saved_file_ui, schema)

EDITOR_MAX_POINTS = 20000
SOURCE_MODES = ("follow", "first_camera")
#: File name endings per format; the names make `read_trajectory` recognise the files again.
SAVE_EXTENSIONS = {"lavr_trajectory": "lavr.json", "realestate10k": "txt", "nerfstudio": "transforms.json",
                   "colmap": "colmap", "recammaster": "camera_extrinsics.json"}


def _preset_names() -> list[str]:
    from lavr_core.camera.builder import PRESETS

    return list(PRESETS)


def _preset_tooltip() -> str:
    from lavr_core.camera.builder import PRESETS

    lines = [f"{name}: {spec.description} (amount in {spec.unit}, default {spec.default_amount:g})"
             for name, spec in PRESETS.items()]
    return "Camera move to build in preset mode.\n" + "\n".join(lines)


def _easing_names() -> list[str]:
    from lavr_core.camera.interpolate import EASINGS

    return list(EASINGS)


def _camera_payload(traj: CameraTrajectory | None) -> dict | None:
    if traj is None:
        return None
    K = traj.K
    return {
        "c2w": [row.reshape(-1).tolist() for row in traj.c2w],
        "K": [[k[0, 0].item(), k[1, 1].item(), k[0, 2].item(), k[1, 2].item()] for k in K],
        "width": traj.width, "height": traj.height, "fps": traj.fps,
    }


def editor_payload(target: CameraTrajectory, source: CameraTrajectory | None, points: PointCloud | None) -> dict:
    """What the JS editor draws after a run (``ui.lavr_editor``): paths in the editor's frame, where
    the source's first camera (the identity camera with no source) is the origin, as for the keyframes
    in ``editor_state``, so that the drawn path and the keyframes share one frame."""
    anchor = source.c2w[:1] if source is not None else torch.eye(4, dtype=target.c2w.dtype)[None]
    inv = torch.linalg.inv(anchor)
    rel = lambda t: None if t is None else t.replace(c2w=inv @ t.c2w)  # noqa: E731
    pts = None
    if points is not None and len(points):
        p = points.subsample(EDITOR_MAX_POINTS)
        xyz = (inv[0, :3, :3].float() @ p.xyz.T + inv[0, :3, 3:].float()).T
        rgb = p.rgb if p.rgb is not None else torch.full_like(p.xyz, 0.8)
        pts = {"xyz": [round(v, 5) for v in xyz.reshape(-1).tolist()],
               "rgb": (rgb * 255).round().to(torch.uint8).reshape(-1).tolist()}
    return {"target": _camera_payload(rel(target)), "source": _camera_payload(rel(source)), "points": pts}


class CameraTrajectoryBuilder(LavrNode):
    SEARCH_ALIASES = ("camera path", "camera motion", "orbit", "dolly", "keyframe camera", "recammaster preset",
                      "trajectory editor")

    @classmethod
    def define_schema(cls):
        return schema(
            node_id="LaVRCameraTrajectoryBuilder",
            display_name="Camera Trajectory Builder (LaVR)",
            category="Camera",
            description="Build a camera path from a preset move or from keyframes drawn in the 3D editor. "
                        "With a source trajectory connected, the move is applied relative to the source cameras.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[
                io.Combo.Input("mode", options=["preset", "keyframes"], default="preset",
                               tooltip="preset: a named camera move. keyframes: the path drawn in the 3D editor below."),
                io.Combo.Input("preset", options=_preset_names(), default="orbit_left", tooltip=_preset_tooltip()),
                io.Float.Input("amount", default=0.0, min=-3600.0, max=3600.0, step=0.1,
                               tooltip="Size of the preset move in the preset's unit: degrees for orbits, arcs, pans, "
                                       "tilts and rolls; scene units for dolly/truck/pedestal/spiral; focal multiplier "
                                       "for zoom; a multiplier of the recorded move for the ReCamMaster presets. "
                                       "0 = the preset's default (listed in the preset tooltip). Negative reverses."),
                io.Combo.Input("easing", options=_easing_names(), default="ease_in_out",
                               tooltip="How the preset move is spread over time: linear is constant speed; "
                                       "ease_in_out starts and stops gently."),
                io.Int.Input("frames", default=81, min=1, max=2048,
                             tooltip="Number of frames of the trajectory. Wan-based samplers want 4k+1 (e.g. 33, 81). "
                                     "A connected source trajectory of another length is resampled to this count."),
                io.Float.Input("fps", default=16.0, min=0.1, max=240.0, step=0.1,
                               tooltip="Frame rate recorded in the trajectory (Wan2.1 generates at 16 fps); a connected source keeps its own."),
                io.Int.Input("width", default=832, min=16, max=8192, step=16,
                             tooltip="Image width in pixels the intrinsics refer to (ignored when a source is connected)."),
                io.Int.Input("height", default=480, min=16, max=8192, step=16,
                             tooltip="Image height in pixels the intrinsics refer to (ignored when a source is connected)."),
                io.Float.Input("fov_deg", default=60.0, min=1.0, max=179.0, step=0.5,
                               tooltip="Horizontal field of view in degrees (ignored when a source is connected: "
                                       "its intrinsics are used)."),
                io.Float.Input("target_depth", default=4.0, min=0.01, max=1000.0, step=0.01,
                               tooltip="Distance in scene units from the first camera to the point that orbits, arcs "
                                       "and bullet-time circle around (on the optical axis)."),
                io.Combo.Input("source_mode", options=list(SOURCE_MODES), default="follow",
                               tooltip="With a source trajectory: 'follow' adds the move on top of the source's own "
                                       "motion; 'first_camera' starts at the source's first camera and ignores its "
                                       "motion (as ReCamMaster does)."),
                io.String.Input("editor_state", default="", multiline=True,
                                tooltip="The 3D editor's state (JSON: keyframes, interpolation). Saved in the workflow; "
                                        "edit it with the editor rather than by hand."),
                Trajectory.Input("source_trajectory", optional=True,
                                 tooltip="Optional source camera path (e.g. from Encode Scene Latent or Load Camera "
                                         "Trajectory): presets and keyframes are placed relative to it."),
                PointCloudIO.Input("point_cloud", optional=True,
                                   tooltip="Optional point cloud shown in the 3D editor and the preview to place the path "
                                           "in the scene."),
            ],
            outputs=[
                Trajectory.Output(display_name="trajectory", tooltip="The target camera path."),
                io.Image.Output(display_name="preview", tooltip="Top view of source (blue) and target (orange) cameras."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, editor_state=None):
        # Only editor_state is named: ComfyUI skips its own checks for inputs a validator declares,
        # and with **kwargs it would report one error per input.
        from lavr_core.camera.editor_state import parse_editor_state
        from lavr_core.errors import LavrError

        if editor_state is None:  # linked from another node: checked when it runs
            return True
        try:
            parse_editor_state(editor_state)
        except LavrError as e:
            return f"editor_state: {e}"
        return True

    @classmethod
    def execute(cls, mode, preset, amount, easing, frames, fps, width, height, fov_deg, target_depth, source_mode,
                editor_state="", source_trajectory=None, point_cloud=None) -> io.NodeOutput:
        from lavr_core.camera.builder import build_preset
        from lavr_core.camera.editor_state import build_from_keyframes, parse_editor_state
        from lavr_core.camera.preview import render_trajectory_preview

        if mode not in ("preset", "keyframes"):  # ComfyUI 0.3.75 does not check V3 combo values itself
            raise InputError(f"Unknown mode {mode!r}.", "Use 'preset' or 'keyframes'.")
        state = parse_editor_state(editor_state or "")
        # With a source, its intrinsics, size and frame rate describe the video being re-rendered:
        # the widgets only apply to paths built from scratch.
        own = {} if source_trajectory is not None else {"width": width, "height": height, "fov_deg": fov_deg, "fps": fps}
        if mode == "keyframes":
            # the node's mode widget is authoritative; the JSON's copy only mirrors it for the editor
            traj = build_from_keyframes(dataclasses.replace(state, mode="keyframes"), num_frames=frames,
                                        source=source_trajectory, **own)
        else:
            traj = build_preset(preset, num_frames=frames, amount=amount or None, easing=easing,
                                target_depth=target_depth, source=source_trajectory, source_mode=source_mode, **own)
        pts = None
        if point_cloud is not None:
            pts = (point_cloud.xyz, point_cloud.rgb if point_cloud.rgb is not None else torch.full_like(point_cloud.xyz, 0.7))
        preview = render_trajectory_preview(traj, source_trajectory, pts)
        ui = {"lavr_editor": [editor_payload(traj, source_trajectory, point_cloud)],
              "text": [traj.summary()]}
        return io.NodeOutput(traj, preview, ui=ui)


def _is_trajectory_file(dirpath, name, filenames) -> bool:
    if name is None:  # a folder: a COLMAP text model
        return "images.txt" in filenames and "cameras.txt" in filenames
    return name.lower().endswith((".json", ".txt")) and name not in ("images.txt", "cameras.txt", "points3D.txt")


class LoadCameraTrajectory(LavrNode):
    SEARCH_ALIASES = ("load camera path", "realestate10k", "nerfstudio transforms", "colmap images.txt",
                      "recammaster camera")

    @classmethod
    def define_schema(cls):
        from lavr_core.camera.formats import FORMATS

        return schema(
            node_id="LaVRLoadCameraTrajectory",
            display_name="Load Camera Trajectory (LaVR)",
            category="Camera",
            description="Read a camera path from ComfyUI's input folder: LaVR JSON, RealEstate10K txt, nerfstudio "
                        "transforms.json, a COLMAP text model folder, or ReCamMaster camera JSON.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[
                io.Combo.Input("file", options=list_input_files(_is_trajectory_file),
                               tooltip="File (or COLMAP folder) inside ComfyUI/input/. Put your files there and refresh."),
                io.Combo.Input("format", options=["auto", *FORMATS], default="auto",
                               tooltip="File format; auto decides from the name and content."),
                io.Int.Input("width", default=0, min=0, max=8192,
                             tooltip="Image width in pixels, for formats that store normalised intrinsics "
                                     "(RealEstate10K, ReCamMaster). 0 = the format's own or 832."),
                io.Int.Input("height", default=0, min=0, max=8192,
                             tooltip="Image height in pixels, as width. 0 = the format's own or 480."),
                io.Float.Input("fps", default=0.0, min=0.0, max=240.0,
                               tooltip="Frame rate to record; 0 keeps the file's (or 16 when it has none)."),
                io.Int.Input("recammaster_camera", default=1, min=1, max=10,
                             tooltip="Which camera (cam01..cam10) of a ReCamMaster camera_extrinsics.json to read."),
            ],
            outputs=[Trajectory.Output(display_name="trajectory", tooltip="The loaded camera path (OpenCV c2w).")],
        )

    @classmethod
    def fingerprint_inputs(cls, file, **kwargs):
        return input_mtime(file)

    @classmethod
    def execute(cls, file, format, width, height, fps, recammaster_camera) -> io.NodeOutput:
        from lavr_core.camera.formats import read_trajectory

        path = resolve_input_path(file, "Trajectory file")
        # 0 means "the file's own": only pass what the user set, so each reader keeps its defaults
        kw = {k: v for k, v in {"width": width, "height": height, "fps": fps, "cam": recammaster_camera}.items() if v}
        traj = read_trajectory(path, None if format == "auto" else format, **kw)
        return io.NodeOutput(traj, ui={"text": [traj.summary()]})


class SaveCameraTrajectory(LavrNode):
    SEARCH_ALIASES = ("export camera path", "save trajectory", "write transforms.json", "colmap export")

    @classmethod
    def define_schema(cls):
        from lavr_core.camera.formats import FORMATS

        return schema(
            node_id="LaVRSaveCameraTrajectory",
            display_name="Save Camera Trajectory (LaVR)",
            category="Camera",
            description="Write a camera path into ComfyUI's output folder, in any of the interchange formats.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[
                Trajectory.Input("trajectory", tooltip="The camera path to write."),
                io.Combo.Input("format", options=list(FORMATS), default="lavr_trajectory",
                               tooltip="lavr_trajectory: exact, re-loadable JSON; re10k: RealEstate10K txt; nerfstudio: "
                                       "transforms.json; colmap: a folder with cameras.txt/images.txt; recammaster: "
                                       "camera_extrinsics.json as ReCamMaster reads it."),
                io.String.Input("filename_prefix", default="lavr/trajectory",
                                tooltip="File name prefix inside ComfyUI's output folder; sub-folders allowed, "
                                        "'..' and absolute paths are refused."),
            ],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, trajectory, format, filename_prefix) -> io.NodeOutput:
        from lavr_core.camera.formats import FORMATS, write_trajectory
        from lavr_core.fileio import safe_output_path

        if format not in FORMATS:
            raise InputError(f"Unknown trajectory format {format!r}.", f"Pick one of {', '.join(FORMATS)}.")
        path = safe_output_path(output_dir(), filename_prefix, SAVE_EXTENSIONS[format])
        written = write_trajectory(trajectory, path, format)
        files = sorted(p for p in written.iterdir() if p.is_file()) if written.is_dir() else [written]
        return io.NodeOutput(ui={"lavr_files": [saved_file_ui(p) for p in files], "text": [trajectory.summary()]})


NODES = [CameraTrajectoryBuilder, LoadCameraTrajectory, SaveCameraTrajectory]
