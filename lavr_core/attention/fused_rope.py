"""RoPE positions of the fused view-time grid: (v, t, row, col) -> (v * T_max + t, row, col).

4Real-Video-V2 keeps Wan's 3-D RoPE and gives every view its own stretch of the frame axis: view
``v`` at time ``t`` sits at frame position ``v * T_max + t``, so two views never share a frame
position (when ``times <= T_max``) and every view keeps the temporal spacing the model was trained
with. The spatial positions are the usual latent-token row and column.

Token order is the fused attention's [v, t, s] with ``s = row * w + col``: the (frame, row, column)
order of Wan's patchified latents when the ``views * times`` frames are stacked view by view. With
``T_max == times`` the positions equal those ``lavr_core.wan.model.rope_for_grid`` gives a plain
``(views * times, h, w)`` grid; a larger ``T_max`` leaves a gap between views.
"""

from __future__ import annotations

import torch

from ..errors import InputError


def _check_positive(**values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"Fused RoPE positions need a positive whole number for {name}; got {value!r}.",
                             "Give views, times, t_max, h and w as integers >= 1.")


def fused_rope_positions(views: int, times: int, t_max: int, h: int, w: int, device=None) -> torch.Tensor:
    """Per-token RoPE positions ``[views*times*h*w, 3]`` (int64): (frame ``v*t_max + t``, row, column).

    Rows run 0..h-1 and columns 0..w-1 over the latent token grid of one frame (the paper's x, y);
    the column order matches Wan's RoPE sections (frame, height, width).
    """
    _check_positive(views=views, times=times, t_max=t_max, h=h, w=w)
    if times > t_max:
        raise InputError(f"{times} time steps do not fit in T_max = {t_max} frame positions per view: "
                         "views would overlap on the RoPE frame axis.",
                         "Set T_max to at least the number of time steps.")
    v, t, y, x = torch.meshgrid(*(torch.arange(n, device=device) for n in (views, times, h, w)), indexing="ij")
    return torch.stack([v * t_max + t, y, x], dim=-1).reshape(-1, 3)


def fused_rope(tables, views: int, times: int, t_max: int, h: int, w: int, device=None,
               dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """``[N, 1, head_dim/2]`` complex rotations for the fused grid, laid out like ``rope_for_grid``.

    ``tables`` is ``lavr_core.wan.model.rope_tables(config)`` (frame, height, width sections); the
    result can replace ``WanModel.rope(grid, device)`` for a ``(views*times, h, w)`` latent grid.
    """
    pos = fused_rope_positions(views, times, t_max, h, w)
    for col, table, axis in zip(range(3), tables, ("frame", "row", "column")):
        top = int(pos[:, col].max())
        if top >= table.shape[0]:
            raise InputError(f"The fused grid needs RoPE {axis} position {top}; "
                             f"the table covers 0..{table.shape[0] - 1}.",
                             "Use fewer views, a smaller T_max or a smaller resolution.")
    rot = torch.cat([table[pos[:, col]] for col, table in enumerate(tables)], dim=-1)
    return rot.unsqueeze(1).to(device=device, dtype=dtype)
