"""Point-cloud IO nodes (scene context for the trajectory editor, and reconstructions to keep)."""

from __future__ import annotations

from comfy_api.latest import io

from ._common import (LavrNode, PointCloudIO, input_mtime, list_input_files, output_dir, resolve_input_path,
                      saved_file_ui, schema)


class LoadPointCloud(LavrNode):
    SEARCH_ALIASES = ("load ply", "point cloud", "scene points")

    @classmethod
    def define_schema(cls):
        return schema(
            node_id="LaVRLoadPointCloud", display_name="Load Point Cloud (LaVR)", category="Scene",
            description="Read a .ply point cloud (or 3DGS .ply, using its colour terms) from ComfyUI's input folder.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[io.Combo.Input("file", options=list_input_files(lambda d, name, files: bool(name) and name.lower().endswith(".ply")),
                                   tooltip="A .ply file inside ComfyUI/input/. Put it there and refresh.")],
            outputs=[PointCloudIO.Output(display_name="point_cloud", tooltip="Points (world frame) with colours.")],
        )

    @classmethod
    def fingerprint_inputs(cls, file):
        return input_mtime(file)

    @classmethod
    def execute(cls, file) -> io.NodeOutput:
        from lavr_core.pointcloud import read_ply_points

        path = resolve_input_path(file, "Point cloud")
        cloud = read_ply_points(path)
        return io.NodeOutput(cloud, ui={"text": [f"{len(cloud)} points from {file}"]})


class SavePointCloud(LavrNode):
    SEARCH_ALIASES = ("save ply", "export point cloud")

    @classmethod
    def define_schema(cls):
        return schema(
            node_id="LaVRSavePointCloud", display_name="Save Point Cloud (LaVR)", category="Scene",
            description="Write a point cloud as a binary .ply (positions + colours) into ComfyUI's output folder.",
            search_aliases=cls.SEARCH_ALIASES,
            inputs=[PointCloudIO.Input("point_cloud", tooltip="The points to write."),
                    io.String.Input("filename_prefix", default="lavr/points",
                                    tooltip="File name prefix inside the output folder; '..' and absolute paths are refused.")],
            outputs=[], is_output_node=True,
        )

    @classmethod
    def execute(cls, point_cloud, filename_prefix) -> io.NodeOutput:
        from lavr_core.fileio import safe_output_path
        from lavr_core.pointcloud import write_ply_points

        path = write_ply_points(point_cloud, safe_output_path(output_dir(), filename_prefix, "ply"))
        return io.NodeOutput(ui={"lavr_files": [saved_file_ui(path)]})


NODES = [LoadPointCloud, SavePointCloud]
