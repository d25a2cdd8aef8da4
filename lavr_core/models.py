"""The loaded-model value that flows between nodes (Load X -> a node that runs X)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class ModelHandle:
    """A model loaded from a file, kept off the accelerator until a node needs it.

    Attributes:
        kind: which family (``"cut3r"``, ``"vggt"``, ``"wan"``, ...); nodes check it and say which
            loader to use when a handle of another kind is connected.
        model: the ``torch.nn.Module`` in eval mode, on ``offload_device`` between runs.
        path: the file it came from (for messages and caching).
        dtype: the dtype the weights were cast to.
        load_device: where it runs; ``offload_device``: where it waits.
        info: free-form facts about the checkpoint (config name, parameter count).
    """

    kind: str
    model: torch.nn.Module
    path: Path
    dtype: torch.dtype
    load_device: torch.device
    offload_device: torch.device
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters()) + \
            sum(b.numel() * b.element_size() for b in self.model.buffers())

    def check_kind(self, expected: str, node: str) -> None:
        from .errors import InputError

        if self.kind != expected:
            raise InputError(f"{node} needs a {expected} model, but a {self.kind} model is connected.",
                             f"Connect the output of the Load {expected.upper()} node.")
