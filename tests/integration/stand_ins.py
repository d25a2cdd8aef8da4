"""Test-only stand-ins for models too large to build on a CPU test machine.

A shipped workflow uses the real loaders (``CLIPLoader`` with umT5-XXL, type ``wan``); before the
tests queue it, those loader nodes are swapped for the tiny test nodes in
``tests/integration/custom_nodes/lavr_test_nodes`` that return the same ComfyUI type, so every other
node (including ComfyUI's own ``CLIPTextEncode``) runs unchanged.
"""

from __future__ import annotations

import copy

#: node type in a shipped workflow -> test node of the same output type (no widgets)
STAND_INS = {"CLIPLoader": "LaVRTestTinyWanTextEncoder", "CLIPVisionLoader": "LaVRTestTinyClipVision"}


def swap_stand_ins(workflow: dict, available: set[str] | None = None) -> dict:
    """A copy of a UI-format workflow with each stand-in-able loader replaced by its test node.

    ``available`` (node types the server knows) limits the swap to test nodes that exist, so a
    missing test pack fails loudly at the loader instead of silently.
    """
    wf = copy.deepcopy(workflow)
    for node in wf.get("nodes", []):
        new = STAND_INS.get(node.get("type"))
        if new and (available is None or new in available):
            node["type"] = new
            node["widgets_values"] = []
            for inp in node.get("inputs", []) or []:
                inp.pop("widget", None)
    return wf
